"""shapjax: a JAX Shapley value engine for explaining image classifiers.

Main entry points:

* :func:`shapjax.shapley` — Shapley values of any cooperative game.
* :func:`shapjax.explain` — explain an image classifier (segments, maskers,
  one batched, compiled pass) -> :class:`shapjax.Explanation`.
"""
from shapjax import maskers, segment
from shapjax.engine import ShapleyResult, shapley
from shapjax.estimators import ESTIMATORS
from shapjax.explain import Explanation, explain

__version__ = "0.1.0"


def __getattr__(name):  # lazy heavy submodules (matplotlib, tfds, flax models)
    import importlib

    if name in {"models", "data", "plot", "gradients", "metrics", "train", "adversarial", "compare", "cli", "jobs", "sanity"}:
        return importlib.import_module(f"shapjax.{name}")
    raise AttributeError(f"module 'shapjax' has no attribute {name!r}")


__all__ = ["shapley", "ShapleyResult", "explain", "Explanation", "ESTIMATORS", "maskers", "segment"]
