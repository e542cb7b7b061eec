"""Coalition -> pixel masks and image composition: the masking hot path.

A *coalition* is a boolean vector ``z`` over the ``M`` players (segments) of an
image. Each pixel belongs to exactly one segment, so a coalition expands to a
pixel mask by indexing, and a perturbed image keeps the pixels of the present
segments and takes the others from a *replacement* image (what an absent
segment becomes; see :mod:`shapjax.maskers`):

.. math::

   x_z[h, w] = \\begin{cases} x[h, w] & z_{s(h, w)} = 1 \\\\
                               r[h, w] & z_{s(h, w)} = 0 \\end{cases}

where :math:`s(h, w) \\in \\{0, \\dots, M-1\\}` is the segment id of the pixel.

Everything here is plain, jitted ``jax.numpy``: no host callbacks, static
shapes only, and the functions vmap cleanly over coalitions and over images.
Segment ids are assumed to lie in ``0..M-1`` (validate them once, outside the
hot path, with :func:`shapjax.segment.check_segments`); out-of-range ids are
clamped by JAX's gather semantics, not reported.

References:
  Lundberg & Lee (2017), "A Unified Approach to Interpreting Model
  Predictions", NeurIPS (masking with segment "super-pixels").
  Ribeiro, Singh & Guestrin (2016), "Why Should I Trust You?", KDD
  (superpixel interpretable representation).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "coalition_to_pixel_mask",
    "coalitions_to_pixel_masks",
    "compose",
    "compose_batch",
]


def _as_bool(z: jax.Array) -> jax.Array:
    z = jnp.asarray(z)
    return z if z.dtype == jnp.bool_ else z != 0


def _check_int(name: str, a: jax.Array) -> None:
    if not jnp.issubdtype(a.dtype, jnp.integer):
        raise TypeError(f"`{name}` must hold integer segment ids, got dtype {a.dtype}.")


@jax.jit
def coalition_to_pixel_mask(z: jax.Array, segments: jax.Array) -> jax.Array:
    """Expand one coalition to a pixel mask: ``z[segments]``.

    Args:
      z: ``[M]`` bool (or 0/1 numbers; nonzero means present) coalition.
      segments: ``[H, W]`` int segment id per pixel, ids in ``0..M-1``.

    Returns:
      ``[H, W]`` bool, True where the pixel's segment is present.
    """
    z = _as_bool(z)
    segments = jnp.asarray(segments)
    if z.ndim != 1:
        raise ValueError(f"`z` must be a coalition vector [M], got shape {z.shape}.")
    if segments.ndim != 2:
        raise ValueError(f"`segments` must be [H, W], got shape {segments.shape}.")
    _check_int("segments", segments)
    return z[segments]


@jax.jit
def coalitions_to_pixel_masks(Z: jax.Array, segments: jax.Array) -> jax.Array:
    """Expand many coalitions at once: ``[N, M] -> [N, H, W]`` bool.

    Args:
      Z: ``[N, M]`` bool (or 0/1) coalitions.
      segments: ``[H, W]`` int segment ids in ``0..M-1``.
    """
    Z = _as_bool(Z)
    if Z.ndim != 2:
        raise ValueError(f"`Z` must be a batch of coalitions [N, M], got shape {Z.shape}.")
    return jax.vmap(coalition_to_pixel_mask, in_axes=(0, None))(Z, segments)


def _check_compose(image, replacement, segments):
    if image.ndim != 3:
        raise ValueError(f"`image` must be [H, W, C], got shape {image.shape}.")
    H, W, C = image.shape
    if replacement.ndim != 4 or replacement.shape[1:] != (H, W, C):
        raise ValueError(
            f"`replacement` must be [R, H, W, C] = [R, {H}, {W}, {C}] to match `image`, "
            f"got shape {replacement.shape}."
        )
    if segments.shape != (H, W):
        raise ValueError(
            f"`segments` must be [H, W] = [{H}, {W}] to match `image`, got shape {segments.shape}."
        )
    _check_int("segments", segments)


@jax.jit
def compose(
    image: jax.Array, replacement: jax.Array, segments: jax.Array, z: jax.Array
) -> jax.Array:
    """Compose one perturbed image per replacement for a coalition.

    .. math::

       \\text{out}[r, h, w, :] = \\begin{cases} \\text{image}[h, w, :] & z_{s(h,w)} \\\\
                               \\text{replacement}[r, h, w, :] & \\text{otherwise}
                               \\end{cases}

    Args:
      image: ``[H, W, C]`` the explained image.
      replacement: ``[R, H, W, C]`` what absent pixels become (R = 1 for a
        constant/blur/segment-mean masker, R background images for an
        interventional masker).
      segments: ``[H, W]`` int segment id per pixel, ids in ``0..M-1``.
      z: ``[M]`` bool (or 0/1) coalition, True = segment present.

    Returns:
      ``[R, H, W, C]`` composed images, dtype ``result_type(image, replacement)``.

    Vmap over coalitions with ``jax.vmap(compose, (None, None, None, 0))`` (or
    use :func:`compose_batch`) and over images with ``jax.vmap(compose)``.
    """
    image = jnp.asarray(image)
    replacement = jnp.asarray(replacement)
    segments = jnp.asarray(segments)
    _check_compose(image, replacement, segments)
    mask = coalition_to_pixel_mask(z, segments)  # [H, W]
    return jnp.where(mask[None, :, :, None], image[None], replacement)


@jax.jit
def compose_batch(
    image: jax.Array, replacement: jax.Array, segments: jax.Array, Z: jax.Array
) -> jax.Array:
    """:func:`compose` for many coalitions at once.

    Args:
      image: ``[H, W, C]``.
      replacement: ``[R, H, W, C]``.
      segments: ``[H, W]`` int ids in ``0..M-1``.
      Z: ``[N, M]`` bool (or 0/1) coalitions.

    Returns:
      ``[N, R, H, W, C]`` composed images (``N * R`` model inputs: callers
      chunk ``N`` to bound memory).
    """
    Z = _as_bool(Z)
    if Z.ndim != 2:
        raise ValueError(f"`Z` must be a batch of coalitions [N, M], got shape {Z.shape}.")
    return jax.vmap(compose, in_axes=(None, None, None, 0))(image, replacement, segments, Z)


def compose_rows(images: jax.Array, replacements: jax.Array, segments: jax.Array, Z: jax.Array) -> jax.Array:
    """Row-wise composition for a flat stream of (image, coalition) pairs.

    Row ``n`` composes ``images[n]`` with ``replacements[n]`` under the pixel
    mask ``Z[n][segments[n]]``. This is the engine's hot path: each chunk of
    the stream mixes several images and coalitions.

    Args:
      images: ``[n, H, W, C]``.
      replacements: ``[n, R, H, W, C]`` (or ``[1, R, H, W, C]``, broadcast).
      segments: ``[n, H, W]`` int ids in ``0..M-1``.
      Z: ``[n, M]`` bool coalitions.

    Returns:
      ``[n, R, H, W, C]``.
    """
    n, H, W = segments.shape
    mask = jnp.take_along_axis(_as_bool(Z), segments.reshape(n, H * W), axis=1).reshape(n, H, W)
    return jnp.where(mask[:, None, :, :, None], images[:, None], replacements)
