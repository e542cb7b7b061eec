"""Synthetic images with a known ground truth: the planted-patch data set."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.api import keyword_key
from shapjax.data.dataset import Dataset, _finish  # noqa: F401

PATCH_PATTERNS = ("vertical-stripes", "horizontal-stripes", "checkerboard", "diagonal-stripes",
                  "ring", "cross", "dot", "anti-diagonal-stripes")


def _pattern(kind: int, p: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    w = max(1, p // 4)  # stripe width
    c = (p - 1) / 2.0
    pats = [
        (j // w) % 2,
        (i // w) % 2,
        ((i // w) + (j // w)) % 2,
        ((i + j) // w) % 2,
        np.minimum(np.minimum(i, j), np.minimum(p - 1 - i, p - 1 - j)) < w,
        (np.abs(i - c) < w / 2 + 0.5) | (np.abs(j - c) < w / 2 + 0.5),
        (i - c) ** 2 + (j - c) ** 2 <= (p / 3.0) ** 2,
        ((i - j + p) // w) % 2,
    ]
    return np.asarray(pats[kind], np.float32)


@keyword_key
def planted_patch(n: int, *, key, size: int = 32, n_classes: int = 4, patch_size: int = 8,
                  channels: int = 3) -> Dataset:
    """Synthetic images whose class is decided only by a planted texture patch.

    Each image is a smooth random background (low-resolution uniform noise,
    bilinearly upsampled, plus fine Gaussian noise) with one
    ``patch_size x patch_size`` patch at a uniformly random position. The
    patch shows the binary pattern of its class (vertical stripes, horizontal
    stripes, checkerboard, ...; see :data:`PATCH_PATTERNS`) painted with a
    random bright colour on a random dark colour:

    .. math::

        x_{\\text{patch}} = P_y \\cdot c_{\\text{hi}} + (1 - P_y) \\cdot c_{\\text{lo}},
        \\quad c_{\\text{hi}} \\sim U[0.75, 1]^C,\\; c_{\\text{lo}} \\sim U[0, 0.25]^C.

    Nothing outside the patch depends on the label, so the ground-truth
    relevance mask is the patch area: a faithful attribution puts its mass there
    (a pointing-game / mask-overlap test with known answer).

    Args:
      key: PRNG key.
      n: number of images.
      size: image height and width.
      n_classes: number of classes (2..8), balanced.
      patch_size: side of the square patch (<= size).
      channels: 1 or 3.

    Returns:
      Dataset with images ``[n, size, size, channels]``, labels ``[n]``,
      class_names (pattern names) and masks ``[n, size, size]`` bool.

    References:
      J. Adebayo, M. Muelly, I. Liccardi, B. Kim. "Debugging tests for model
      explanations." NeurIPS 2020 (spurious-signal planting).
      J. Yang, B. Kim. "Benchmarking attribution methods with relative feature
      importance." arXiv:1907.09701, 2019.
    """
    n, size, patch_size = int(n), int(size), int(patch_size)
    if n < 1:
        raise ValueError(f"n: expected a positive int, got {n}")
    if not 2 <= n_classes <= len(PATCH_PATTERNS):
        raise ValueError(f"n_classes: expected 2..{len(PATCH_PATTERNS)}, got {n_classes}")
    if not 2 <= patch_size <= size:
        raise ValueError(f"patch_size: expected 2 <= patch_size <= size ({size}), got {patch_size}")
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 or 3, got {channels!r}")
    patterns = np.stack([_pattern(k, patch_size) for k in range(n_classes)])
    images, labels, masks = _planted(key, patterns, n=n, size=size, channels=channels)
    return Dataset(images, labels, list(PATCH_PATTERNS[:n_classes]), masks)


def _linear_interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` bilinear (half-pixel centres, edge-clamped) resampling matrix."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] += 1 - (pos - lo)
    m[np.arange(n_out), hi] += pos - lo
    return m


def _host_rng(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded by a JAX key (host-side data generation, no compilation)."""
    if not hasattr(key, "dtype"):
        raise TypeError(f"key: expected a jax PRNG key (jax.random.key(seed)), got {type(key).__name__}")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    data = np.asarray(key)
    if data.dtype != np.uint32 or data.ndim != 1:
        raise TypeError(f"key: expected a single jax PRNG key, got dtype {data.dtype} shape {data.shape}")
    return np.random.default_rng([int(v) for v in data])


def _planted(key, patterns, *, n, size, channels):
    rng = _host_rng(key)
    n_classes, p = patterns.shape[0], patterns.shape[1]
    labels = rng.permutation(np.arange(n) % n_classes)
    low = max(2, size // 4)
    interp = _linear_interp_matrix(low, size)
    coarse = rng.uniform(size=(n, low, low, channels)).astype(np.float32)
    bg = np.einsum("ia,nabc,jb->nijc", interp, coarse, interp, optimize=True)  # bilinear upsampling
    bg = np.clip(bg + 0.05 * rng.standard_normal(bg.shape, dtype=np.float32), 0.0, 1.0)
    cols = rng.uniform(size=(n, 2, 1, 1, channels)).astype(np.float32) * 0.25
    hi, lo = 1.0 - cols[:, 0], cols[:, 1]
    pat = patterns[labels][..., None]
    patches = pat * hi + (1.0 - pat) * lo
    pos = rng.integers(0, size - p + 1, size=(n, 2))
    masks = np.zeros((n, size, size), bool)
    for i, (r, c) in enumerate(pos):
        bg[i, r:r + p, c:c + p] = patches[i]
        masks[i, r:r + p, c:c + p] = True
    return bg.astype(np.float32), labels.astype(np.int32), masks
