"""Deprecated import paths of shapjax 0.1 (the flat layout), kept working for one release.

``import shapjax.games`` (and ``shapjax.gradients``, ``shapjax.metrics``, ...) gives a
thin module that forwards every attribute to the module's new home and warns once
with a :class:`DeprecationWarning` naming the new path. The table below is the
whole list; it is constant (no state is added at run time).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

#: old module path -> new module path (shapjax 0.1 -> 0.2)
MOVED = {
    "shapjax.games": "shapjax.engine.games",
    "shapjax.samplers": "shapjax.engine.samplers",
    "shapjax.estimators": "shapjax.engine.estimators",
    "shapjax.gradients": "shapjax.baselines.gradients",
    "shapjax.metrics": "shapjax.evaluation.metrics",
    "shapjax.sanity": "shapjax.evaluation.sanity",
    "shapjax.compare": "shapjax.evaluation.compare",
    "shapjax.train": "shapjax.models.train",
    "shapjax.adversarial": "shapjax.models.adversarial",
    "shapjax.jobs": "shapjax.cli.jobs",
}
#: current short spellings that are not deprecated (``import shapjax.maskers``)
SHORT = {
    "shapjax.maskers": "shapjax.image.maskers",
    "shapjax.segment": "shapjax.image.segment",
}


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the names of :data:`MOVED` / :data:`SHORT` and loads a forwarding module."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED or fullname in SHORT:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # a fresh module; exec_module fills it in

    def exec_module(self, module):
        name = module.__name__
        new = MOVED.get(name) or SHORT[name]
        if name in MOVED:
            warnings.warn(f"{name} moved to {new} in shapjax 0.2; the old path works until 0.3",
                          DeprecationWarning, stacklevel=2)
        target = importlib.import_module(new)
        module.__getattr__ = lambda attr: getattr(target, attr)
        module.__dir__ = lambda: dir(target)
        module.__doc__ = f"Alias of :mod:`{new}`."
        module.__all__ = list(getattr(target, "__all__", [n for n in vars(target) if not n.startswith("_")]))


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` once (idempotent)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())


def resolve(name: str) -> types.ModuleType | None:
    """``shapjax.<name>`` for an old or short module name, imported through the alias, else None."""
    full = f"shapjax.{name}"
    if full in MOVED or full in SHORT:
        return importlib.import_module(full)
    return None
