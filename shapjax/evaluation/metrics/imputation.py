r"""ROAD: remove and debias, with noisy linear imputation (Rong et al., ICML 2022).

Deleting pixels by painting them black (or any constant) leaks the shape of the deleted set:
a model can read *where* pixels were removed, so a deletion curve measures the mask's shape
as well as the attribution. ROAD fills the removed pixels with the solution of a discrete
Laplace equation over their 8-neighbourhood (direct neighbours weight 1/6, diagonal ones 1/12,
the kept pixels as boundary values) plus a little Gaussian noise, which keeps the removed set
hard to recover from the image.

* :func:`noisy_linear_imputation` — the imputation itself, batched and jitted (conjugate
  gradients on the masked Laplacian; matches the reference's sparse direct solve).
* :func:`road` — the MoRF / LeRF curves: explained-class probability and whether the
  prediction survives, after imputing the top (or bottom) fraction of the pixels.

References:
  Rong, Leemann, Borisov, Kasneci & Kasneci (2022), A consistent and efficient evaluation
  strategy for attribution methods, ICML (reference code: tleemann/road_evaluation).
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.sparse.linalg import cg

from shapjax._util.api import keyword_key
from shapjax._util.checks import _check_images, _check_key, _check_pos_int
from shapjax._util.chunks import _batch, _map_chunks, _pick
from shapjax._util.modelfn import _join_fn, _split_fn
from shapjax.evaluation.metrics._base import (
    _check_choice,
    _check_float,
    _features,
    _pixel_rank,
    _resolve,
    _softmax_or_raw,
    _trapz,
)

__all__ = ["ROADCurve", "noisy_linear_imputation", "road"]

#: 8-neighbourhood weights of the ROAD imputer (direct neighbours 1/6, diagonal 1/12).
_W8 = np.array([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]], np.float32)
DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class ROADCurve(NamedTuple):
    """ROAD curves over the removed fractions.

    Attributes:
      curves: ``[B, S]`` explained-class output (probability with ``softmax=True``) after imputing
        ``fractions[s]`` of the pixels.
      correct: ``[B, S]`` bool, the prediction is still the explained class (the paper's accuracy,
        Quantus' ``ROAD`` value is ``correct.mean(0)``).
      auc: ``[B]`` trapezoid area under ``curves`` over ``fractions`` (MoRF: lower is better;
        LeRF: higher is better).
      fractions: ``[S]``.
    """

    curves: jax.Array
    correct: jax.Array
    auc: jax.Array
    fractions: jax.Array


def _conv_w(x):
    """``[N, H, W, C]`` -> the 8-neighbour weighted sum, zero outside the image."""
    C = x.shape[-1]
    k = jnp.tile(jnp.asarray(_W8, x.dtype)[:, :, None, None], (1, 1, 1, C))
    return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=C, precision=jax.lax.Precision.HIGHEST)


def _impute_one(x, unknown, tol, max_iter):
    """Solve ``D_i y_i - sum_j w_ij u_j y_j = sum_j w_ij (1 - u_j) x_j`` on the unknown pixels ``u``."""
    u = unknown[None, :, :, None].astype(x.dtype)
    x = x[None]
    deg = _conv_w(jnp.ones_like(u))  # sum of the weights of the neighbours inside the image
    rhs = u * _conv_w((1 - u) * x)

    def A(y):
        return u * (deg * y - _conv_w(u * y)) + (1 - u) * y

    y, _ = cg(A, rhs, tol=tol, maxiter=max_iter, M=lambda r: r / jnp.where(u > 0, deg, 1.0))
    return jnp.where(u > 0, y, x)[0]


@functools.partial(jax.jit, static_argnames=("tol", "max_iter", "bs"))
def _impute_impl(key, images, masks, noise, tol, max_iter, bs):
    def one(i):
        y = jax.vmap(lambda b: _impute_one(images[b], masks[b], tol, max_iter))(i)
        eps = jax.vmap(lambda b: jax.random.normal(jax.random.fold_in(key, b), images.shape[1:], images.dtype))(i)
        return jnp.where(masks[i][..., None], y + noise * eps, images[i])

    return _map_chunks(one, jnp.arange(images.shape[0]), bs)


def _iters(max_iter, H, W):
    return 4 * (H + W) + 50 if max_iter is None else _check_pos_int(max_iter, "max_iter")


@keyword_key
def noisy_linear_imputation(images, masks, *, key, noise: float = 0.01, tol: float = 1e-6,
                            max_iter: int | None = None, batch_size=None) -> jax.Array:
    r"""Fill the ``masks`` pixels of each image by noisy linear imputation (Rong et al. 2022).

    Each removed pixel becomes the weighted mean of its 8 neighbours (weights 1/6 direct, 1/12
    diagonal, renormalised at the image border), the kept pixels fixed, plus
    :math:`\mathcal N(0, \sigma^2)` noise; channel by channel:

    .. math::
        \Big(\sum_{j \in N(i)} w_{ij}\Big)\, y_i - \sum_{j \in N(i) \cap U} w_{ij}\, y_j
        = \sum_{j \in N(i) \setminus U} w_{ij}\, x_j \quad (i \in U),\qquad
        \tilde x_i = y_i + \sigma \varepsilon_i

    The symmetric positive definite system is solved by Jacobi-preconditioned conjugate
    gradients (every matrix product is a 3x3 depthwise convolution), so it batches and jits;
    with ``noise=0`` it matches the reference's sparse direct solve (Quantus'
    ``noisy_linear_imputation``) to solver tolerance.

    Args:
      images: ``[B, H, W, C]``.
      masks: ``[B, H, W]`` (or ``[H, W]``) bool, True = remove; not every pixel of an image.
      key: PRNG key of the noise.
      noise: noise std :math:`\sigma` (>= 0; the paper and Quantus use 0.01).
      tol: relative residual of the solver.
      max_iter: solver iterations (default ``4 (H + W) + 50``).
      batch_size: images per chunk (default 256).

    Returns:
      ``[B, H, W, C]``: the images with the masked pixels imputed.

    References:
      Rong, Leemann, Borisov, Kasneci & Kasneci (2022), A consistent and efficient evaluation
      strategy for attribution methods, ICML.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> ramp = jnp.tile(jnp.linspace(0, 1, 8)[None, None, :, None], (1, 8, 1, 1))  # [1, 8, 8, 1]
      >>> hole = jnp.zeros((8, 8), bool).at[3:5, 3:5].set(True)
      >>> out = noisy_linear_imputation(ramp, hole, key=jax.random.key(0), noise=0.0)
      >>> bool(jnp.allclose(out, ramp, atol=1e-5))   # a linear image is harmonic: recovered exactly
      True
    """
    key = _check_key(key)
    images = _check_images(images)
    B, H, W = images.shape[:3]
    m = jnp.asarray(masks)
    if m.dtype != bool:
        raise TypeError(f"masks: expected a bool array, got dtype {m.dtype}")
    if m.shape == (H, W):
        m = jnp.broadcast_to(m, (B, H, W))
    if m.shape != (B, H, W):
        raise ValueError(f"masks: expected shape {(B, H, W)} or {(H, W)}, got {m.shape}")
    if bool(jnp.any(m.reshape(B, -1).all(-1))):
        raise ValueError("masks: an image with every pixel removed has nothing to impute from")
    noise = _check_float(noise, "noise", lo=0)
    tol = _check_float(tol, "tol", lo=0, lo_open=True)
    return _impute_impl(key, images, m, noise, tol, _iters(max_iter, H, W), _batch(batch_size))


@functools.partial(jax.jit, static_argnames=("fs", "counts", "softmax", "tol", "max_iter", "bs"))
def _road_impl(key, fs, fd, images, rank, outputs, noise, counts, softmax, tol, max_iter, bs):
    model_fn = _join_fn(fs, fd)
    B = images.shape[0]
    k = outputs
    if k is None:
        k = jnp.argmax(_map_chunks(model_fn, images, bs), -1)
    S = len(counts)
    n_k = jnp.asarray(np.asarray(counts, np.int32))
    H, W = images.shape[1:3]

    def one(i):
        b, s = i // S, i % S
        m = jax.vmap(lambda bb, ss: (rank[bb] < n_k[ss]).reshape(H, W))(b, s)
        y = jax.vmap(lambda bb, mm: _impute_one(images[bb], mm, tol, max_iter))(b, m)
        eps = jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(key, j), images.shape[1:], images.dtype))(i)
        x = jnp.where(m[..., None], y + noise * eps, images[b])
        out = _softmax_or_raw(model_fn(x), softmax)
        return _pick(out, k[b]), jnp.argmax(out, -1) == k[b]

    val, ok = _map_chunks(one, jnp.arange(B * S), bs)
    return val.reshape(B, S), ok.reshape(B, S)


@keyword_key
def road(model_fn, images, attributions, *, key, outputs="auto", order: str = "morf",
         fractions: Sequence[float] = DEFAULT_FRACTIONS, noise: float = 0.01, softmax: bool = True, segments=None,
         tol: float = 1e-6, max_iter: int | None = None, batch_size=None) -> ROADCurve:
    r"""ROAD curves: remove the most (or least) relevant pixels by noisy linear imputation (Rong et al. 2022).

    For each fraction :math:`q` the :math:`\lfloor qHW \rfloor` pixels of highest attribution
    (``order="morf"``; lowest with ``"lerf"``; ties to the lower pixel index) are imputed by
    :func:`noisy_linear_imputation` and the model is re-run:

    .. math::
        c_q = p_k\big(\mathrm{NLI}(x, \mathrm{top}_{\lfloor qHW \rfloor}(a))\big),\qquad
        \mathrm{acc}_q = \mathbb 1\big[\arg\max f(\cdot) = k\big]

    A faithful explanation makes the MoRF curve fall fast (low AUC) and the LeRF curve stay up
    (high AUC). Unlike :func:`deletion`, the removed set leaves no constant-coloured trace for
    the model to read, so the gap between the two says how much of a deletion score is the
    mask's shape.

    Args:
      model_fn: ``images [N, H, W, C] -> [N, K]``.
      images: ``[B, H, W, C]``.
      attributions: heatmap ``[B, H, W]``, ``[B, M]`` with ``segments``, a PixelAttribution or a
        single-output Explanation.
      key: PRNG key of the imputation noise.
      outputs: the class explained per image (``"auto"``: the attribution's own, else ``"top-1"``).
      order: ``"morf"`` or ``"lerf"``.
      fractions: increasing fractions of the pixels to remove, each in [0, 1).
      noise: imputation noise std (0.01 in the paper).
      softmax: score probabilities (True) or raw outputs.
      segments: ``[B, H, W]`` / ``[H, W]`` when attributions are per segment.
      tol, max_iter: solver settings, see :func:`noisy_linear_imputation`.
      batch_size: model inputs per chunk (default 256).

    Returns:
      :class:`ROADCurve`.

    References:
      Rong, Leemann, Borisov, Kasneci & Kasneci (2022), A consistent and efficient evaluation
      strategy for attribution methods, ICML.
    """
    key = _check_key(key)
    images = _check_images(images)
    order = _check_choice(order, "order", ("morf", "lerf"))
    scores, ids, _, default_k = _features(attributions, segments, images.shape)
    images, outputs = _resolve(model_fn, images, outputs, default_k)
    fr = np.asarray(fractions, np.float64).reshape(-1) if not isinstance(fractions, str) else np.array([np.nan])
    if fr.size == 0 or not np.all(np.isfinite(fr)) or fr.min() < 0 or fr.max() >= 1 or np.any(np.diff(fr) <= 0):
        raise ValueError(f"fractions: expected increasing numbers in [0, 1), got {fractions!r}")
    B, H, W = images.shape[:3]
    px = jnp.take_along_axis(scores, ids.reshape(B, -1), axis=1).astype(jnp.float32)
    rank = _pixel_rank(-px if order == "lerf" else px)
    counts = tuple(int(np.floor(H * W * q + 1e-9)) for q in fr)
    noise = _check_float(noise, "noise", lo=0)
    tol = _check_float(tol, "tol", lo=0, lo_open=True)
    fs, fd = _split_fn(model_fn, "model_fn")
    val, ok = _road_impl(key, fs, fd, images, rank, outputs, noise, counts, bool(softmax), tol,
                         _iters(max_iter, H, W), _batch(batch_size))
    frj = jnp.asarray(fr, jnp.float32)
    return ROADCurve(curves=val, correct=ok, auc=_trapz(val, frj) if fr.size > 1 else val[:, 0], fractions=frj)
