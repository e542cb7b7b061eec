"""Private plumbing shared by :mod:`shapjax.gradients`, :mod:`shapjax.metrics` and
:mod:`shapjax.sanity`: input checks, splitting a model callable into a static
part and traced arrays for ``jax.jit``, and chunked evaluation (``lax.map`` /
``lax.scan`` over ``batch_size`` rows at a time).

Nothing here is public API; the names may change without notice.
"""
from __future__ import annotations

import sys
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_BATCH_SIZE = 256  # model inputs per chunk when ``batch_size=None``


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


def _check_images(images, name: str = "images") -> jax.Array:
    dtype = getattr(images, "dtype", None)
    if dtype is None:
        images = np.asarray(images)
        dtype = images.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name}: expected float images in [0, 1], got dtype {dtype}")
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{name}: expected shape [B, H, W, C], got {images.shape}")
    return images


def _check_key(key):
    if not isinstance(key, (jax.Array, np.ndarray)):
        raise TypeError(f"key: expected a jax PRNG key (jax.random.key(0)), got {type(key).__name__}")
    k = jnp.asarray(key)
    if jnp.issubdtype(k.dtype, jax.dtypes.prng_key):
        if k.ndim != 0:
            raise ValueError(f"key: expected a single PRNG key, got shape {k.shape}")
    elif not (k.dtype == jnp.uint32 and k.shape == (2,)):
        raise TypeError(f"key: expected a jax PRNG key (jax.random.key(0)), got {k.dtype}{k.shape}")
    return k


def _n_outputs(model_fn, images, name: str = "model_fn") -> int:
    if not callable(model_fn):
        raise TypeError(f"{name}: expected a callable, got {type(model_fn).__name__}")
    out = jax.eval_shape(model_fn, jax.ShapeDtypeStruct(images.shape, images.dtype))
    if getattr(out, "ndim", None) != 2 or out.shape[0] != images.shape[0]:
        raise ValueError(f"{name}: expected an output of shape [N, K] for N={images.shape[0]} "
                         f"inputs, got {getattr(out, 'shape', type(out).__name__)}")
    return out.shape[1]


def _check_outputs(outputs, B: int, K: int):
    """None, an int, or a ``[B]`` int array -> None or ``[B]`` int32."""
    if outputs is None:
        return None
    o = jnp.asarray(outputs)
    if not jnp.issubdtype(o.dtype, jnp.integer):
        raise TypeError(f"outputs: expected int output indexes, got dtype {o.dtype}")
    if o.ndim == 0:
        o = jnp.full((B,), o)
    if o.shape != (B,):
        raise ValueError(f"outputs: expected an int or shape [{B}], got {o.shape}")
    if not isinstance(o, jax.core.Tracer):
        lo, hi = int(o.min()), int(o.max())
        if lo < 0 or hi >= K:
            raise ValueError(f"outputs: indexes must lie in [0, {K}), got range [{lo}, {hi}]")
    return o.astype(jnp.int32)


def _broadcast_image_like(value, images, name: str) -> jax.Array:
    """A scalar, ``[H, W, C]``/``[C]`` or ``[B, H, W, C]`` -> ``[B, H, W, C]``."""
    v = jnp.asarray(value, images.dtype)
    try:
        return jnp.broadcast_to(v, images.shape)
    except ValueError:
        raise ValueError(f"{name}: expected a scalar or an array broadcastable to "
                         f"{images.shape}, got shape {v.shape}") from None


def _check_pos_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return int(v)


def _batch(batch_size) -> int:
    return DEFAULT_BATCH_SIZE if batch_size is None else _check_pos_int(batch_size, "batch_size")


def _chunks(xs, bs: int):
    """Pad the leading axis of every leaf of ``xs`` to a multiple of ``bs`` and reshape."""
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    bs = max(1, min(bs, n))
    n_chunks = -(-n // bs)
    pad = n_chunks * bs - n

    def f(a):
        if pad:
            a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)])
        return a.reshape(n_chunks, bs, *a.shape[1:])

    return n, n_chunks, bs, jax.tree_util.tree_map(f, xs)


def _map_chunks(fn: Callable, xs, batch_size: int):
    """``fn`` over the leading axis of ``xs``, ``batch_size`` rows per call (lax.map)."""
    n, n_chunks, bs, xs_c = _chunks(xs, batch_size)
    if n_chunks == 1:
        return fn(jax.tree_util.tree_map(lambda a: a[0, :n], xs_c))
    out = jax.lax.map(fn, xs_c)
    return jax.tree_util.tree_map(lambda a: a.reshape(n_chunks * bs, *a.shape[2:])[:n], out)


def _sum_chunks(fn: Callable, xs, batch_size: int, init: jax.Array) -> jax.Array:
    """``init.at[idx].add(contrib)`` over chunks, where ``fn(chunk) -> (idx, contrib)``.

    Only one chunk of contributions is alive at a time (lax.scan).
    """
    n, n_chunks, bs, xs_c = _chunks(xs, batch_size)
    valid = (jnp.arange(n_chunks * bs) < n).reshape(n_chunks, bs)

    def body(acc, inp):
        chunk, ok = inp
        idx, c = fn(chunk)
        c = jnp.where(ok.reshape((-1,) + (1,) * (c.ndim - 1)), c, 0)
        return acc.at[idx].add(c), None

    if n_chunks == 1:
        return body(init, (jax.tree_util.tree_map(lambda a: a[0], xs_c), valid[0]))[0]
    return jax.lax.scan(body, init, (xs_c, valid))[0]


def _pick(out, k):
    return jnp.take_along_axis(out, k[:, None], axis=1)[:, 0]


def atomic_write(path, write) -> str:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then move it into place.

    An interrupted write (error, Ctrl-C) leaves no partial file under ``path``.
    Creates the folder if needed; the file gets the usual 0644 permissions.
    """
    import os
    import tempfile

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _pixel_segments(segments, B: int, H: int, W: int):
    """Segment ids as ``[B, H, W]`` ints (``[H, W]`` is broadcast); clear errors otherwise."""
    seg = jnp.asarray(segments)
    if not jnp.issubdtype(seg.dtype, jnp.integer):
        raise TypeError(f"segments: expected an int array, got dtype {seg.dtype}")
    if seg.shape == (H, W):
        seg = jnp.broadcast_to(seg, (B, H, W))
    if seg.shape != (B, H, W):
        raise ValueError(f"segments: expected shape {(B, H, W)} or {(H, W)}, got {seg.shape}")
    return seg
