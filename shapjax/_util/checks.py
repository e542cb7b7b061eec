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
    check_key(key)
    return jnp.asarray(key)


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
    """Raise unless ``key`` is ONE JAX PRNG key: a scalar typed key (``jax.random.key(seed)``) or a
    legacy ``uint32[2]`` key (``jax.random.PRNGKey(seed)``). A batch of keys is a ``ValueError``:
    the functions take one key and split it themselves (``jax.vmap`` over them for many)."""
    if key is None:
        raise TypeError(f"{name} is required: pass a JAX PRNG key, e.g. jax.random.key(0)")
    dt = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()) or ())
    if dt is not None and jnp.issubdtype(dt, jax.dtypes.prng_key):
        if shape:
            raise ValueError(f"{name}: expected a single PRNG key, got a batch of keys of shape {shape} "
                             "(pass one key, or jax.vmap over the keys)")
        return
    if dt == jnp.uint32 and shape == (2,):
        return
    if dt == jnp.uint32 and len(shape) >= 2 and shape[-1] == 2:
        raise ValueError(f"{name}: expected a single PRNG key, got a batch of legacy keys of shape {shape} "
                         "(pass one key, or jax.vmap over the keys)")
    raise TypeError(
        f"{name} must be a JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)); "
        f"got {type(key).__name__} with dtype {dt} and shape {shape or None}"
    )


def check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def is_traced(x) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def check_output_dtype(dtype, name: str) -> None:
    """Model / game outputs must be real numbers: complex ones would be cut to their real part."""
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"{name}: returned complex values (dtype {dtype}); explanations need real outputs "
                        "(take .real, abs() or the log-probabilities explicitly)")
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_):
        raise TypeError(f"{name}: returned dtype {dtype}; expected real numbers")


def available_memory() -> int | None:
    """Bytes the default device can still allocate: accelerator memory stats, else Linux MemAvailable."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    except Exception:  # noqa: BLE001 - backends without memory stats
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} PiB"  # pragma: no cover


def check_memory(nbytes: float, what: str, *, name: str = "n_evals", fraction: float = 0.5) -> None:
    """Refuse, before any work starts, what cannot fit: a ``ValueError`` with the numbers."""
    avail = available_memory()
    if avail is not None and nbytes > fraction * avail:
        raise ValueError(f"{name}: {what} needs about {_fmt_bytes(nbytes)} of memory, more than "
                         f"{fraction:.0%} of the {_fmt_bytes(avail)} available; lower {name}")


def check_finite(values, name: str):
    """``values`` as an array; NaN/inf (when concrete) or complex values are a ``ValueError``/``TypeError``."""
    a = values if isinstance(values, jax.Array) else np.asarray(values)
    if jnp.issubdtype(a.dtype, jnp.complexfloating):
        raise TypeError(f"{name}: complex values (dtype {a.dtype}); expected real numbers")
    if not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer) or a.dtype == jnp.bool_):
        raise TypeError(f"{name}: expected real numbers, got dtype {a.dtype}")
    if not isinstance(a, jax.core.Tracer):
        host = np.asarray(a)
        if host.size and not np.isfinite(host).all():
            bad = np.argwhere(~np.isfinite(host))[0]
            raise ValueError(f"{name}: NaN or infinite values (first at index {tuple(int(i) for i in bad)})")
    return jnp.asarray(a)
