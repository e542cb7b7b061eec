r"""Gradient and occlusion attributions on the pixel grid.

The classic "pixel" explainers that Shapley explanations are compared with.
Every method takes a batched model ``model_fn(images [N, H, W, C]) -> [N, K]``
(logits or probabilities), a batch ``images [B, H, W, C]`` and ``outputs``,
the output to explain for each image (``"top-1"``, the default: the model's top
prediction on the unmasked image; an int: that class for every image; a ``[B, 1]`` int array:
one class per image — the same ``outputs`` values as :func:`shapjax.explain`, with K = 1), and returns a
:class:`PixelAttribution`.

Conventions
-----------
* ``maps`` is ``[B, H, W, C]`` for per-channel methods (gradients, IG,
  SmoothGrad, Expected Gradients) and ``[B, H, W, 1]`` for methods that score
  whole pixels (occlusion, Grad-CAM). :meth:`PixelAttribution.heatmap` sums the
  channels, so every method has a ``[B, H, W]`` heatmap, and
  :meth:`PixelAttribution.to_segments` sums a heatmap per segment, so every
  method can be compared with a Shapley explanation on the same players.
* Sign: gradient-based maps are signed — a positive value means increasing
  (or, for path methods, having) that pixel raises the explained output.
  Occlusion is signed too (positive: occluding the window lowers the output).
  Grad-CAM is non-negative (it is ReLU'd).
* Large sample counts (``steps``, ``n_samples``, occlusion windows) are
  evaluated ``batch_size`` model inputs at a time (:func:`jax.lax.map` /
  :func:`jax.lax.scan`), so memory stays bounded.
* ``model_fn`` must treat the rows of its input independently (no batch
  statistics). A plain Python callable is compiled in as a constant; a pytree
  callable (e.g. ``jax.tree_util.Partial(apply, params)`` or a flax struct
  module) has its arrays passed as traced arguments, which is cheaper to
  compile for big models; a :class:`shapjax.models.Classifier` is passed as
  ``Partial(clf.apply, clf.params)`` automatically. All functions can also be called inside ``jax.jit``.

References: Simonyan et al. 2013; Shrikumar et al. 2016; Sundararajan et al.
2017; Smilkov et al. 2017; Lundberg & Lee 2017; Erion et al. 2021; Selvaraju
et al. 2017; Zeiler & Fergus 2014 (full citations on each function).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from shapjax._util.api import keyword_key
from shapjax._util.checks import (
    _broadcast_image_like,
    _check_images,
    _check_key,
    _check_pos_int,
    _pixel_segments,
)
from shapjax._util.chunks import (  # noqa: F401
    DEFAULT_BATCH_SIZE,
    _batch,
    _map_chunks,
    _pick,
    _sum_chunks,
)
from shapjax._util.modelfn import _join_fn, _n_outputs, _split_fn
from shapjax._util.outputs import parse_single_output

__all__ = [
    "PixelAttribution", "vanilla_gradient", "gradient_x_input", "integrated_gradients",
    "smoothgrad", "expected_gradients", "gradient_shap", "grad_cam", "occlusion",
]


@struct.dataclass
class PixelAttribution:
    """Pixel-grid attributions for a batch of images (a pytree).

    Attributes:
      maps: ``[B, H, W, C]`` raw attributions (``[B, H, W, 1]`` for methods
        that score whole pixels: occlusion, Grad-CAM).
      output_indexes: ``[B]`` int, the explained model output of each image.
      completeness_gap: ``[B]`` or None. Integrated Gradients:
        :math:`|\\sum \\mathrm{attr} - (f(x) - f(x'))|`; Expected Gradients: the
        same against the mean output on the background set (a Monte Carlo
        quantity, zero only in expectation).
      coarse_maps: ``[B, h, w]`` or None; Grad-CAM's map before upsampling.
      method: name of the method (static).
    """

    maps: jax.Array
    output_indexes: jax.Array
    completeness_gap: Any = None
    coarse_maps: Any = None
    method: str = struct.field(pytree_node=False, default="")

    def heatmap(self) -> jax.Array:
        """Channel-summed attribution ``[B, H, W]``."""
        return self.maps.sum(axis=-1)

    def to_segments(self, segments, *, n_segments: int | None = None) -> jax.Array:
        """Sum each segment's pixel attributions (over channels): ``[B, M]``.

        Args:
          segments: ``[B, H, W]`` or ``[H, W]`` int segment ids in ``0..M-1``.
          n_segments: M; required under ``jax.jit`` (else ``max(segments) + 1``).
        """
        hm = self.heatmap()
        B, H, W = hm.shape
        seg = _pixel_segments(segments, B, H, W)
        if n_segments is None:
            if isinstance(seg, jax.core.Tracer):
                raise ValueError("n_segments: required when segments is traced (under jax.jit)")
            n_segments = int(seg.max()) + 1
        return jax.vmap(lambda h, s: jax.ops.segment_sum(
            h.reshape(-1), s.reshape(-1), num_segments=n_segments))(hm, seg)


# ----------------------------------------------------------------------------- gradient plumbing

def _grad_fn(model_fn):
    """``(x [n,H,W,C], k [n]) -> d model_fn(x)[i, k_i] / d x``."""
    return jax.grad(lambda x, k: _pick(model_fn(x), k).sum())


def _resolve_outputs(model_fn, images, outputs, bs):
    if outputs is None:
        return jnp.argmax(_map_chunks(model_fn, images, bs), axis=-1).astype(jnp.int32)
    return outputs


def _prepare(model_fn, images, outputs):
    images = _check_images(images)
    K = _n_outputs(model_fn, images)
    return images, parse_single_output(outputs, n_classes=K, batch=images.shape[0])


# ----------------------------------------------------------------------------- gradients

@functools.partial(jax.jit, static_argnames=("fs", "times_input", "bs"))
def _simple_impl(fs, fd, images, outputs, baseline, times_input, bs):
    model_fn = _join_fn(fs, fd)
    k = _resolve_outputs(model_fn, images, outputs, bs)
    grads = _map_chunks(lambda c: _grad_fn(model_fn)(*c), (images, k), bs)
    maps = grads * (images - baseline) if times_input else grads
    return PixelAttribution(maps=maps, output_indexes=k,
                            method="gradient_x_input" if times_input else "vanilla_gradient")


def vanilla_gradient(model_fn, images, *, outputs="top-1", batch_size=None) -> PixelAttribution:
    r"""Saliency as the input gradient of the explained output (Simonyan et al. 2013).

    .. math:: \mathrm{attr}(x) = \partial f_k(x) / \partial x

    Args:
      model_fn: ``images [N, H, W, C] -> [N, K]``.
      images: ``[B, H, W, C]`` float.
      outputs: the output explained for each image: ``"top-1"`` (the prediction), an int (that
        class for every image) or a ``[B, 1]`` int array (see :mod:`shapjax._util.outputs`).
      batch_size: model inputs per chunk (default 256).

    Returns:
      :class:`PixelAttribution` with signed ``maps [B, H, W, C]``.

    References:
      Simonyan, Vedaldi & Zisserman (2013), arXiv:1312.6034.
    """
    images, outputs = _prepare(model_fn, images, outputs)
    fs, fd = _split_fn(model_fn, "model_fn")
    return _simple_impl(fs, fd, images, outputs, jnp.zeros((), images.dtype), False, _batch(batch_size))


def gradient_x_input(model_fn, images, *, outputs="top-1", baseline=0.0,
                     batch_size=None) -> PixelAttribution:
    r"""Gradient times (input minus baseline) (Shrikumar et al. 2016).

    .. math:: \mathrm{attr}(x) = (x - x') \odot \partial f_k(x) / \partial x

    For a linear model with ``baseline=0`` the attributions sum to
    :math:`f_k(x) - f_k(0)`.

    Args:
      model_fn, images, outputs, batch_size: as :func:`vanilla_gradient`.
      baseline: scalar, ``[H, W, C]`` or ``[B, H, W, C]`` reference :math:`x'`.

    References:
      Shrikumar et al. (2016), arXiv:1605.01713.
    """
    images, outputs = _prepare(model_fn, images, outputs)
    base = _broadcast_image_like(baseline, images, "baseline")
    fs, fd = _split_fn(model_fn, "model_fn")
    return _simple_impl(fs, fd, images, outputs, base, True, _batch(batch_size))


def _ig_rule(steps: int, rule: str):
    if rule == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps + 1)
        w = np.full(steps + 1, 1.0 / steps)
        w[[0, -1]] *= 0.5
    elif rule == "midpoint":
        alphas = (np.arange(steps) + 0.5) / steps
        w = np.full(steps, 1.0 / steps)
    elif rule == "gauss-legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        alphas, w = (nodes + 1.0) / 2.0, weights / 2.0
    else:
        raise ValueError(f"rule: expected 'trapezoid', 'midpoint' or 'gauss-legendre', got {rule!r}")
    return alphas.astype(np.float32), w.astype(np.float32)


@functools.partial(jax.jit, static_argnames=("fs", "steps", "rule", "bs"))
def _ig_impl(fs, fd, images, outputs, baseline, steps, rule, bs):
    model_fn = _join_fn(fs, fd)
    B = images.shape[0]
    k = _resolve_outputs(model_fn, images, outputs, bs)
    alphas, w = _ig_rule(steps, rule)
    S = len(alphas)
    b_idx = jnp.repeat(jnp.arange(B), S)
    a = jnp.tile(jnp.asarray(alphas), B)
    wt = jnp.tile(jnp.asarray(w), B)

    def contrib(c):
        b, al, ww = c
        x, x0 = images[b], baseline[b]
        xi = x0 + al[:, None, None, None] * (x - x0)
        return b, ww[:, None, None, None] * _grad_fn(model_fn)(xi, k[b])

    avg_grad = _sum_chunks(contrib, (b_idx, a, wt), bs, jnp.zeros_like(images))
    maps = avg_grad * (images - baseline)
    ends = _map_chunks(model_fn, jnp.concatenate([images, baseline]), bs)
    kk = jnp.concatenate([k, k])
    f = _pick(ends, kk)
    gap = jnp.abs(maps.reshape(B, -1).sum(-1) - (f[:B] - f[B:]))
    return PixelAttribution(maps=maps, output_indexes=k, completeness_gap=gap,
                            method="integrated_gradients")


def integrated_gradients(model_fn, images, *, outputs="top-1", baseline=0.0, steps: int = 32,
                         rule: str = "trapezoid", batch_size=None) -> PixelAttribution:
    r"""Integrated Gradients (Sundararajan et al. 2017).

    .. math::
        \mathrm{IG}(x) = (x - x') \odot \int_0^1
        \frac{\partial f_k(x' + \alpha (x - x'))}{\partial x}\, d\alpha
        \approx (x - x') \odot \sum_s w_s\, \nabla f_k(x' + \alpha_s (x - x'))

    Completeness says :math:`\sum \mathrm{IG}(x) = f_k(x) - f_k(x')`; the
    quadrature error is reported per image as ``completeness_gap [B]``.

    Args:
      model_fn, images, outputs, batch_size: as :func:`vanilla_gradient`.
      baseline: scalar, ``[H, W, C]`` or ``[B, H, W, C]`` reference :math:`x'`.
      steps: number of intervals (``"trapezoid"``: steps + 1 gradient
        evaluations; ``"midpoint"``/``"gauss-legendre"``: steps evaluations).
      rule: ``"trapezoid"`` (Riemann trapezoid), ``"midpoint"`` or
        ``"gauss-legendre"`` (exact for polynomial paths of degree < 2 * steps).

    References:
      Sundararajan, Taly & Yan (2017), Axiomatic attribution for deep networks, ICML.
    """
    images, outputs = _prepare(model_fn, images, outputs)
    steps = _check_pos_int(steps, "steps")
    _ig_rule(1, rule)  # validates the name early
    base = _broadcast_image_like(baseline, images, "baseline")
    fs, fd = _split_fn(model_fn, "model_fn")
    return _ig_impl(fs, fd, images, outputs, base, steps, rule, _batch(batch_size))


@functools.partial(jax.jit, static_argnames=("fs", "n", "bs"))
def _smooth_impl(key, fs, fd, images, outputs, sigma, n, bs):
    model_fn = _join_fn(fs, fd)
    B = images.shape[0]
    k = _resolve_outputs(model_fn, images, outputs, bs)
    ids = jnp.arange(B * n)

    def contrib(i):
        b = i // n
        noise = jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(key, j), images.shape[1:],
                                                     images.dtype))(i)
        xi = images[b] + sigma[b][:, None, None, None] * noise
        return b, _grad_fn(model_fn)(xi, k[b]) / n

    maps = _sum_chunks(contrib, ids, bs, jnp.zeros_like(images))
    return PixelAttribution(maps=maps, output_indexes=k, method="smoothgrad")


@keyword_key
def smoothgrad(model_fn, images, *, key, outputs="top-1", n_samples: int = 32, noise: float = 0.15,
               input_range: tuple[float, float] | None = None, batch_size=None) -> PixelAttribution:
    r"""SmoothGrad: the gradient averaged over noisy copies (Smilkov et al. 2017).

    .. math::
        \mathrm{attr}(x) = \frac1n \sum_{i=1}^n \nabla f_k(x + \epsilon_i),\quad
        \epsilon_i \sim \mathcal N(0, \sigma^2),\ \sigma = \mathrm{noise}\cdot(x_{max} - x_{min})

    Args:
      key: PRNG key.
      model_fn, images, outputs, batch_size: as :func:`vanilla_gradient`.
      n_samples: noisy copies per image.
      noise: noise std as a fraction of the input range (paper: 0.1 to 0.2).
      input_range: ``(lo, hi)``; None uses each image's own ``max - min``.

    References:
      Smilkov et al. (2017), SmoothGrad: removing noise by adding noise, arXiv:1706.03825.
    """
    key = _check_key(key)
    images, outputs = _prepare(model_fn, images, outputs)
    n = _check_pos_int(n_samples, "n_samples")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise: expected a non-negative float, got {noise!r}")
    if input_range is None:
        flat = images.reshape(images.shape[0], -1)
        spread = flat.max(-1) - flat.min(-1)
    else:
        lo, hi = input_range
        spread = jnp.full((images.shape[0],), hi - lo, images.dtype)
    fs, fd = _split_fn(model_fn, "model_fn")
    return _smooth_impl(key, fs, fd, images, outputs, noise * spread, n, _batch(batch_size))


@functools.partial(jax.jit, static_argnames=("fs", "n", "bs"))
def _eg_impl(key, fs, fd, images, background, outputs, noise_std, n, bs):
    model_fn = _join_fn(fs, fd)
    B, Nb = images.shape[0], background.shape[0]
    k = _resolve_outputs(model_fn, images, outputs, bs)

    def one(i):
        k1, k2, k3 = jax.random.split(jax.random.fold_in(key, i), 3)
        j = jax.random.randint(k1, (), 0, Nb)
        alpha = jax.random.uniform(k2, (), images.dtype)
        eps = noise_std * jax.random.normal(k3, images.shape[1:], images.dtype)
        return j, alpha, eps

    def contrib(i):
        b = i // n
        j, alpha, eps = jax.vmap(one)(i)
        x, ref = images[b], background[j]
        xi = ref + alpha[:, None, None, None] * (x - ref) + eps
        return b, _grad_fn(model_fn)(xi, k[b]) * (x - ref) / n

    maps = _sum_chunks(contrib, jnp.arange(B * n), bs, jnp.zeros_like(images))
    f_x = _pick(_map_chunks(model_fn, images, bs), k)
    f_bg = _map_chunks(model_fn, background, bs).mean(0)  # [K]
    gap = jnp.abs(maps.reshape(B, -1).sum(-1) - (f_x - f_bg[k]))
    return PixelAttribution(maps=maps, output_indexes=k, completeness_gap=gap,
                            method="expected_gradients")


@keyword_key
def expected_gradients(model_fn, images, background, *, key, outputs="top-1", n_samples: int = 64,
                       noise_std: float = 0.0, batch_size=None) -> PixelAttribution:
    r"""Expected Gradients / GradientSHAP (Erion et al. 2021; Lundberg & Lee 2017).

    Integrated Gradients averaged over baselines drawn from a background set,
    estimated with one random reference and one random path point per sample:

    .. math::
        \mathrm{EG}(x) = \mathbb E_{x' \sim D,\ \alpha \sim U(0,1)}
        \big[(x - x') \odot \nabla f_k(x' + \alpha (x - x'))\big]

    For a linear model this is :math:`w \odot (x - \mathbb E[x'])` in
    expectation. ``completeness_gap`` compares the attribution sum with
    :math:`f_k(x) - \mathbb E_{x'} f_k(x')` (zero in expectation only).

    Args:
      key: PRNG key.
      model_fn, images, outputs, batch_size: as :func:`vanilla_gradient`.
      background: ``[N_b, H, W, C]`` reference images.
      n_samples: (reference, alpha) draws per image.
      noise_std: std of Gaussian noise added to each path point (GradientSHAP's
        local smoothing; 0 gives Expected Gradients).

    References:
      Erion et al. (2021), Nature Machine Intelligence 3, 620-631.
      Lundberg & Lee (2017), A unified approach to interpreting model predictions, NeurIPS.
    """
    key = _check_key(key)
    images, outputs = _prepare(model_fn, images, outputs)
    background = _check_images(background, "background")
    if background.shape[1:] != images.shape[1:]:
        raise ValueError(f"background: expected shape [N, {', '.join(map(str, images.shape[1:]))}],"
                         f" got {background.shape}")
    n = _check_pos_int(n_samples, "n_samples")
    if not np.isfinite(noise_std) or noise_std < 0:
        raise ValueError(f"noise_std: expected a non-negative float, got {noise_std!r}")
    fs, fd = _split_fn(model_fn, "model_fn")
    return _eg_impl(key, fs, fd, images, background.astype(images.dtype), outputs,
                    jnp.asarray(noise_std, images.dtype), n, _batch(batch_size))


gradient_shap = expected_gradients  # GradientSHAP is Expected Gradients (+ optional noise_std)


# ----------------------------------------------------------------------------- Grad-CAM

@functools.partial(jax.jit, static_argnames=("ffs", "hfs", "bs"))
def _gradcam_impl(ffs, ffd, hfs, hfd, images, outputs, bs):
    features_fn, head_fn = _join_fn(ffs, ffd), _join_fn(hfs, hfd)
    B, H, W, _ = images.shape
    if outputs is None:
        outputs = _map_chunks(lambda x: jnp.argmax(head_fn(features_fn(x)), -1), images, bs)
    k = outputs.astype(jnp.int32)

    def one(c):
        x, kk = c
        fmap = features_fn(x)  # [n, h, w, F]
        g = jax.grad(lambda a: _pick(head_fn(a), kk).sum())(fmap)
        weights = g.mean(axis=(1, 2))  # [n, F]
        cam = jax.nn.relu(jnp.einsum("nhwf,nf->nhw", fmap, weights))
        up = jax.image.resize(cam, (cam.shape[0], H, W), method="bilinear")
        return jnp.maximum(up, 0.0), cam

    up, cam = _map_chunks(one, (images, k), bs)
    return PixelAttribution(maps=up[..., None], output_indexes=k, coarse_maps=cam, method="grad_cam")


def grad_cam(features_fn, head_fn, images, *, outputs="top-1", batch_size=None) -> PixelAttribution:
    r"""Grad-CAM class activation maps (Selvaraju et al. 2017).

    With :math:`A = \mathrm{features}(x)` the last conv feature map ``[h, w, F]``
    and :math:`y_k = \mathrm{head}(A)_k`:

    .. math::
        \alpha_f = \frac{1}{hw}\sum_{i,j} \frac{\partial y_k}{\partial A_{ijf}},\qquad
        L = \mathrm{ReLU}\Big(\sum_f \alpha_f A_{\cdot\cdot f}\Big) \in \mathbb R^{h\times w}_{\ge 0}

    ``L`` is upsampled to ``[H, W]`` with :func:`jax.image.resize` (bilinear,
    half-pixel centres). Non-negative by construction.

    Args:
      features_fn: ``images [N, H, W, C] -> fmap [N, h, w, F]``.
      head_fn: ``fmap [N, h, w, F] -> [N, K]``, with head(features(x)) the model.
      images: ``[B, H, W, C]``.
      outputs: as :func:`vanilla_gradient` (``"top-1"``: the prediction of head(features(x))).
      batch_size: images per chunk (default 256).

    Returns:
      :class:`PixelAttribution` with ``maps [B, H, W, 1]`` (``heatmap()`` is
      ``[B, H, W]``) and ``coarse_maps [B, h, w]``.

    References:
      Selvaraju et al. (2017), Grad-CAM: visual explanations from deep networks
      via gradient-based localization, ICCV.
    """
    images = _check_images(images)
    ffs, ffd = _split_fn(features_fn, "features_fn")
    hfs, hfd = _split_fn(head_fn, "head_fn")
    fm = jax.eval_shape(features_fn, jax.ShapeDtypeStruct(images.shape, images.dtype))
    if getattr(fm, "ndim", None) != 4:
        raise ValueError(f"features_fn: expected a feature map [B, h, w, F], "
                         f"got {getattr(fm, 'shape', type(fm).__name__)}")
    out = jax.eval_shape(head_fn, fm)
    if getattr(out, "ndim", None) != 2:
        raise ValueError(f"head_fn: expected an output [B, K], got {getattr(out, 'shape', out)}")
    outputs = parse_single_output(outputs, n_classes=out.shape[1], batch=images.shape[0])
    return _gradcam_impl(ffs, ffd, hfs, hfd, images, outputs, _batch(batch_size))


# ----------------------------------------------------------------------------- occlusion

def _window_starts(size: int, win: int, stride: int) -> np.ndarray:
    starts = list(range(0, size - win + 1, stride))
    if starts[-1] + win < size:  # make sure the last rows/cols are covered
        starts.append(size - win)
    return np.asarray(starts, np.int32)


def _pair(v, name):
    t = (v, v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else tuple(v)
    if len(t) != 2:
        raise ValueError(f"{name}: expected an int or a pair of ints, got {v!r}")
    return _check_pos_int(t[0], name), _check_pos_int(t[1], name)


@functools.partial(jax.jit, static_argnames=("fs", "window", "stride", "bs"))
def _occlusion_impl(fs, fd, images, outputs, baseline, window, stride, bs):
    model_fn = _join_fn(fs, fd)
    B, H, W, _ = images.shape
    (wh, ww), (sh, sw) = window, stride
    r0, c0 = _window_starts(H, wh, sh), _window_starts(W, ww, sw)
    R, Cn = len(r0), len(c0)
    rmask = (np.arange(H)[None] >= r0[:, None]) & (np.arange(H)[None] < r0[:, None] + wh)  # [R,H]
    cmask = (np.arange(W)[None] >= c0[:, None]) & (np.arange(W)[None] < c0[:, None] + ww)  # [Cn,W]
    k = _resolve_outputs(model_fn, images, outputs, bs)
    f_x = _pick(_map_chunks(model_fn, images, bs), k)
    rm, cm = jnp.asarray(rmask), jnp.asarray(cmask)

    def drop(i):
        b, p = i // (R * Cn), i % (R * Cn)
        m = rm[p // Cn][:, :, None] & cm[p % Cn][:, None, :]  # [n,H,W]
        xo = jnp.where(m[..., None], baseline[b], images[b])
        return f_x[b] - _pick(model_fn(xo), k[b])

    d = _map_chunks(drop, jnp.arange(B * R * Cn), bs).reshape(B, R, Cn)
    total = jnp.einsum("rh,brc,cw->bhw", rm.astype(d.dtype), d, cm.astype(d.dtype))
    counts = np.outer(rmask.sum(0), cmask.sum(0)).astype(np.float32)
    return PixelAttribution(maps=(total / counts)[..., None], output_indexes=k, method="occlusion")


def occlusion(model_fn, images, *, outputs="top-1", window=8, stride=None, baseline=0.0,
              batch_size=None) -> PixelAttribution:
    r"""Sliding-window occlusion (Zeiler & Fergus 2014).

    Every window position :math:`w` (all channels) is replaced by the baseline
    and scored by the output drop :math:`d_w = f_k(x) - f_k(x_{w \leftarrow x'})`;
    a pixel's attribution is the mean drop over the windows covering it:

    .. math:: \mathrm{attr}(p) = \frac{1}{|\{w \ni p\}|}\sum_{w \ni p} d_w

    Windows start every ``stride`` pixels, plus one flush with the bottom/right
    edge when the stride does not land there, so every pixel is covered. All
    ``B * n_windows`` occluded images are evaluated ``batch_size`` at a time.

    Args:
      model_fn, images, outputs: as :func:`vanilla_gradient`.
      window: int or ``(wh, ww)`` window size in pixels.
      stride: int or ``(sh, sw)``; default: the window size (no overlap).
      baseline: scalar, ``[H, W, C]`` or ``[B, H, W, C]`` occlusion value.
      batch_size: model inputs per chunk (default 256).

    Returns:
      :class:`PixelAttribution` with signed ``maps [B, H, W, 1]``.

    References:
      Zeiler & Fergus (2014), Visualizing and understanding convolutional networks, ECCV.
    """
    images, outputs = _prepare(model_fn, images, outputs)
    window = _pair(window, "window")
    stride = window if stride is None else _pair(stride, "stride")
    H, W = images.shape[1:3]
    if window[0] > H or window[1] > W:
        raise ValueError(f"window: {window} does not fit in images of size {(H, W)}")
    base = _broadcast_image_like(baseline, images, "baseline")
    fs, fd = _split_fn(model_fn, "model_fn")
    return _occlusion_impl(fs, fd, images, outputs, base, window, stride, _batch(batch_size))
