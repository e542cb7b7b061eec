"""``python -m shapjax`` runs the ``shapjax`` command line."""
import sys

from shapjax.cli import main

if __name__ == "__main__":
    sys.exit(main())
