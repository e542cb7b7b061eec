"""The public-API conventions, in code: ``key`` is keyword-only (and required) wherever randomness
is involved. :func:`keyword_key` keeps shapjax 0.1's positional-key calls working for one release."""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np


def looks_like_key(x) -> bool:
    """True for a JAX PRNG key: a typed key array, or a legacy ``uint32[2]`` key."""
    dt = getattr(x, "dtype", None)
    if dt is None or not isinstance(x, (jax.Array, np.ndarray)):
        return False
    if jnp.issubdtype(dt, jax.dtypes.prng_key):
        return True
    return dt == jnp.uint32 and getattr(x, "shape", None) == (2,)


def keyword_key(fn):
    """Decorate a function whose ``key`` is keyword-only: a key passed first, positionally (the
    shapjax 0.1 signature ``f(key, ...)``), is moved to ``key=`` with a :class:`DeprecationWarning`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if args and "key" not in kwargs and looks_like_key(args[0]):
            warnings.warn(f"{fn.__qualname__}(key, ...) is deprecated since shapjax 0.2: pass key=... as a keyword",
                          DeprecationWarning, stacklevel=2)
            kwargs["key"], args = args[0], args[1:]
        return fn(*args, **kwargs)

    return wrapper
