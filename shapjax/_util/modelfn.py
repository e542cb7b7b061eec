"""Models as data: split a callable into a static part and traced arrays for ``jax.jit``."""
from __future__ import annotations

import sys

import jax
import numpy as np


class _Static:
    """Hashable handle on a callable for jit's static arguments: by ``==`` when the
    callable is hashable, else by identity (the handle keeps it alive, so no id reuse)."""

    __slots__ = ("fn", "_key")

    def __init__(self, fn):
        self.fn = fn
        try:
            self._key = ("hash", fn, hash(fn))
        except TypeError:
            owner, func = getattr(fn, "__self__", None), getattr(fn, "__func__", None)
            self._key = ("id", id(owner), func) if func is not None else ("id", id(fn))

    __hash__ = lambda self: hash(self._key)
    __eq__ = lambda self, other: isinstance(other, _Static) and self._key == other._key


def _split_fn(fn, name: str):
    """Split a callable into (static, dynamic arrays): arrays of pytree callables are traced."""
    if not callable(fn):
        raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
    clf = sys.modules.get("shapjax.models.classifier")
    if clf is not None and isinstance(fn, clf.Classifier):  # trace its params, don't bake them in
        fn = jax.tree_util.Partial(fn.apply, fn.params)
    leaves, treedef = jax.tree_util.tree_flatten(fn)
    if not all(isinstance(l, (jax.Array, np.ndarray)) for l in leaves):
        return _Static(fn), ()  # a plain callable (or one holding non-array leaves)
    try:
        hash(treedef)
    except TypeError:
        return _Static(fn), ()
    return treedef, tuple(leaves)


def _join_fn(static, dynamic):
    return static.fn if isinstance(static, _Static) else jax.tree_util.tree_unflatten(static, dynamic)


def _n_outputs(model_fn, images, name: str = "model_fn") -> int:
    if not callable(model_fn):
        raise TypeError(f"{name}: expected a callable, got {type(model_fn).__name__}")
    out = jax.eval_shape(model_fn, jax.ShapeDtypeStruct(images.shape, images.dtype))
    if getattr(out, "ndim", None) != 2 or out.shape[0] != images.shape[0]:
        raise ValueError(f"{name}: expected an output of shape [N, K] for N={images.shape[0]} "
                         f"inputs, got {getattr(out, 'shape', type(out).__name__)}")
    return out.shape[1]
