r"""Axiomatic checks: do the attributions add up (completeness / efficiency), and how close are
estimated Shapley values to exact ones?

References:
  Sundararajan, Taly & Yan (2017), Axiomatic attribution for deep networks, ICML (completeness).
  Shapley (1953); Lundberg & Lee (2017), NeurIPS (efficiency / local accuracy).
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.checks import _broadcast_image_like, _check_images
from shapjax._util.chunks import _batch
from shapjax._util.modelfn import _split_fn
from shapjax.evaluation.metrics._base import _features, _predict_impl, _resolve

__all__ = ["completeness_gap", "ShapleyAccuracy", "shapley_accuracy"]


def completeness_gap(model_fn, images, attributions, *, outputs="auto", baseline=0.0, segments=None,
                     relative: bool = False, softmax: bool = False, batch_size=None) -> jax.Array:
    r"""Completeness / efficiency gap: do the attributions add up to the output change? (lower is better)

    .. math::
        \Delta = \Big|\sum_i a_i - \big(f_k(x) - f_k(x')\big)\Big|,\qquad
        \Delta_{\mathrm{rel}} = \Delta / |f_k(x) - f_k(x')|

    Integrated gradients (completeness, Sundararajan et al. 2017) and every Shapley estimator
    (efficiency) satisfy :math:`\Delta = 0` for the baseline :math:`x'` they were computed with
    (for a Shapley explanation: the fully masked image); gradients, LIME and Grad-CAM make no
    such promise. Quantus' ``Completeness`` reports whether :math:`\Delta = 0` exactly.

    Args:
      model_fn: ``images [N, H, W, C] -> [N, K]``.
      images: ``[B, H, W, C]``.
      attributions: heatmap ``[B, H, W]``, ``[B, M]`` with ``segments``, PixelAttribution or Explanation.
      outputs: the class explained per image (``"auto"``: the attribution's own, else ``"top-1"``).
      baseline: :math:`x'`: scalar, ``[H, W, C]`` or ``[B, H, W, C]``.
      segments: ``[B, H, W]`` / ``[H, W]`` for per-segment attributions.
      relative: divide by :math:`|f_k(x) - f_k(x')|` (0 where that is 0 and so is the sum).
      softmax: use probabilities instead of raw outputs.
      batch_size: model inputs per chunk.

    Returns:
      ``[B]``.

    References:
      Sundararajan, Taly & Yan (2017), Axiomatic attribution for deep networks, ICML.
      Lundberg & Lee (2017), A unified approach to interpreting model predictions, NeurIPS.
    """
    images = _check_images(images)
    scores, _, _, default_k = _features(attributions, segments, images.shape)
    images, outputs = _resolve(model_fn, images, outputs, default_k)
    base = _broadcast_image_like(baseline, images, "baseline")
    fs, fd = _split_fn(model_fn, "model_fn")
    bs = _batch(batch_size)
    f_x, top = _predict_impl(fs, fd, images, outputs, bool(softmax), bs)
    f_b, _ = _predict_impl(fs, fd, base, top if outputs is None else outputs, bool(softmax), bs)
    return _gap(scores.astype(jnp.float32).sum(-1), f_x - f_b, bool(relative))


@functools.partial(jax.jit, static_argnames=("relative",))
def _gap(total, delta, relative):
    gap = jnp.abs(total - delta)
    if relative:
        d = jnp.abs(delta)
        gap = jnp.where(d > 0, gap / jnp.where(d > 0, d, 1.0), jnp.where(gap > 0, jnp.inf, 0.0))
    return gap


class ShapleyAccuracy(NamedTuple):
    r"""Accuracy of estimated Shapley values against exact ones.

    Attributes:
      rel_l2: ``[B]`` :math:`\|\hat\phi - \phi\|_2 / \|\phi\|_2`.
      precision_at_k: ``[B]`` share of the exact top-k features (by
        :math:`|\phi|`) found in the estimated top-k (averaged over outputs).
      efficiency_gap: ``[B]`` or ``[B, K]``
        :math:`|\sum_i \hat\phi_i - (v(N) - v(\emptyset))|`, or None.
    """

    rel_l2: jax.Array
    precision_at_k: jax.Array
    efficiency_gap: Any


@functools.partial(jax.jit, static_argnames=("k",))
def _acc_impl(est, exact, k):
    B = est.shape[0]
    diff = (est - exact).reshape(B, -1)
    nrm = jnp.linalg.norm(exact.reshape(B, -1), axis=-1)
    rel = jnp.linalg.norm(diff, axis=-1) / jnp.where(nrm > 0, nrm, 1.0)
    e = jnp.moveaxis(est, 1, -1).reshape(-1, est.shape[1])  # [B*K, M]
    x = jnp.moveaxis(exact, 1, -1).reshape(-1, est.shape[1])
    top_e = jax.lax.top_k(jnp.abs(e), k)[1]
    top_x = jax.lax.top_k(jnp.abs(x), k)[1]
    hit = (top_e[:, :, None] == top_x[:, None, :]).any(-1).sum(-1) / k
    return rel, hit.reshape(B, -1).mean(-1)


def shapley_accuracy(values, exact, *, k: int = 5, v_full=None, v_empty=None) -> ShapleyAccuracy:
    r"""Compare estimated Shapley values with exact ones.

    .. math::
        \mathrm{rel}_2 = \frac{\|\hat\phi - \phi\|_2}{\|\phi\|_2},\quad
        \mathrm{P@k} = \frac{|\mathrm{top}_k|\hat\phi| \cap \mathrm{top}_k|\phi||}{k},\quad
        \Delta_{\mathrm{eff}} = \Big|\sum_i \hat\phi_i - (v(N) - v(\emptyset))\Big|

    Top-k sets break ties by the lower feature index (:func:`jax.lax.top_k`).

    Args:
      values: estimated values ``[B, M]`` or ``[B, M, K]``, or an Explanation
        (then ``v_full``/``v_empty`` default to its full/base values).
      exact: exact values, same shape (or an Explanation).
      k: top-k size, ``1 <= k <= M``.
      v_full: ``[B]`` / ``[B, K]`` value of the full coalition.
      v_empty: ``[B]`` / ``[B, K]`` value of the empty coalition.

    Returns:
      :class:`ShapleyAccuracy` (``efficiency_gap`` is None without v_full and v_empty).

    References:
      Shapley (1953). Lundberg & Lee (2017), NeurIPS (efficiency / local accuracy).
    """
    if hasattr(values, "base_values") and hasattr(values, "values"):
        v_full = values.full_values if v_full is None else v_full
        v_empty = values.base_values if v_empty is None else v_empty
        values = values.values
    if hasattr(exact, "values") and hasattr(exact, "base_values"):
        exact = exact.values
    est, ex = jnp.asarray(values, jnp.float32), jnp.asarray(exact, jnp.float32)
    if est.ndim not in (2, 3):
        raise ValueError(f"values: expected [B, M] or [B, M, K], got shape {est.shape}")
    if ex.shape != est.shape:
        raise ValueError(f"exact: expected the shape of values {est.shape}, got {ex.shape}")
    M = est.shape[1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= M:
        raise ValueError(f"k: expected an int in [1, {M}], got {k!r}")
    rel, prec = _acc_impl(est, ex, int(k))
    gap = None
    if (v_full is None) != (v_empty is None):
        raise ValueError("v_full, v_empty: give both or neither")
    if v_full is not None:
        want = (est.shape[0],) + est.shape[2:]
        vf, ve = jnp.asarray(v_full, jnp.float32), jnp.asarray(v_empty, jnp.float32)
        for name, v in (("v_full", vf), ("v_empty", ve)):
            if v.shape != want:
                raise ValueError(f"{name}: expected shape {want}, got {v.shape}")
        gap = jnp.abs(est.sum(1) - (vf - ve))
    return ShapleyAccuracy(rel_l2=rel, precision_at_k=prec, efficiency_gap=gap)
