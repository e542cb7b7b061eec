"""Input checks shared by every layer: keys, ints, images, output indexes, segment maps."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


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


def check_key(key, name: str = "key"):
    """Raise a TypeError unless ``key`` is a JAX PRNG key (typed, or legacy uint32[2])."""
    if key is None:
        raise TypeError(f"{name} is required: pass a JAX PRNG key, e.g. jax.random.key(0)")
    dt = getattr(key, "dtype", None)
    if dt is not None and jnp.issubdtype(dt, jax.dtypes.prng_key):
        return
    if dt == jnp.uint32 and getattr(key, "shape", None) == (2,):
        return
    raise TypeError(
        f"{name} must be a JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)); "
        f"got {type(key).__name__} with dtype {dt} and shape {getattr(key, 'shape', None)}"
    )


def check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def is_traced(x) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))
