"""shapjax: a JAX Shapley value engine for explaining image classifiers.

Main entry points:

* :func:`shapjax.explain` — explain an image classifier (segments, maskers,
  one batched, compiled pass) -> :class:`shapjax.Explanation`.
* :func:`shapjax.shapley` — Shapley values of any cooperative game.
* :data:`shapjax.ESTIMATORS` — the methods, and what each one estimates.
* :func:`shapjax.explain_dataset` / :func:`shapjax.load_results` — whole datasets,
  streamed, sharded over every device and stored resumably (:mod:`shapjax.pipeline`).

The packages follow the data flow (``docs/architecture.md``):
:mod:`shapjax.kernels` (device kernels) -> :mod:`shapjax.engine` (games, samplers,
estimators) -> :mod:`shapjax.image` (segments, maskers, explain) ->
:mod:`shapjax.baselines` (gradients, Grad-CAM, occlusion) ->
:mod:`shapjax.evaluation` (metrics, sanity checks, comparison), beside
:mod:`shapjax.models`, :mod:`shapjax.data`, :mod:`shapjax.plot` and the
command line :mod:`shapjax.cli`.
"""
import functools as _functools
import importlib as _importlib

from shapjax import _compat
from shapjax.engine import ESTIMATORS, ShapleyResult, shapley
from shapjax.image import Explanation, maskers, segment
from shapjax.image import explain as _explain_image

__version__ = "0.2.0"

_compat.install()

#: subpackages imported on first use (matplotlib, tfds and flax models are heavy)
_LAZY = {"kernels", "engine", "image", "baselines", "evaluation", "models", "data", "plot", "cli", "pipeline",
         "counterfactual", "amortized"}
#: functions of lazily imported subpackages (zarr is imported on first use)
_LAZY_FUNCTIONS = {"explain_dataset": "pipeline", "load_results": "pipeline"}


@_functools.wraps(_explain_image)
def explain(model_fn, images, *args, method: str = "kernel", explainer=None, **kwargs):
    # The facade: method="amortized" runs a trained explainer (shapjax.amortized, one forward pass; it
    # takes explainer=, an Explainer or a checkpoint path, else the shipped one that matches); every
    # other method is shapjax.image.explain.
    if method == "amortized":
        from shapjax.amortized import explain as explain_amortized

        if args:
            raise TypeError("explain(method='amortized'): pass segments=, masker=, outputs= as keywords")
        return explain_amortized(model_fn, images, explainer=explainer, **kwargs)
    if explainer is not None:
        raise TypeError(f"explain: explainer= is for method='amortized' (a trained explainer); got method={method!r}")
    return _explain_image(model_fn, images, *args, method=method, **kwargs)


explain.__doc__ = (_explain_image.__doc__ or "") + """
    With ``method="amortized"`` a trained explainer (:mod:`shapjax.amortized`, FastSHAP) explains the
    images in one forward pass: ``explainer=`` (an :class:`shapjax.amortized.Explainer` or the path of
    an explainer checkpoint) or else the shipped explainer trained for this model's weights,
    ``segments`` and ``masker``; a ``ValueError`` says when none matches. ``key`` and ``n_evals`` are
    not needed then.
"""


def enable_compilation_cache(path=None, *, min_compile_seconds: float = 0.0):
    """Turn on JAX's persistent compilation cache so that a later process starts warm (the CLI does it by
    default). ``path`` defaults to ``$SHAPJAX_CACHE_DIR`` or ``~/.cache/shapjax/jax``; ``SHAPJAX_NO_CACHE=1``
    turns it off. Returns the cache folder (None when off). See :mod:`shapjax._util.compilation_cache`."""
    from shapjax._util.compilation_cache import enable_compilation_cache as enable

    return enable(path, min_compile_seconds=min_compile_seconds)


def __getattr__(name):
    if name in _LAZY:
        return _importlib.import_module(f"shapjax.{name}")
    if name in _LAZY_FUNCTIONS:
        return getattr(_importlib.import_module(f"shapjax.{_LAZY_FUNCTIONS[name]}"), name)
    moved = _compat.resolve(name)
    if moved is not None:
        return moved
    raise AttributeError(f"module 'shapjax' has no attribute {name!r}")


__all__ = ["explain", "Explanation", "shapley", "ShapleyResult", "ESTIMATORS", "maskers", "segment",
           "enable_compilation_cache", "explain_dataset", "load_results", "pipeline", "kernels", "engine", "image", "baselines", "evaluation", "models", "data", "plot", "cli"]
