r"""Localisation: does the attribution land on a ground-truth region (pointing game, mass inside the mask)?

References:
  Zhang et al. (2018), Top-down neural attention by excitation backprop, IJCV.
  Kohlbrenner et al. (2020), Towards best practice in explaining neural network decisions with LRP, IJCNN.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from shapjax.evaluation.metrics._base import as_heatmap

__all__ = ["pointing_game", "attribution_mass"]


def _masks(masks, shape) -> jax.Array:
    m = jnp.asarray(masks)
    if m.shape == shape[1:]:
        m = jnp.broadcast_to(m, shape)
    if m.shape != shape:
        raise ValueError(f"masks: expected shape {shape} or {shape[1:]}, got {m.shape}")
    return m.astype(bool)


@functools.partial(jax.jit, static_argnames=("tolerance",))
def _pointing_impl(hm, masks, tolerance):
    B, H, W = hm.shape
    peak = jnp.argmax(hm.reshape(B, -1), axis=-1)  # first maximum in row-major order
    pi, pj = peak // W, peak % W
    ii, jj = jnp.arange(H)[None, :, None], jnp.arange(W)[None, None, :]
    d2 = (ii - pi[:, None, None]) ** 2 + (jj - pj[:, None, None]) ** 2
    return jnp.any(masks & (d2 <= tolerance ** 2), axis=(1, 2))


def pointing_game(attributions, masks, *, tolerance: float = 0) -> jax.Array:
    r"""Pointing game (Zhang et al. 2016): is the attribution peak on the object?

    A hit when the maximum-attribution pixel (first one in row-major order if
    several tie) lies within ``tolerance`` pixels (Euclidean) of a mask pixel.
    The original protocol uses a 15-pixel tolerance on full-size images.

    Args:
      attributions: heatmap ``[B, H, W]``, PixelAttribution or Explanation.
      masks: ``[B, H, W]`` or ``[H, W]`` bool ground-truth masks.
      tolerance: distance in pixels (>= 0).

    Returns:
      ``[B]`` bool hits; the hit rate is its mean.

    References:
      Zhang et al. (2018), Top-down neural attention by excitation backprop, IJCV.
    """
    hm = as_heatmap(attributions)
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance: expected a non-negative number, got {tolerance!r}")
    return _pointing_impl(hm, _masks(masks, hm.shape), float(tolerance))


@jax.jit
def _mass_impl(hm, masks):
    pos = jnp.maximum(hm, 0.0).reshape(hm.shape[0], -1)
    tot = pos.sum(-1)
    inside = jnp.where(masks.reshape(hm.shape[0], -1), pos, 0.0).sum(-1)
    return jnp.where(tot > 0, inside / jnp.where(tot > 0, tot, 1.0), 0.0)


def attribution_mass(attributions, masks) -> jax.Array:
    r"""Share of the positive attribution mass that falls inside the mask.

    .. math:: \mu = \frac{\sum_{p \in \mathrm{mask}} \max(a_p, 0)}{\sum_p \max(a_p, 0)}

    Args:
      attributions: heatmap ``[B, H, W]``, PixelAttribution or Explanation.
      masks: ``[B, H, W]`` or ``[H, W]`` bool.

    Returns:
      ``[B]`` in [0, 1]; 0 for a map with no positive attribution.

    References:
      Kohlbrenner et al. (2020), Towards best practice in explaining neural
      network decisions with LRP (relevance mass accuracy), IJCNN.
    """
    hm = as_heatmap(attributions)
    return _mass_impl(hm, _masks(masks, hm.shape))
