r"""Metrics that say how faithful, localised, sparse and accurate an explanation is.

Attributions are accepted as a pixel map ``[B, H, W]``, a per-segment vector
``[B, M]`` together with ``segments=[B, H, W]`` (or ``[H, W]``), a
:class:`shapjax.gradients.PixelAttribution` (its heatmap is used) or a
single-output :class:`shapjax.explain.Explanation` (its segment values and
segments are used). The model-based metrics evaluate their perturbed images
under ``jax.jit``, ``batch_size`` model inputs at a time.

* :func:`deletion`, :func:`insertion` — RISE curves and their AUC.
* :func:`faithfulness_correlation` — Bhatt et al. 2020.
* :func:`pointing_game`, :func:`attribution_mass` — localisation on masks.
* :func:`sparseness` (Gini), :func:`complexity` (entropy).
* :func:`shapley_accuracy` — error against exact Shapley values.

Model-parameter randomisation sanity checks live in :mod:`shapjax.sanity`.

References:
  Petsiuk, Das & Saenko (2018), RISE: randomized input sampling for
  explanation of black-box models, BMVC.
  Bhatt, Weller & Moura (2020), Evaluating and aggregating feature-based model
  explanations, IJCAI.
  Zhang et al. (2016/2018), Top-down neural attention by excitation backprop
  (the pointing game).
  Chalasani et al. (2020), Concise explanations of neural networks using
  adversarial training, ICML (Gini sparseness).
  Hurley & Rickard (2009), Comparing measures of sparsity.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.api import keyword_key
from shapjax._util.checks import (
    _broadcast_image_like,
    _check_images,
    _check_key,
    _check_pos_int,
    _pixel_segments,
    check_finite,
)
from shapjax._util.chunks import _batch, _map_chunks, _pick
from shapjax._util.modelfn import _join_fn, _n_outputs, _split_fn
from shapjax._util.outputs import parse_single_output

__all__ = [
    "Curve", "deletion", "insertion", "gaussian_blur", "faithfulness_correlation",
    "pointing_game", "attribution_mass", "sparseness", "complexity",
    "ShapleyAccuracy", "shapley_accuracy", "as_heatmap",
]


class Curve(NamedTuple):
    """A deletion or insertion curve.

    Attributes:
      curves: ``[B, n_steps + 1]`` probability of the explained class after
        each step (step 0: nothing deleted / inserted).
      auc: ``[B]`` trapezoid area under the curve over ``fractions``.
      fractions: ``[n_steps + 1]`` fraction of pixels changed, 0 to 1.
    """

    curves: jax.Array
    auc: jax.Array
    fractions: jax.Array


class ShapleyAccuracy(NamedTuple):
    """Accuracy of estimated Shapley values against exact ones.

    Attributes:
      rel_l2: ``[B]`` :math:`\\|\\hat\\phi - \\phi\\|_2 / \\|\\phi\\|_2`.
      precision_at_k: ``[B]`` share of the exact top-k features (by
        :math:`|\\phi|`) found in the estimated top-k (averaged over outputs).
      efficiency_gap: ``[B]`` or ``[B, K]``
        :math:`|\\sum_i \\hat\\phi_i - (v(N) - v(\\emptyset))|`, or None.
    """

    rel_l2: jax.Array
    precision_at_k: jax.Array
    efficiency_gap: Any


# ----------------------------------------------------------------------------- inputs

def as_heatmap(attributions) -> jax.Array:
    """A pixel heatmap ``[B, H, W]`` from an array, a PixelAttribution or an Explanation.

    An :class:`~shapjax.explain.Explanation` must have one output (K == 1); its
    pixels carry ``to_pixels()`` (segment value / segment size).
    """
    if hasattr(attributions, "heatmap"):
        return check_finite(attributions.heatmap(), "attributions")
    if hasattr(attributions, "to_pixels"):
        px = attributions.to_pixels()
        if px.shape[-1] != 1:
            raise ValueError(f"attributions: an Explanation with K={px.shape[-1]} outputs; "
                             "pass one column, e.g. expl.to_pixels()[..., k]")
        return check_finite(px[..., 0], "attributions")
    a = check_finite(attributions, "attributions")
    if a.ndim != 3:
        raise ValueError(f"attributions: expected a heatmap [B, H, W], got shape {a.shape}")
    return a


def _features(attributions, segments, images_shape):
    """-> (scores [B, F], feature id per pixel [B, H, W], F, explained output or None)."""
    B, H, W = images_shape[:3]
    outs = getattr(attributions, "output_indexes", None)
    if hasattr(attributions, "to_pixels") and hasattr(attributions, "segments"):
        if attributions.values.shape[-1] != 1:
            raise ValueError(f"attributions: an Explanation with K={attributions.values.shape[-1]}"
                             " outputs; pass values[..., k] with segments=expl.segments")
        segments, attributions = attributions.segments, attributions.values[..., 0]
        outs = outs[:, 0]
    elif hasattr(attributions, "heatmap"):
        attributions = attributions.heatmap()
    a = check_finite(attributions, "attributions")
    if segments is None:
        if a.shape != (B, H, W):
            raise ValueError(f"attributions: expected a heatmap {(B, H, W)} (or [B, M] with "
                             f"segments=), got shape {a.shape}")
        ids = jnp.broadcast_to(jnp.arange(H * W, dtype=jnp.int32).reshape(H, W), (B, H, W))
        return a.reshape(B, H * W), ids, H * W, outs
    seg = _pixel_segments(segments, B, H, W)
    if a.ndim != 2 or a.shape[0] != B:
        raise ValueError(f"attributions: with segments=, expected per-segment values [B={B}, M],"
                         f" got shape {a.shape}")
    return a, seg.astype(jnp.int32), a.shape[1], outs


def _resolve(model_fn, images, outputs, default_outputs):
    """``outputs="auto"``: the attribution's own explained output when it carries one, else ``"top-1"``;
    any other value means what it means everywhere (:mod:`shapjax._util.outputs`), with K = 1."""
    images = _check_images(images)
    K = _n_outputs(model_fn, images)
    if isinstance(outputs, str) and outputs == "auto":
        outputs = "top-1" if default_outputs is None else jnp.asarray(default_outputs).astype(jnp.int32)[:, None]
    return images, parse_single_output(outputs, n_classes=K, batch=images.shape[0])


# ----------------------------------------------------------------------------- blur

def _gauss_kernel(sigma: float, radius: int) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(images, sigma: float, *, radius: int | None = None) -> jax.Array:
    r"""Separable Gaussian blur on device, edge padding: ``[B, H, W, C] -> [B, H, W, C]``.

    .. math:: k(t) \propto \exp(-t^2 / 2\sigma^2),\quad |t| \le r = \lceil 3\sigma \rceil

    Args:
      images: ``[B, H, W, C]``.
      sigma: standard deviation in pixels (> 0).
      radius: kernel half-width (default ``ceil(3 sigma)``).
    """
    images = _check_images(images)
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma: expected a positive float, got {sigma!r}")
    r = int(np.ceil(3 * sigma)) if radius is None else _check_pos_int(radius, "radius")
    k = jnp.asarray(_gauss_kernel(float(sigma), r), images.dtype)
    C = images.shape[-1]
    x = jnp.pad(images, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")
    dn = ("NHWC", "HWIO", "NHWC")
    x = jax.lax.conv_general_dilated(x, jnp.tile(k[:, None, None, None], (1, 1, 1, C)), (1, 1),
                                     "VALID", dimension_numbers=dn, feature_group_count=C)
    return jax.lax.conv_general_dilated(x, jnp.tile(k[None, :, None, None], (1, 1, 1, C)), (1, 1),
                                        "VALID", dimension_numbers=dn, feature_group_count=C)


# ----------------------------------------------------------------------------- deletion / insertion

def _schedule(n_pix: int, n_steps, step_size) -> np.ndarray:
    if n_steps is not None and step_size is not None:
        raise ValueError("n_steps, step_size: give at most one of them")
    if step_size is not None:
        step = _check_pos_int(step_size, "step_size")
        n = -(-n_pix // step)
        return np.minimum(np.arange(n + 1) * step, n_pix)
    n = min(n_pix, 100) if n_steps is None else _check_pos_int(n_steps, "n_steps")
    return np.rint(np.arange(n + 1) * n_pix / n).astype(np.int64)


def _pixel_rank(scores: jax.Array) -> jax.Array:
    """Rank of each pixel, 0 = highest score; ties go to the lower pixel index."""
    order = jnp.argsort(-scores + 0.0, axis=-1, stable=True)  # + 0.0 folds -0.0 into 0.0
    return jnp.argsort(order, axis=-1, stable=True)


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

def _pearson(a, b, axis=-1):
    a = a - a.mean(axis, keepdims=True)
    b = b - b.mean(axis, keepdims=True)
    den = jnp.sqrt((a * a).sum(axis) * (b * b).sum(axis))
    r = (a * b).sum(axis) / jnp.where(den > 0, den, 1.0)
    return jnp.where(den > 0, jnp.clip(r, -1.0, 1.0), 0.0)


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


# ----------------------------------------------------------------------------- localisation

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


# ----------------------------------------------------------------------------- sparseness / complexity

def _flat_abs(attributions, name="attributions"):
    if hasattr(attributions, "heatmap") or hasattr(attributions, "to_pixels"):
        attributions = as_heatmap(attributions)
    a = check_finite(attributions, name)
    if a.ndim < 2:
        raise ValueError(f"{name}: expected [B, ...] (a batch of maps or vectors), got {a.shape}")
    return jnp.abs(a.reshape(a.shape[0], -1).astype(jnp.float32))


@jax.jit
def _gini(a):
    n = a.shape[-1]
    s = jnp.sort(a, axis=-1)
    tot = s.sum(-1)
    w = 2.0 * jnp.arange(1, n + 1, dtype=a.dtype) - n - 1
    return jnp.where(tot > 0, (s * w).sum(-1) / (n * jnp.where(tot > 0, tot, 1.0)), 0.0)


def sparseness(attributions) -> jax.Array:
    r"""Gini index of :math:`|a|` (Chalasani et al. 2020; Hurley & Rickard 2009).

    With :math:`|a|` sorted ascending, :math:`a_{(1)} \le \dots \le a_{(n)}`:

    .. math:: G = \frac{\sum_{i=1}^n (2i - n - 1)\, a_{(i)}}{n \sum_i a_{(i)}}

    0 for a uniform map, :math:`1 - 1/n` for a one-hot map (0 for all zeros).

    Args:
      attributions: ``[B, ...]`` (heatmaps, segment values, ...) or a
        PixelAttribution / Explanation.

    Returns:
      ``[B]`` in [0, 1); higher is sparser.

    References:
      Chalasani et al. (2020), ICML. Hurley & Rickard (2009), IEEE Trans. Inf. Theory.
    """
    return _gini(_flat_abs(attributions))


@jax.jit
def _entropy(a):
    tot = a.sum(-1, keepdims=True)
    p = a / jnp.where(tot > 0, tot, 1.0)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), -1)


def complexity(attributions) -> jax.Array:
    r"""Entropy of the normalised absolute attribution (Bhatt et al. 2020).

    .. math:: \mathcal C = -\sum_i p_i \log p_i,\qquad p_i = |a_i| / \textstyle\sum_j |a_j|

    :math:`\log n` (natural log) for a uniform map, 0 for a one-hot map (and for all zeros).

    Args:
      attributions: ``[B, ...]`` or a PixelAttribution / Explanation.

    Returns:
      ``[B]``; lower is simpler.

    References:
      Bhatt, Weller & Moura (2020), IJCAI.
    """
    return _entropy(_flat_abs(attributions))


# ----------------------------------------------------------------------------- Shapley accuracy

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
