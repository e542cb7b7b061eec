"""``precision=``: the float type of game values and solves (float32, or float64 through JAX's x64 mode).

The engine's arithmetic (game values, regression weights, solves) uses :func:`floatx`, which is
float32 unless a :func:`precision_scope` for ``"float64"`` is open. The scope is opened around the
*tracing* of a compiled program (``precision`` is one of its static arguments, so a float32 and a
float64 program are two cache entries) and turns on ``jax.enable_x64`` for that program only; a
user's global ``jax_enable_x64`` setting alone does not change shapjax's default (float32).

Known issue (JAX 0.10.2): after a game or model was traced in float32 mode in the same process, a
float64 call of it can return values at float32 accuracy (observed for a two-layer tanh network
whose weights are NumPy float64 arrays; not reduced to a minimal JAX reproduction yet). Make the
float64 call first, use a fresh process, or enable ``jax_enable_x64`` globally from the start.
"""
from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp

PRECISIONS = ("float32", "float64")

_FLOAT = contextvars.ContextVar("shapjax_floatx", default="float32")


def check_precision(precision) -> str:
    """``precision`` must be ``"float32"`` or ``"float64"`` (a ValueError names the argument otherwise)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(map(repr, PRECISIONS))}")
    return precision


def floatx():
    """The float dtype of the program being traced: ``jnp.float32``, or ``jnp.float64`` inside a float64 scope."""
    return jnp.float64 if _FLOAT.get() == "float64" else jnp.float32


def as_device_arrays(tree, precision: str):
    """NumPy leaves of ``tree`` as JAX arrays made in ``precision`` (float64: inside the x64 scope).

    JAX 0.10 can hand a float64-compiled program the float32 copy of a NumPy argument that an
    earlier float32 call converted (an ``INVALID_ARGUMENT ... expected f64`` error); converting the
    leaves first, inside the scope, avoids it.
    """
    if precision != "float64":
        return tree
    import numpy as np

    return jax.tree_util.tree_map(lambda a: jnp.asarray(a) if isinstance(a, np.ndarray) else a, tree)


@contextlib.contextmanager
def precision_scope(precision: str):
    """Trace (and run) a program in ``precision``; ``"float64"`` enables JAX's x64 mode inside the block.

    Under a caller's ``jax.jit`` traced without x64 the inner program can still be float64, but its
    float64 results then meet the caller's float32 program: enable ``jax_enable_x64`` globally
    (``jax.config.update("jax_enable_x64", True)``) to keep them float64 there.
    """
    precision = check_precision(precision)
    token = _FLOAT.set(precision)
    try:
        if precision == "float64":
            with jax.enable_x64(True):
                yield
        else:
            yield
    finally:
        _FLOAT.reset(token)
