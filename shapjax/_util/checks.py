"""Input checks shared by every layer: keys, ints, images, output indexes, segment maps."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_images(images, name: str = "images", *, single_ok: bool = False) -> jax.Array:
    """The one rule for images entering shapjax: float pixels in [0, 1], ``[B, H, W, C]``.

    * a list/tuple of images is stacked; with ``single_ok`` one ``[H, W, C]`` image becomes ``[1, H, W, C]``;
    * integer, boolean and complex images are rejected (uint8 0-255 pixels would be explained as
      0-255 and change the model's answer): a ``TypeError`` that names the fix;
    * NaN or infinite pixels are rejected (when the values are concrete; under ``jax.jit`` see
      :mod:`shapjax._util.checkify` for the checked mode);
    * float pixels far outside [0, 1] (e.g. 0-255 floats) give a warning, once per call site.

    Returns float32 images (float64 stays float64).
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{name}: expected images [B, H, W, C], got an empty {type(images).__name__}")
        images = np.stack([np.asarray(i) for i in images])
    shape, dtype = getattr(images, "shape", None), getattr(images, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(f"{name}: expected an array [B, H, W, C], got {type(images).__name__}")
    if single_ok and len(shape) == 3:
        images = images[None]
        shape = images.shape
    if len(shape) != 4:
        want = "[B, H, W, C] (or one [H, W, C] image)" if single_ok else "[B, H, W, C]"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(shape)}")
    if min(shape) < 1:
        raise ValueError(f"{name}: expected non-empty images, got shape {tuple(shape)}")
    if not jnp.issubdtype(dtype, jnp.floating):
        fix = (" (convert 0-255 pixels with images.astype(np.float32) / 255)"
               if jnp.issubdtype(dtype, jnp.integer) else "")
        raise TypeError(f"{name}: expected floating-point pixels in [0, 1], got dtype {dtype}{fix}")
    if dtype not in (jnp.float32, jnp.float64):
        images = images.astype(jnp.float32)
    if not isinstance(images, jax.core.Tracer):
        host = np.asarray(images)
        finite = np.isfinite(host)
        if not finite.all():
            bad = np.argwhere(~finite)[0]
            raise ValueError(f"{name}: NaN or infinite pixel values (first at index {tuple(int(i) for i in bad)})")
        lo, hi = float(host.min()), float(host.max())
        if hi > 1.5 or lo < -0.5:
            import warnings

            warnings.warn(f"{name}: pixel values span [{lo:.3g}, {hi:.3g}]; shapjax expects [0, 1] (maskers such as "
                          "constant(0) and blur assume it). Divide 0-255 pixels by 255; if your model takes another "
                          "range on purpose, ignore this warning.", stacklevel=3)
    return jnp.asarray(images)


def _check_images(images, name: str = "images") -> jax.Array:
    return check_images(images, name)


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
