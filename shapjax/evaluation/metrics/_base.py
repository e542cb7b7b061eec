"""Shared pieces of the metrics: attribution inputs, outputs, blur, feature ranks and the batched curve programs."""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.checks import _check_images, _check_pos_int, _pixel_segments, check_finite
from shapjax._util.chunks import _batch, _map_chunks, _pick
from shapjax._util.modelfn import _join_fn, _n_outputs, _split_fn
from shapjax._util.outputs import parse_single_output


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


def _check_finite_attr(a, name="attributions"):
    if not isinstance(a, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(a))):
        raise ValueError(f"{name}: contain NaN or infinite values")
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
    if a.ndim == 3 and a.shape == (B, H, W):  # a heatmap with segments: sum it per segment
        seg = seg.astype(jnp.int32)
        M = int(jnp.max(seg)) + 1
        sums = jax.vmap(lambda h, s: jax.ops.segment_sum(h.reshape(-1), s.reshape(-1), M))(a, seg)
        return sums, seg, M, outs
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


def _explained_outputs(model_fn, images, outputs, attributions, batch_size, name: str):
    """``(images, k [B] int32)``: the output each image's attributions explain: ``outputs``, else the
    ``output_indexes`` of ``attributions`` (an Explanation's first column), else the predicted class."""
    default_k = getattr(attributions, "output_indexes", None)
    if default_k is not None and getattr(default_k, "ndim", 1) == 2:
        default_k = default_k[:, 0]
    images, k = _resolve(model_fn, images, outputs, default_k)
    if k is None:
        fs, fd = _split_fn(model_fn, name)
        k = _predict_impl(fs, fd, images, None, False, _batch(batch_size))[1].astype(jnp.int32)
    return images, k


def _flat_abs(attributions, name="attributions"):
    if hasattr(attributions, "heatmap") or hasattr(attributions, "to_pixels"):
        attributions = as_heatmap(attributions)
    a = check_finite(attributions, name)
    if a.ndim < 2:
        raise ValueError(f"{name}: expected [B, ...] (a batch of maps or vectors), got {a.shape}")
    return jnp.abs(a.reshape(a.shape[0], -1).astype(jnp.float32))


def _check_float(v, name, *, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        rng = (f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}" if lo is not None and hi is not None
               else f" {'>' if lo_open else '>='} {lo}" if lo is not None else "")
        raise ValueError(f"{name}: expected a number{rng}, got {v!r}")
    return float(v)


def _check_choice(v, name, choices):
    if not isinstance(v, str) or v.lower() not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {v!r}")
    return v.lower()


# ----------------------------------------------------------------------------- statistics

def _pearson(a, b, axis=-1):
    a = a - a.mean(axis, keepdims=True)
    b = b - b.mean(axis, keepdims=True)
    den = jnp.sqrt((a * a).sum(axis) * (b * b).sum(axis))
    r = (a * b).sum(axis) / jnp.where(den > 0, den, 1.0)
    return jnp.where(den > 0, jnp.clip(r, -1.0, 1.0), 0.0)


def _trapz(y, x):
    """Trapezoid rule along the last axis of ``y [..., S]`` over ``x [S]``."""
    return jnp.sum(0.5 * (y[..., 1:] + y[..., :-1]) * jnp.diff(x), axis=-1)


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


# ----------------------------------------------------------------------------- ranks and schedules

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


@functools.partial(jax.jit, static_argnames=("ascending",))
def _feature_rank(scores, valid, ascending=False):
    """Rank of each feature ``[B, F]`` (0 = first removed): highest score first (lowest with
    ``ascending``), ties to the lower index, features with no pixel (``valid`` False) last."""
    s = jnp.where(valid, scores if ascending else -scores, jnp.inf) + 0.0
    order = jnp.argsort(s, axis=-1, stable=True)
    return jnp.argsort(order, axis=-1, stable=True).astype(jnp.int32)


def _feature_valid(ids, n_feat):
    """``[B, F]`` True where a feature covers at least one pixel."""
    return jax.vmap(lambda i: jnp.zeros((n_feat,), bool).at[i.reshape(-1)].set(True))(ids)


def _softmax_or_raw(out, softmax: bool):
    return jax.nn.softmax(out, axis=-1) if softmax else out


@functools.partial(jax.jit, static_argnames=("fs", "counts", "softmax", "bs"))
def _feature_curve_impl(fs, fd, images, start, target, rank, ids, outputs, counts, softmax, bs):
    """``[B, S]`` explained output after step ``s``: the pixels of the features ranked below
    ``counts[s]`` come from ``target``, the others from ``start``; and the explained class ``[B]``."""
    model_fn = _join_fn(fs, fd)
    B = images.shape[0]
    k = outputs
    if k is None:  # the class predicted on the original images
        k = jnp.argmax(_map_chunks(model_fn, images, bs), -1)
    S = len(counts)
    n_k = jnp.asarray(np.asarray(counts, np.int32))
    px_rank = jax.vmap(lambda r, i: r[i])(rank, ids)  # [B, H, W]

    def one(i):
        b, s = i // S, i % S
        m = (px_rank[b] < n_k[s][:, None, None])[..., None]
        return _pick(_softmax_or_raw(model_fn(jnp.where(m, target[b], start[b])), softmax), k[b])

    return _map_chunks(one, jnp.arange(B * S), bs).reshape(B, S), k


@functools.partial(jax.jit, static_argnames=("fs", "n_groups", "softmax", "bs"))
def _group_impl(fs, fd, images, base, groups, outputs, n_groups, softmax, bs):
    """Output with only group ``g`` replaced by ``base``: ``[B, G]``, the unperturbed output ``[B]``
    and the explained class ``[B]``; ``groups [B, H, W]`` holds each pixel's group id."""
    model_fn = _join_fn(fs, fd)
    B = images.shape[0]
    f = lambda x: _softmax_or_raw(model_fn(x), softmax)  # noqa: E731
    k = outputs
    if k is None:
        k = jnp.argmax(_map_chunks(model_fn, images, bs), -1)
    f_x = _pick(_map_chunks(f, images, bs), k)

    def one(i):
        b, g = i // n_groups, i % n_groups
        m = (groups[b] == g[:, None, None])[..., None]
        return _pick(f(jnp.where(m, base[b], images[b])), k[b])

    return _map_chunks(one, jnp.arange(B * n_groups), bs).reshape(B, n_groups), f_x, k


@functools.partial(jax.jit, static_argnames=("fs", "softmax", "bs"))
def _predict_impl(fs, fd, x, outputs, softmax, bs):
    """Explained output ``[N]`` and argmax class ``[N]`` of ``x [N, H, W, C]`` (``outputs`` None: argmax)."""
    out = _softmax_or_raw(_map_chunks(_join_fn(fs, fd), x, bs), softmax)
    top = jnp.argmax(out, -1)
    return _pick(out, top if outputs is None else outputs), top
