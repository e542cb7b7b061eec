"""The ``shapjax`` command line: one module per command group, :func:`main` dispatches."""
from shapjax.cli.app import main

__all__ = ["main"]
