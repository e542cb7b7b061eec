r"""Faithfulness as agreement with the model's own reaction: infidelity and monotonicity.

* :func:`infidelity` — Yeh et al. (2019): the squared error between the attribution's
  prediction of an output change, :math:`I^\top a`, and the change itself, over random
  perturbations :math:`I` (Gaussian noise, square removal, Quantus' raster patches, or random
  subsets of features for removal-based attributions).
* :func:`monotonicity` — Arya et al. (2019): putting features back in increasing order of
  attribution should only ever raise the output.
* :func:`monotonicity_correlation` — Nguyen & Martinez (2020): a feature's attribution should
  rank with the effect of removing it (Spearman correlation).

References:
  Yeh, Hsieh, Suggala, Inouye & Ravikumar (2019), On the (in)fidelity and sensitivity of
  explanations, NeurIPS.
  Arya et al. (2019), One explanation does not fit all: a toolkit and taxonomy of AI
  explainability techniques, arXiv:1909.03012.
  Nguyen & Martinez (2020), On quantitative aspects of model interpretability, arXiv:2007.07584.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.api import keyword_key
from shapjax._util.checks import _broadcast_image_like, _check_images, _check_key, _check_pos_int
from shapjax._util.chunks import _batch, _map_chunks, _pick
from shapjax._util.modelfn import _join_fn, _split_fn
from shapjax.evaluation.metrics._base import (
    _check_choice,
    _check_float,
    _feature_curve_impl,
    _feature_rank,
    _feature_valid,
    _features,
    _group_impl,
    _resolve,
    _schedule,
    _softmax_or_raw,
)

__all__ = ["infidelity", "Monotonicity", "monotonicity", "monotonicity_correlation"]

PERTURBATIONS = ("noise", "square", "raster", "subset")


@functools.partial(jax.jit, static_argnames=("fs", "kind", "n", "patch", "n_feat", "optimal_scale", "softmax", "bs"))
def _infid_impl(key, fs, fd, images, base, scores, ids, outputs, kind, n, patch, std, n_feat, optimal_scale,
                softmax, bs):
    model_fn = _join_fn(fs, fd)
    B, H, W, _ = images.shape
    f = lambda x: _softmax_or_raw(model_fn(x), softmax)  # noqa: E731
    k = outputs
    if k is None:
        k = jnp.argmax(_map_chunks(model_fn, images, bs), -1)
    f_x = _pick(_map_chunks(f, images, bs), k)
    a_px = jax.vmap(lambda s, i: s[i])(scores, ids)  # [B, H, W]
    if kind == "raster":
        r, c = np.arange(H) // patch, np.arange(W) // patch
        pid = jnp.asarray(r[:, None] * (-(-W // patch)) + c[None], jnp.int32)

    def perturb(i):
        b, j = i // n, i % n
        kj = jax.random.fold_in(key, i)
        x = images[b]
        if kind == "noise":
            xt = x - std * jax.random.normal(kj, x.shape, x.dtype)
        elif kind == "square":
            r0 = jax.random.randint(jax.random.fold_in(kj, 0), (), 0, H - patch + 1)
            c0 = jax.random.randint(jax.random.fold_in(kj, 1), (), 0, W - patch + 1)
            rr, cc = jnp.arange(H)[:, None], jnp.arange(W)[None]
            m = (rr >= r0) & (rr < r0 + patch) & (cc >= c0) & (cc < c0 + patch)
            xt = jnp.where(m[..., None], base[b], x)
        elif kind == "raster":
            xt = jnp.where((pid <= j)[..., None], base[b], x)
        else:  # subset: each feature removed with probability 1/2; the attribution is its removal effect
            z = jax.random.bernoulli(kj, 0.5, (n_feat,))
            xt = jnp.where(z[ids[b]][..., None], base[b], x)
            return xt, jnp.sum(jnp.where(z, scores[b], 0.0))
        return xt, jnp.sum(a_px[b][..., None] * (x - xt))

    def one(i):
        xt, dot = jax.vmap(perturb)(i)
        return f_x[i // n] - _pick(f(xt), k[i // n]), dot

    drop, dot = _map_chunks(one, jnp.arange(B * n), bs)
    drop, dot = drop.reshape(B, n), dot.reshape(B, n)
    if optimal_scale:
        den = jnp.sum(dot * dot, -1, keepdims=True)
        dot = dot * jnp.where(den > 0, jnp.sum(dot * drop, -1, keepdims=True) / jnp.where(den > 0, den, 1.0), 0.0)
    return jnp.mean((dot - drop) ** 2, -1)


@keyword_key
def infidelity(model_fn, images, attributions, *, key, outputs="auto", perturbation: str = "square",
               n_perturbations: int = 64, patch_size: int = 4, noise_std: float = 0.1, baseline=0.0,
               segments=None, optimal_scale: bool = True, softmax: bool = False, batch_size=None) -> jax.Array:
    r"""Infidelity (Yeh et al. 2019; lower is better).

    .. math::
        \mathrm{INFD}(a, f, x) = \mathbb E_{I}\Big[\big(\beta\, I^\top a - (f_k(x) - f_k(x - I))\big)^2\Big]

    with the perturbation :math:`I = x - \tilde x`:

    * ``"square"`` — a ``patch_size`` square at a uniform position set to ``baseline`` (the
      paper's square removal); :math:`I^\top a = \sum_p a_p (x_p - \tilde x_p)` (summed over channels);
    * ``"noise"`` — :math:`I \sim \mathcal N(0, \sigma^2)` per pixel and channel (``noise_std``);
    * ``"raster"`` — Quantus' default: the patches of a ``patch_size`` grid set to ``baseline``
      cumulatively in raster order (deterministic; ``n_perturbations`` is the number of patches);
    * ``"subset"`` — each feature (pixel, or segment with ``segments``) removed with probability 1/2;
      the attribution is read as the removal effect of its feature, :math:`I^\top a = \sum_{i \in S} a_i`
      (Shapley values, occlusion, LIME and integrated gradients with the same baseline are in these units).

    ``optimal_scale`` multiplies the attribution by the :math:`\beta` that minimises the error
    (Yeh et al.'s normalisation, which makes methods in different units comparable); with
    ``False`` :math:`\beta = 1` (Quantus). A linear model's exact attribution has infidelity 0.

    Args:
      model_fn: ``images [N, H, W, C] -> [N, K]``.
      images: ``[B, H, W, C]``.
      attributions: heatmap ``[B, H, W]``, ``[B, M]`` with ``segments``, PixelAttribution or Explanation.
      key: PRNG key of the perturbations.
      outputs: the class explained per image (``"auto"``: the attribution's own, else ``"top-1"``).
      perturbation: ``"square"``, ``"noise"``, ``"raster"`` or ``"subset"``.
      n_perturbations: perturbations per image.
      patch_size: square / patch side in pixels.
      noise_std: std of ``"noise"``.
      baseline: replacement of removed pixels (scalar, ``[H, W, C]`` or ``[B, H, W, C]``).
      segments: ``[B, H, W]`` / ``[H, W]`` for per-segment attributions.
      optimal_scale: fit the scale :math:`\beta` per image.
      softmax: compare probabilities instead of raw outputs.
      batch_size: model inputs per chunk (default 256).

    Returns:
      ``[B]`` mean squared error.

    References:
      Yeh, Hsieh, Suggala, Inouye & Ravikumar (2019), On the (in)fidelity and sensitivity of
      explanations, NeurIPS.
    """
    key = _check_key(key)
    images = _check_images(images)
    kind = _check_choice(perturbation, "perturbation", PERTURBATIONS)
    scores, ids, n_feat, default_k = _features(attributions, segments, images.shape)
    images, outputs = _resolve(model_fn, images, outputs, default_k)
    B, H, W = images.shape[:3]
    p = _check_pos_int(patch_size, "patch_size")
    if kind in ("square", "raster") and p > min(H, W):
        raise ValueError(f"patch_size: {p} is larger than the image {H}x{W}")
    n = _check_pos_int(n_perturbations, "n_perturbations")
    if kind == "raster":
        n = (-(-H // p)) * (-(-W // p))
    std = _check_float(noise_std, "noise_std", lo=0, lo_open=True)
    base = _broadcast_image_like(baseline, images, "baseline")
    fs, fd = _split_fn(model_fn, "model_fn")
    return _infid_impl(key, fs, fd, images, base, scores.astype(images.dtype), ids, outputs, kind, n, p, std,
                       n_feat, bool(optimal_scale), bool(softmax), _batch(batch_size))


class Monotonicity(NamedTuple):
    """Monotonicity of the insertion curve in increasing attribution order (Arya et al. 2019).

    Attributes:
      monotonic: ``[B]`` bool, every step raised the output or kept it (Quantus' ``Monotonicity``).
      share: ``[B]`` fraction of the steps that did not lower the output (higher is better).
      curves: ``[B, S + 1]`` output from the baseline image (step 0) to the full image.
    """

    monotonic: jax.Array
    share: jax.Array
    curves: jax.Array


def monotonicity(model_fn, images, attributions, *, outputs="auto", segments=None, features_in_step: int = 1,
                 baseline=0.0, softmax: bool = True, batch_size=None) -> Monotonicity:
    r"""Monotonicity (Arya et al. 2019): add features, least relevant first; the output must not fall.

    Starting from ``baseline``, the features (pixels, or segments) are put back
    ``features_in_step`` at a time in *increasing* order of attribution:

    .. math:: \mathrm{mono} = \mathbb 1\big[c_1 \le c_2 \le \dots \le c_S\big],\qquad
              c_s = f_k\big(x'_{\,\mathrm{bottom}(s n) \leftarrow x}\big)

    As in Quantus, the comparison starts after the first step (:math:`c_0`, the bare baseline,
    is reported in ``curves`` but not compared). Only attributions whose features all *raise*
    the output can pass on every image; ``share`` says how close a method comes.

    Args:
      model_fn, images, attributions, outputs, segments, baseline, softmax, batch_size: as
        :func:`shapjax.evaluation.metrics.pixel_flipping`.
      features_in_step: features added per step.

    Returns:
      :class:`Monotonicity`.

    References:
      Arya et al. (2019), One explanation does not fit all: a toolkit and taxonomy of AI
      explainability techniques, arXiv:1909.03012 (the monotonicity metric of AIX360).
    """
    images = _check_images(images)
    scores, ids, n_feat, default_k = _features(attributions, segments, images.shape)
    images, outputs = _resolve(model_fn, images, outputs, default_k)
    step = _check_pos_int(features_in_step, "features_in_step")
    counts = tuple(int(c) for c in _schedule(n_feat, None, step))
    rank = _feature_rank(scores.astype(jnp.float32), _feature_valid(ids, n_feat), ascending=True)
    base = _broadcast_image_like(baseline, images, "baseline")
    fs, fd = _split_fn(model_fn, "model_fn")
    curves, _ = _feature_curve_impl(fs, fd, images, base, images, rank, ids, outputs, counts, bool(softmax),
                                    _batch(batch_size))
    return _mono(curves)


@jax.jit
def _mono(curves):
    up = jnp.diff(curves[:, 1:], axis=-1) >= 0
    share = up.mean(-1) if up.shape[-1] else jnp.ones(curves.shape[:1])
    return Monotonicity(monotonic=up.all(-1), share=share, curves=curves)


def monotonicity_correlation(model_fn, images, attributions, *, outputs="auto", segments=None,
                             features_in_step: int = 1, baseline=0.0, softmax: bool = True,
                             batch_size=None) -> jax.Array:
    r"""Monotonicity correlation (Nguyen & Martinez 2020; higher is better).

    The features (pixels, or segments with ``segments=``), in increasing order of attribution,
    are grouped ``features_in_step`` at a time; each group :math:`G` alone is replaced by
    ``baseline`` and the squared output change is compared with the group's attribution:

    .. math:: \rho = \mathrm{Spearman}_G\Big(\sum_{i \in G} a_i,\;
              \big(f_k(x_{G \leftarrow x'}) - f_k(x)\big)^2\Big)

    Quantus' ``MonotonicityCorrelation`` averages the squared change over random (uniform)
    baselines; here the baseline is given (one notion of absence for every metric), so one
    evaluation per group suffices. Quantus' scaling by :math:`1 / f_k(x)^2` does not change a
    rank correlation and is left out.

    Args:
      model_fn, images, attributions, outputs, segments, baseline, softmax, batch_size: as
        :func:`shapjax.evaluation.metrics.pixel_flipping`.
      features_in_step: features per group.

    Returns:
      ``[B]`` Spearman correlation in [-1, 1] (ties averaged); 0 where either side is constant.

    References:
      Nguyen & Martinez (2020), On quantitative aspects of model interpretability, arXiv:2007.07584.
    """
    from shapjax.evaluation.sanity import spearman

    images = _check_images(images)
    scores, ids, n_feat, default_k = _features(attributions, segments, images.shape)
    images, outputs = _resolve(model_fn, images, outputs, default_k)
    step = _check_pos_int(features_in_step, "features_in_step")
    scores = scores.astype(jnp.float32)
    rank = _feature_rank(scores, _feature_valid(ids, n_feat), ascending=True)
    group_of_feature = rank // step  # [B, F]
    G = -(-n_feat // step)
    groups = jax.vmap(lambda g, i: g[i])(group_of_feature, ids)
    attr = jax.vmap(lambda s, g: jax.ops.segment_sum(s, g, G))(scores, group_of_feature)
    base = _broadcast_image_like(baseline, images, "baseline")
    fs, fd = _split_fn(model_fn, "model_fn")
    out, f_x, _ = _group_impl(fs, fd, images, base, groups, outputs, G, bool(softmax), _batch(batch_size))
    return spearman(attr, (out - f_x[:, None]) ** 2)
