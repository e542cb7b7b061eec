"""shapjax: a JAX Shapley value engine for explaining image classifiers.

Main entry points:

* :func:`shapjax.explain` — explain an image classifier (segments, maskers,
  one batched, compiled pass) -> :class:`shapjax.Explanation`.
* :func:`shapjax.shapley` — Shapley values of any cooperative game.
* :data:`shapjax.ESTIMATORS` — the methods, and what each one estimates.

The packages follow the data flow (``docs/architecture.md``):
:mod:`shapjax.kernels` (device kernels) -> :mod:`shapjax.engine` (games, samplers,
estimators) -> :mod:`shapjax.image` (segments, maskers, explain) ->
:mod:`shapjax.baselines` (gradients, Grad-CAM, occlusion) ->
:mod:`shapjax.evaluation` (metrics, sanity checks, comparison), beside
:mod:`shapjax.models`, :mod:`shapjax.data`, :mod:`shapjax.plot` and the
command line :mod:`shapjax.cli`.
"""
import importlib as _importlib

from shapjax import _compat
from shapjax.engine import ESTIMATORS, ShapleyResult, shapley
from shapjax.image import Explanation, explain, maskers, segment

__version__ = "0.2.0"

_compat.install()

#: subpackages imported on first use (matplotlib, tfds and flax models are heavy)
_LAZY = {"kernels", "engine", "image", "baselines", "evaluation", "models", "data", "plot", "cli",
         "counterfactual"}


def __getattr__(name):
    if name in _LAZY:
        return _importlib.import_module(f"shapjax.{name}")
    moved = _compat.resolve(name)
    if moved is not None:
        return moved
    raise AttributeError(f"module 'shapjax' has no attribute {name!r}")


__all__ = ["explain", "Explanation", "shapley", "ShapleyResult", "ESTIMATORS", "maskers", "segment",
           "kernels", "engine", "image", "baselines", "evaluation", "models", "data", "plot", "cli"]
