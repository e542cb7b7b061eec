"""Maskers: what an absent segment (player) becomes.

A masker turns a batch of images into *replacement* images,

.. math::

   r = \\text{masker}(x, s) \\in \\mathbb{R}^{B \\times R \\times H \\times W \\times C},

and the game value of a coalition ``z`` is the mean model output over the ``R``
composed images (:func:`kernels.masking.compose`):

.. math::

   v(z) = \\frac{1}{R} \\sum_{r=1}^{R} f\\big(x \\odot 1_z + r_r \\odot (1 - 1_z)\\big).

``R = 1`` for the baseline maskers (:func:`constant`, :func:`blur`,
:func:`segment_mean`); :func:`background` gives ``R`` reference images, an
interventional (marginal) expectation over a background set.

Every masker is a frozen ``flax.struct`` dataclass: configuration lives in
static fields (hashable, so such a masker can be a static argument of
``jax.jit``), background images are a pytree leaf (pass that masker as a
regular argument). ``replacement`` is pure ``jax.numpy`` and jit-able.

References:
  Lundberg & Lee (2017), "A Unified Approach to Interpreting Model
  Predictions", NeurIPS (blur / background maskers, interventional values).
  Ribeiro, Singh & Guestrin (2016), "Why Should I Trust You?", KDD
  (segment-mean "hide" colour).
  Janzing, Minorics & Bloebaum (2020), "Feature relevance quantification in
  explainable AI: A causal problem", AISTATS (interventional expectations).
  Sturmfels, Lundberg & Lee (2020), "Visualizing the Impact of Feature
  Attribution Baselines", Distill (choice of baseline).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from shapjax._util.checks import check_images

__all__ = [
    "Masker",
    "Constant",
    "Blur",
    "SegmentMean",
    "Background",
    "constant",
    "blur",
    "segment_mean",
    "background",
    "dataset_mean",
    "get_masker",
]


def _check_inputs(images, segments):
    if images.ndim != 4:
        raise ValueError(f"`images` must be [B, H, W, C], got shape {images.shape}.")
    B, H, W, _ = images.shape
    if segments.shape != (B, H, W):
        raise ValueError(f"`segments` must be [B, H, W] = {(B, H, W)}, got shape {segments.shape}.")


class Masker:
    """Interface: ``replacement(images [B,H,W,C], segments [B,H,W], n_segments) -> [B,R,H,W,C]``."""

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def n_replacements(self) -> int:
        """R, the number of replacement images per explained image."""
        return 1

    def same_for_every_image(self) -> bool:
        """True when the replacement does not depend on the explained image (a background set):
        callers may then keep one copy, ``replacement(...)[:1]``, instead of B."""
        return False

    def check(self, images: Any) -> None:
        """Raise ValueError if this masker cannot mask ``images`` [B,H,W,C]."""
        if np.ndim(images) != 4:
            raise ValueError(f"`images` must be [B, H, W, C], got shape {np.shape(images)}.")

    def replacement(self, images: jax.Array, segments: jax.Array, n_segments: int) -> jax.Array:  # pragma: no cover
        raise NotImplementedError


@struct.dataclass
class Constant(Masker):
    """Absent pixels take a constant colour (see :func:`constant`)."""

    value: tuple = struct.field(pytree_node=False)

    def describe(self) -> str:
        return "constant(" + ",".join(f"{v:.4g}" for v in self.value) + ")"

    def check(self, images: Any) -> None:
        super().check(images)
        C = np.shape(images)[-1]
        if len(self.value) not in (1, C):
            raise ValueError(
                f"constant masker `value` has {len(self.value)} channels but the images have C={C}; "
                f"give a scalar or {C} values."
            )

    def replacement(self, images, segments, n_segments):
        images = jnp.asarray(images)
        _check_inputs(images, jnp.asarray(segments))
        self.check(images)
        B, H, W, C = images.shape
        v = jnp.asarray(self.value, images.dtype)
        return jnp.broadcast_to(v, (B, 1, H, W, C))


def _blur_matrix(n: int, sigma: float, truncate: float) -> np.ndarray:
    """``[n, n]`` matrix applying a 1-D Gaussian with reflect padding (rows sum to 1)."""
    r = max(math.ceil(truncate * sigma), 1)
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    # Row p of `pad` is the basis vector of the pixel that padded position p reads.
    pad = np.pad(np.eye(n), ((r, r), (0, 0)), mode="reflect") if n > 1 else np.ones((n + 2 * r, 1))
    A = np.zeros((n, n))
    for j, w in enumerate(k):
        A += w * pad[j : j + n]
    return A.astype(np.float32)


@struct.dataclass
class Blur(Masker):
    """Absent pixels take a Gaussian-blurred copy of the image (see :func:`blur`)."""

    sigma: float = struct.field(pytree_node=False)
    truncate: float = struct.field(pytree_node=False, default=3.0)

    def describe(self) -> str:
        return f"blur(sigma={self.sigma:g})"

    def replacement(self, images, segments, n_segments):
        images = jnp.asarray(images)
        _check_inputs(images, jnp.asarray(segments))
        _, H, W, _ = images.shape
        Ah = jnp.asarray(_blur_matrix(H, self.sigma, self.truncate))  # numpy constants: static shapes
        Aw = jnp.asarray(_blur_matrix(W, self.sigma, self.truncate))
        out = jnp.einsum("ih,bhwc->biwc", Ah, images, precision=jax.lax.Precision.HIGHEST)
        out = jnp.einsum("jw,biwc->bijc", Aw, out, precision=jax.lax.Precision.HIGHEST)
        return out.astype(images.dtype)[:, None]


@struct.dataclass
class SegmentMean(Masker):
    """Absent pixels take their segment's mean colour (see :func:`segment_mean`)."""

    def describe(self) -> str:
        return "segment_mean"

    def replacement(self, images, segments, n_segments):
        images = jnp.asarray(images)
        segments = jnp.asarray(segments)
        _check_inputs(images, segments)
        B, H, W, C = images.shape
        M = int(n_segments)
        ids = (segments.astype(jnp.int32) + M * jnp.arange(B, dtype=jnp.int32)[:, None, None]).reshape(-1)
        sums = jax.ops.segment_sum(images.reshape(-1, C), ids, num_segments=B * M)  # [B*M, C]
        counts = jax.ops.segment_sum(jnp.ones_like(ids, images.dtype), ids, num_segments=B * M)
        means = sums / jnp.maximum(counts, 1)[:, None]
        return means[ids].reshape(B, 1, H, W, C).astype(images.dtype)


@struct.dataclass
class Background(Masker):
    """Absent pixels come from each of R background images (see :func:`background`)."""

    images: jax.Array  # [R, H, W, C] pytree leaf

    def describe(self) -> str:
        return f"background(R={self.images.shape[0]})"

    def n_replacements(self) -> int:
        return int(self.images.shape[0])

    def same_for_every_image(self) -> bool:
        return True

    def check(self, images: Any) -> None:
        super().check(images)
        _, H, W, C = np.shape(images)
        if tuple(self.images.shape[1:]) != (H, W, C):
            raise ValueError(
                f"background masker images are [R, H, W, C] = {tuple(self.images.shape)} but the explained "
                f"`images` have (H, W, C) = {(H, W, C)}; resize the background set."
            )

    def replacement(self, images, segments, n_segments):
        images = jnp.asarray(images)
        _check_inputs(images, jnp.asarray(segments))
        self.check(images)
        B = images.shape[0]
        bg = jnp.asarray(self.images, images.dtype)
        return jnp.broadcast_to(bg[None], (B, *bg.shape))


def constant(value: float | Sequence[float] = 0.0) -> Constant:
    """Replace absent segments by a constant colour (``R = 1``).

    Args:
      value: a scalar (all channels) or one value per channel; the channel
        count is checked against the images (``ValueError``).
    """
    vals = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if vals.ndim != 1 or vals.size == 0 or not np.all(np.isfinite(vals)):
        raise ValueError(f"`value` must be a finite scalar or a per-channel list, got {value!r}.")
    return Constant(tuple(float(v) for v in vals))


def blur(sigma: float = 5.0, *, truncate: float = 3.0) -> Blur:
    """Replace absent segments by a Gaussian blur of the image (``R = 1``).

    Separable convolution on device, as two ``[n, n]`` matrix products with
    reflect padding folded into the matrices:

    .. math::

       \\tilde x = A_H \\, x \\, A_W^\\top, \\qquad
       g_\\sigma(t) \\propto e^{-t^2 / 2\\sigma^2}, \\ |t| \\le \\lceil \\text{truncate}\\cdot\\sigma \\rceil .

    Rows of ``A`` sum to one, so a constant image stays constant.

    Args:
      sigma: Gaussian standard deviation in pixels (> 0).
      truncate: kernel radius in units of sigma.
    """
    if not (isinstance(sigma, numbers.Real) and not isinstance(sigma, bool) and sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"blur `sigma` must be a positive number of pixels, got {sigma!r}.")
    if not truncate > 0:
        raise ValueError(f"blur `truncate` must be positive, got {truncate!r}.")
    return Blur(float(sigma), float(truncate))


def segment_mean() -> SegmentMean:
    """Replace each absent segment by its own mean colour (LIME's default, ``R = 1``).

    .. math::

       r[h, w] = \\frac{1}{|S_j|} \\sum_{p \\in S_j} x[p], \\qquad j = s(h, w).

    Computed with ``jax.ops.segment_sum`` (``n_segments`` must be static).
    """
    return SegmentMean()


def background(images: Any) -> Background:
    """Interventional masker: absent pixels come from ``R`` background images.

    The game value is the mean of the model over the ``R`` composites (the
    explainer averages); cost grows linearly with ``R``.

    Args:
      images: ``[R, H, W, C]`` background images (float, same H, W, C as the
        explained images; checked by ``check`` / ``replacement``).
    """
    bg = images if isinstance(images, jax.Array) else np.asarray(images)
    if bg.ndim != 4 or bg.shape[0] < 1:
        raise ValueError(f"background `images` must be [R, H, W, C] with R >= 1, got shape {tuple(bg.shape)}.")
    # float pixels in [0, 1], finite: the rule for every image that enters shapjax
    return Background(check_images(bg, "background images"))


def dataset_mean(images: Any) -> Constant:
    """A :func:`constant` masker with the per-channel mean colour of ``images`` [N,H,W,C]."""
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"`images` must be [N, H, W, C] to take a dataset mean, got shape {arr.shape}.")
    arr = np.asarray(check_images(arr, "dataset_mean images"), np.float64)
    return constant(arr.mean(axis=(0, 1, 2)))


_SPECS = "constant[:v | :v1,v2,v3], blur[:sigma], segment_mean, mean (needs images=)"


def get_masker(spec: str, *, images: Any = None) -> Masker:
    """Parse a CLI masker spec.

    Valid specs: ``constant`` (0), ``constant:0.5``, ``constant:0.5,0.5,0.5``
    (per channel), ``blur`` (sigma 5), ``blur:5``, ``segment_mean``, and
    ``mean`` - the per-channel dataset mean, which needs the images:
    ``get_masker("mean", images=x)``.

    Raises:
      ValueError: unknown name or malformed value (the message lists the
        valid specs), or ``mean`` without ``images``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"`spec` must be a non-empty string like 'blur:5', got {spec!r}.")
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    rest = rest.strip()
    try:
        if name == "constant":
            return constant([float(v) for v in rest.split(",")] if rest else 0.0)
        if name == "blur":
            return blur(float(rest) if rest else 5.0)
    except ValueError as e:
        raise ValueError(f"bad masker spec {spec!r}: {e}; valid specs: {_SPECS}.") from None
    if rest and name in ("segment_mean", "mean"):
        raise ValueError(f"masker {name!r} takes no options, got {spec!r}.")
    if name == "segment_mean":
        return segment_mean()
    if name == "mean":
        if images is None:
            raise ValueError("masker spec 'mean' (dataset mean colour) needs the images: get_masker('mean', images=x).")
        return dataset_mean(images)
    raise ValueError(f"unknown masker {name!r} in spec {spec!r}; valid specs: {_SPECS}.")
