"""``python -m shapjax.cli`` runs the ``shapjax`` command line."""
import sys

from shapjax.cli.app import main

sys.exit(main())
