r"""Faithfulness by perturbation: remove what the explanation points at and watch the model.

* :func:`deletion`, :func:`insertion` — RISE curves and their AUC (Petsiuk et al. 2018).
* :func:`pixel_flipping` — Bach et al. (2015): flip pixels (or features) most relevant first.
* :func:`region_perturbation` — Samek et al. (2017): patches (or segments) in attribution
  order, scored by the AOPC.
* :func:`irof` — Rieger & Hansen (2020): superpixels (any segmentation) removed by mean
  attribution, area over the normalised curve.
* :func:`faithfulness_correlation` — Bhatt et al. (2020).

Attributions are accepted as a pixel map ``[B, H, W]``, a per-segment vector ``[B, M]``
together with ``segments=[B, H, W]`` (or ``[H, W]``), a
:class:`shapjax.gradients.PixelAttribution` or a single-output
:class:`shapjax.explain.Explanation`. The perturbed images are evaluated under
``jax.jit``, ``batch_size`` model inputs at a time.

References:
  Petsiuk, Das & Saenko (2018), RISE: randomized input sampling for explanation of
  black-box models, BMVC.
  Bach et al. (2015), On pixel-wise explanations for non-linear classifier decisions by
  layer-wise relevance propagation, PLoS ONE 10(7).
  Samek et al. (2017), Evaluating the visualization of what a deep neural network has
  learned, IEEE TNNLS 28(11).
  Rieger & Hansen (2020), IROF: a low resource evaluation metric for explanation methods,
  ICLR workshop (arXiv:2003.08747).
  Bhatt, Weller & Moura (2020), Evaluating and aggregating feature-based model
  explanations, IJCAI.
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
    Curve,
    _check_choice,
    _feature_curve_impl,
    _feature_rank,
    _feature_valid,
    _features,
    _pearson,
    _pixel_rank,
    _resolve,
    _schedule,
    _trapz,
    as_heatmap,
    gaussian_blur,
)

__all__ = ["Curve", "PerturbationCurve", "IROF", "deletion", "insertion", "pixel_flipping",
           "region_perturbation", "irof", "faithfulness_correlation"]


class PerturbationCurve(NamedTuple):
    """A pixel-flipping / region-perturbation curve.

    Attributes:
      curves: ``[B, S + 1]`` explained output after each step (step 0: the image itself).
      aopc: ``[B]`` area over the perturbation curve,
        :math:`\\frac{1}{S+1}\\sum_{s=0}^{S} (c_0 - c_s)` (Samek et al. 2017).
      auc: ``[B]`` trapezoid area under ``curves`` over ``fractions``.
      fractions: ``[S + 1]`` fraction of the features removed after each step.
    """

    curves: jax.Array
    aopc: jax.Array
    auc: jax.Array
    fractions: jax.Array


class IROF(NamedTuple):
    """Iterative removal of features (Rieger & Hansen 2020).

    Attributes:
      curves: ``[B, M]`` explained output after removing the ``s + 1`` segments of highest mean
        attribution, divided by the output on the image; 0 past an image's own segment count.
      aoc: ``[B]`` area over that curve in steps, :math:`n_b - \\sum_s \\tfrac12(c_s + c_{s+1})`
        over an image's ``n_b`` segments (Quantus' ``IROF`` score).
      score: ``[B]`` ``aoc / n_b``, in [0, 1] when removing never raises the output; higher is better.
      n_segments: ``[B]`` segments of each image.
    """

    curves: jax.Array
    aoc: jax.Array
    score: jax.Array
    n_segments: jax.Array


@functools.partial(jax.jit, static_argnames=("fs", "counts", "probs", "bs"))
def _curve_impl(fs, fd, images, start, target, scores, outputs, counts, probs, bs):
    model_fn = _join_fn(fs, fd)
    B, H, W, _ = start.shape
    n_pix = H * W
    k = outputs
    if k is None:  # the class predicted on the original images
        k = jnp.argmax(_map_chunks(model_fn, images, bs), -1)
    rank = _pixel_rank(scores.reshape(B, n_pix))
    S = len(counts)
    n_k = jnp.asarray(np.asarray(counts, np.int32))

    def one(i):
        b, s = i // S, i % S
        m = (rank[b] < n_k[s][:, None]).reshape(-1, H, W, 1)
        out = model_fn(jnp.where(m, target[b], start[b]))
        if not probs:
            out = jax.nn.softmax(out, axis=-1)
        return _pick(out, k[b])

    curves = _map_chunks(one, jnp.arange(B * S), bs).reshape(B, S)
    fr = jnp.asarray(np.asarray(counts, np.float32) / n_pix)
    auc = jnp.sum(0.5 * (curves[:, 1:] + curves[:, :-1]) * jnp.diff(fr), axis=-1)
    return Curve(curves=curves, auc=auc, fractions=fr)


def _curve_inputs(model_fn, images, attributions, outputs, segments, n_steps, step_size):
    """Shared set-up of the deletion/insertion curves: checked images, explained outputs,
    per-pixel scores ``[B, HW]`` and the static number of pixels changed at each step."""
    images = _check_images(images)
    scores, ids, _, default_k = _features(attributions, segments, images.shape)
    images, outputs = _resolve(model_fn, images, outputs, default_k)
    px = jnp.take_along_axis(scores, ids.reshape(ids.shape[0], -1), axis=1)
    counts = tuple(int(c) for c in _schedule(images.shape[1] * images.shape[2], n_steps, step_size))
    return images, outputs, px, counts


def deletion(model_fn, images, attributions, *, outputs="auto", segments=None, n_steps=None,
             step_size=None, baseline=0.0, probs: bool = False, batch_size=None) -> Curve:
    r"""Deletion curve and AUC (Petsiuk et al. 2018; lower is better).

    Pixels are ranked by attribution (highest first; ties broken by the lower
    row-major pixel index) and replaced by ``baseline`` a step at a time; the
    curve is the probability of the explained class:

    .. math::
        c_s = p_k\big(x_{\,\mathrm{top}(n_s) \leftarrow x'}\big),\qquad
        \mathrm{AUC} = \sum_s \tfrac12 (c_s + c_{s+1})\,(f_{s+1} - f_s),\ f_s = n_s / HW

    Args:
      model_fn: ``images [N, H, W, C] -> [N, K]`` logits (softmaxed) or
        probabilities (``probs=True``).
      images: ``[B, H, W, C]``.
      attributions: heatmap ``[B, H, W]``, ``[B, M]`` with ``segments``, a
        PixelAttribution or a single-output Explanation.
      outputs: the class explained for each image: ``"auto"`` (default) takes the attribution's
        own output indexes, else the model's top prediction (``"top-1"``); or an int, ``[c]``,
        a ``[B, 1]`` int array (the ``outputs`` values of :func:`shapjax.explain`, with K = 1).
      segments: ``[B, H, W]`` / ``[H, W]`` int, when attributions are per segment.
      n_steps: number of steps (default ``min(HW, 100)``), step ``s`` changes
        ``round(s HW / n_steps)`` pixels; or
      step_size: pixels changed per step (RISE uses one image row).
      baseline: scalar, ``[H, W, C]`` or ``[B, H, W, C]`` replacement values.
      probs: True if ``model_fn`` already returns probabilities.
      batch_size: model inputs per chunk (default 256).

    Returns:
      :class:`Curve` with ``curves [B, n_steps + 1]``, ``auc [B]``.

    References:
      Petsiuk, Das & Saenko (2018), RISE, BMVC.
    """
    images, outputs, px, counts = _curve_inputs(model_fn, images, attributions, outputs, segments, n_steps, step_size)
    base = _broadcast_image_like(baseline, images, "baseline")
    fs, fd = _split_fn(model_fn, "model_fn")
    return _curve_impl(fs, fd, images, images, base, px, outputs, counts, bool(probs), _batch(batch_size))


def insertion(model_fn, images, attributions, *, outputs="auto", segments=None, n_steps=None,
              step_size=None, blur_sigma: float | None = 5.0, baseline=0.0, probs: bool = False,
              batch_size=None) -> Curve:
    r"""Insertion curve and AUC (Petsiuk et al. 2018; higher is better).

    Starts from a Gaussian-blurred copy of the image (:func:`gaussian_blur`,
    ``blur_sigma`` pixels; or from ``baseline`` when ``blur_sigma=None``) and
    puts the original pixels back in attribution order (ties: lower pixel
    index first). The curve is the probability of the explained class; the
    AUC is the trapezoid rule over the inserted fraction in [0, 1].

    Args:
      model_fn, images, attributions, outputs, segments, n_steps, step_size,
      probs, batch_size: as :func:`deletion`.
      blur_sigma: std of the blur giving the starting image, or None.
      baseline: the starting image when ``blur_sigma`` is None.

    Returns:
      :class:`Curve` with ``curves [B, n_steps + 1]``, ``auc [B]``.

    References:
      Petsiuk, Das & Saenko (2018), RISE, BMVC.
    """
    images, outputs, px, counts = _curve_inputs(model_fn, images, attributions, outputs, segments, n_steps, step_size)
    if blur_sigma is not None and (not np.isfinite(blur_sigma) or blur_sigma <= 0):
        raise ValueError(f"blur_sigma: expected a positive float or None, got {blur_sigma!r}")
    start = (_broadcast_image_like(baseline, images, "baseline") if blur_sigma is None
             else gaussian_blur(images, blur_sigma))
    fs, fd = _split_fn(model_fn, "model_fn")
    return _curve_impl(fs, fd, images, start, images, px, outputs, counts, bool(probs), _batch(batch_size))


# ----------------------------------------------------------------------------- faithfulness

@functools.partial(jax.jit, static_argnames=("fs", "n_feat", "n", "s", "softmax", "bs"))
def _faith_impl(key, fs, fd, images, base, scores, ids, outputs, n_feat, n, s, softmax, bs):
    model_fn = _join_fn(fs, fd)
    B = images.shape[0]

    def f(x):
        out = model_fn(x)
        return jax.nn.softmax(out, -1) if softmax else out

    k = outputs
    if k is None:
        k = jnp.argmax(_map_chunks(model_fn, images, bs), -1)
    f_x = _pick(_map_chunks(f, images, bs), k)

    def one(i):
        b = i // n
        u = jax.vmap(lambda j: jax.random.uniform(jax.random.fold_in(key, j), (n_feat,)))(i)
        top = jax.lax.top_k(u, s)[1]  # [m, s] a uniformly random subset
        chosen = jnp.zeros(u.shape, bool).at[jnp.arange(u.shape[0])[:, None], top].set(True)
        m = jnp.take_along_axis(chosen, ids[b].reshape(u.shape[0], -1), 1).reshape(ids[b].shape)
        xo = jnp.where(m[..., None], base[b], images[b])
        return f_x[b] - _pick(f(xo), k[b]), jnp.sum(jnp.where(chosen, scores[b], 0.0), -1)

    drop, attr_sum = _map_chunks(one, jnp.arange(B * n), bs)
    return _pearson(attr_sum.reshape(B, n), drop.reshape(B, n))


@keyword_key
def faithfulness_correlation(model_fn, images, attributions, *, key, outputs="auto", segments=None,
                             n_subsets: int = 64, subset_size: int | None = None, baseline=0.0,
                             softmax: bool = False, batch_size=None) -> jax.Array:
    r"""Faithfulness correlation (Bhatt et al. 2020).

    Draws ``n_subsets`` uniformly random feature subsets :math:`S` of size
    ``subset_size`` (pixels, or segments when ``segments`` is given), sets
    them to the baseline and correlates the attribution mass of the subset
    with the output drop:

    .. math::
        \mu_F = \operatorname{corr}_{S}\Big(\sum_{i \in S} g_i,\;
        f_k(x) - f_k(x_{S \leftarrow x'})\Big)

    Args:
      key: PRNG key.
      model_fn, images, attributions, outputs, segments, baseline, batch_size:
        as :func:`deletion`.
      n_subsets: random subsets per image.
      subset_size: features per subset (default: a quarter of them, at least 1).
      softmax: compare softmax probabilities instead of raw model outputs.

    Returns:
      ``[B]`` Pearson correlation in [-1, 1]; 0 where either side has no variance.

    References:
      Bhatt, Weller & Moura (2020), Evaluating and aggregating feature-based
      model explanations, IJCAI.
    """
    key = _check_key(key)
    images = _check_images(images)
    scores, ids, n_feat, default_k = _features(attributions, segments, images.shape)
    images, outputs = _resolve(model_fn, images, outputs, default_k)
    n = _check_pos_int(n_subsets, "n_subsets")
    if n < 2:
        raise ValueError(f"n_subsets: a correlation needs at least 2 subsets, got {n}")
    s = max(1, n_feat // 4) if subset_size is None else _check_pos_int(subset_size, "subset_size")
    if s > n_feat:
        raise ValueError(f"subset_size: {s} is larger than the number of features {n_feat}")
    base = _broadcast_image_like(baseline, images, "baseline")
    fs, fd = _split_fn(model_fn, "model_fn")
    return _faith_impl(key, fs, fd, images, base, scores.astype(images.dtype), ids, outputs,
                       n_feat, n, s, bool(softmax), _batch(batch_size))




# ----------------------------------------------------------------------------- pixel flipping / regions

def _feature_inputs(model_fn, images, attributions, outputs, segments, aggregate="sum"):
    """Checked images, explained outputs, feature scores ``[B, F]``, ids ``[B, H, W]``, validity ``[B, F]``."""
    images = _check_images(images)
    scores, ids, n_feat, default_k = _features(attributions, segments, images.shape)
    images, outputs = _resolve(model_fn, images, outputs, default_k)
    valid = _feature_valid(ids, n_feat)
    if aggregate == "mean":
        cnt = jax.vmap(lambda i: jnp.zeros((n_feat,), jnp.float32).at[i.reshape(-1)].add(1.0))(ids)
        scores = scores / jnp.maximum(cnt, 1.0)
    return images, outputs, scores.astype(jnp.float32), ids, n_feat, valid


def _perturbation_curve(model_fn, images, rank, ids, outputs, counts, base, softmax, batch_size, n_feat):
    fs, fd = _split_fn(model_fn, "model_fn")
    curves, _ = _feature_curve_impl(fs, fd, images, images, base, rank, ids, outputs, counts, bool(softmax),
                                    _batch(batch_size))
    fr = jnp.asarray(np.asarray(counts, np.float32) / n_feat)
    aopc = jnp.mean(curves[:, :1] - curves, axis=-1)
    return PerturbationCurve(curves=curves, aopc=aopc, auc=_trapz(curves, fr), fractions=fr)


def pixel_flipping(model_fn, images, attributions, *, outputs="auto", segments=None, features_in_step: int = 1,
                   order: str = "morf", baseline=0.0, softmax: bool = True, batch_size=None) -> PerturbationCurve:
    r"""Pixel flipping (Bach et al. 2015): remove features most relevant first, cumulatively.

    Features (pixels, or segments with ``segments=``) are ranked by attribution (``order="morf"``:
    most relevant first; ``"lerf"``: least relevant first; ties to the lower index) and
    ``features_in_step`` at a time are replaced by ``baseline``:

    .. math:: c_s = f_k\big(x_{\,\mathrm{top}(s\,n) \leftarrow x'}\big),\quad s = 0, \dots, \lceil F/n \rceil

    A faithful explanation makes the MoRF curve fall fast: lower ``auc`` (higher ``aopc``) is
    better for MoRF, the reverse for LeRF. ``curves[:, 1:]`` is Quantus' ``PixelFlipping``
    curve.

    Args:
      model_fn: ``images [N, H, W, C] -> [N, K]``.
      images: ``[B, H, W, C]``.
      attributions: heatmap ``[B, H, W]``, ``[B, M]`` with ``segments``, a PixelAttribution or a
        single-output Explanation.
      outputs: the class explained per image: ``"auto"`` (the attribution's own, else
        ``"top-1"``), an int, ``[c]`` or ``[B, 1]``.
      segments: ``[B, H, W]`` / ``[H, W]`` int: flip segments instead of pixels.
      features_in_step: features replaced per step.
      order: ``"morf"`` or ``"lerf"``.
      baseline: scalar, ``[H, W, C]`` or ``[B, H, W, C]`` replacement.
      softmax: score probabilities (True) or raw outputs.
      batch_size: model inputs per chunk (default 256).

    Returns:
      :class:`PerturbationCurve`.

    References:
      Bach et al. (2015), On pixel-wise explanations for non-linear classifier decisions by
      layer-wise relevance propagation, PLoS ONE 10(7).
    """
    order = _check_choice(order, "order", ("morf", "lerf"))
    images, outputs, scores, ids, n_feat, valid = _feature_inputs(model_fn, images, attributions, outputs, segments)
    step = _check_pos_int(features_in_step, "features_in_step")
    counts = tuple(int(c) for c in _schedule(n_feat, None, step))
    rank = _feature_rank(scores, valid, ascending=order == "lerf")
    base = _broadcast_image_like(baseline, images, "baseline")
    return _perturbation_curve(model_fn, images, rank, ids, outputs, counts, base, softmax, batch_size, n_feat)


def _patch_grid(H, W, p):
    r, c = np.arange(H) // p, np.arange(W) // p
    return jnp.asarray(r[:, None] * (-(-W // p)) + c[None], jnp.int32)


def region_perturbation(model_fn, images, attributions, *, outputs="auto", patch_size: int = 4, segments=None,
                        order: str = "morf", n_regions: int | None = None, baseline=0.0, softmax: bool = True,
                        batch_size=None) -> PerturbationCurve:
    r"""Region perturbation and its AOPC (Samek et al. 2017).

    The image is cut into non-overlapping ``patch_size`` x ``patch_size`` patches (or the given
    ``segments``); each region is scored by the sum of its attribution and the regions are
    replaced by ``baseline`` one at a time, most relevant first (``order="morf"``):

    .. math::
        \mathrm{AOPC} = \frac{1}{L + 1}\sum_{k=0}^{L} \big(f_k(x^{(0)}) - f_k(x^{(k)})\big)

    Higher AOPC is better for MoRF (lower for LeRF). ``curves[:, :1] - curves[:, 1:]`` is
    Quantus' ``RegionPerturbation`` output when ``patch_size`` divides the image.

    Args:
      model_fn, images, attributions, outputs, baseline, softmax, batch_size: as :func:`pixel_flipping`.
      patch_size: side of the square regions (when ``segments`` is None).
      segments: ``[B, H, W]`` / ``[H, W]`` int regions instead of patches.
      order: ``"morf"`` or ``"lerf"``.
      n_regions: steps L (default: every region).

    Returns:
      :class:`PerturbationCurve` with ``curves [B, L + 1]``.

    References:
      Samek, Binder, Montavon, Lapuschkin & Müller (2017), Evaluating the visualization of what a
      deep neural network has learned, IEEE TNNLS 28(11).
    """
    order = _check_choice(order, "order", ("morf", "lerf"))
    images = _check_images(images)
    B, H, W = images.shape[:3]
    if segments is None:
        p = _check_pos_int(patch_size, "patch_size")
        if p > min(H, W):
            raise ValueError(f"patch_size: {p} is larger than the image {H}x{W}")
        segments = _patch_grid(H, W, p)
        attributions = as_heatmap(attributions)  # summed per patch by _features
    images, outputs, scores, ids, n_feat, valid = _feature_inputs(model_fn, images, attributions, outputs, segments)
    L = n_feat if n_regions is None else _check_pos_int(n_regions, "n_regions")
    if L > n_feat:
        raise ValueError(f"n_regions: {L} is more than the {n_feat} regions")
    rank = _feature_rank(scores, valid, ascending=order == "lerf")
    base = _broadcast_image_like(baseline, images, "baseline")
    return _perturbation_curve(model_fn, images, rank, ids, outputs, tuple(range(L + 1)), base, softmax,
                               batch_size, n_feat)


def irof(model_fn, images, attributions, *, segments, outputs="auto", baseline=0.0, softmax: bool = True,
         batch_size=None) -> IROF:
    r"""Iterative removal of features, IROF (Rieger & Hansen 2020; higher is better).

    Segments (superpixels in the paper; any segmentation here) are ranked by their *mean*
    attribution and removed cumulatively, most relevant first; the curve is the explained
    output divided by its value on the image, and the score the area over it:

    .. math::
        c_s = \frac{f_k(x_{\,\mathrm{top}(s) \leftarrow x'})}{f_k(x)},\quad
        \mathrm{AOC} = n - \sum_{s=1}^{n-1} \tfrac12 (c_s + c_{s+1}),\quad \mathrm{IROF} = \mathrm{AOC} / n

    Args:
      model_fn, images, attributions, outputs, baseline, softmax, batch_size: as :func:`pixel_flipping`
        (Quantus' default baseline is the image mean; pass ``baseline=images.mean()`` for it).
      segments: ``[B, H, W]`` / ``[H, W]`` int, e.g. ``shapjax.segment.slic(...)(images)``.

    Returns:
      :class:`IROF`.

    References:
      Rieger & Hansen (2020), IROF: a low resource evaluation metric for explanation methods,
      arXiv:2003.08747.
    """
    images, outputs, scores, ids, n_feat, valid = _feature_inputs(model_fn, images, attributions, outputs,
                                                                  segments, aggregate="mean")
    rank = _feature_rank(scores, valid)
    base = _broadcast_image_like(baseline, images, "baseline")
    fs, fd = _split_fn(model_fn, "model_fn")
    curves, _ = _feature_curve_impl(fs, fd, images, images, base, rank, ids, outputs, tuple(range(n_feat + 1)),
                                    bool(softmax), _batch(batch_size))
    return _irof_score(curves, valid)


@jax.jit
def _irof_score(curves, valid):
    n = valid.sum(-1)
    c0 = curves[:, :1]
    c = curves[:, 1:] / jnp.where(c0 != 0, c0, 1.0)
    on = jnp.arange(c.shape[1])[None] < n[:, None]
    c = jnp.where(on, c, 0.0)
    pair = jnp.arange(c.shape[1] - 1)[None] < (n[:, None] - 1)
    area = jnp.sum(jnp.where(pair, 0.5 * (c[:, 1:] + c[:, :-1]), 0.0), -1)
    aoc = n - area
    return IROF(curves=c, aoc=aoc, score=aoc / jnp.maximum(n, 1), n_segments=n)
