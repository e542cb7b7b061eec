r"""Robustness: how much does an explanation move when the input barely does?

:func:`sensitivity` re-runs an explainer on ``n_samples`` copies of each image with uniform
noise in :math:`[-r, r]` and reports the largest and the mean relative change of the
attribution (max- and average-sensitivity, Yeh et al. 2019). The explainer is any callable
``explain_fn(images [B, H, W, C], outputs [B, 1]) -> attributions``: one of shapjax's (jitted),
or a peer library's through a host callable, so the noise and the norms run on device and the
explainer runs however it runs.

References:
  Yeh, Hsieh, Suggala, Inouye & Ravikumar (2019), On the (in)fidelity and sensitivity of
  explanations, NeurIPS.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from shapjax._util.api import keyword_key
from shapjax._util.checks import _check_images, _check_key, _check_pos_int
from shapjax.evaluation.metrics._base import _check_float, _explained_outputs, as_heatmap

__all__ = ["Sensitivity", "sensitivity", "max_sensitivity", "avg_sensitivity"]


class Sensitivity(NamedTuple):
    """Max- and average-sensitivity of an explainer.

    Attributes:
      max: ``[B]`` largest relative change over the samples (lower is better).
      avg: ``[B]`` mean relative change (lower is better).
      samples: ``[B, n_samples]`` every relative change.
    """

    max: jax.Array
    avg: jax.Array
    samples: jax.Array


def _flat(a, B, name):
    if hasattr(a, "heatmap") or hasattr(a, "to_pixels"):
        a = as_heatmap(a)
    a = jnp.asarray(a, jnp.float32)
    if a.ndim < 2 or a.shape[0] != B:
        raise ValueError(f"{name}: expected attributions [B={B}, ...], got shape {a.shape}")
    return a.reshape(B, -1)


def _noise(key, s, shape, radius):
    """Sample ``s`` of the uniform input noise in ``[-radius, radius]`` (shared with the tests)."""
    return jax.random.uniform(jax.random.fold_in(key, s), shape, jnp.float32, -radius, radius)


@functools.partial(jax.jit, static_argnames=("normalise",))
def _rel_change(a0, a, normalise):
    num = jnp.linalg.norm(a - a0, axis=-1)
    if not normalise:
        return num
    den = jnp.linalg.norm(a0, axis=-1)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.where(num > 0, jnp.inf, 0.0))


@keyword_key
def sensitivity(model_fn, explain_fn: Callable, images, *, key, outputs="auto", attributions=None,
                n_samples: int = 10, radius: float = 0.2, normalise: bool = True,
                batch_size=None) -> Sensitivity:
    r"""Max- and average-sensitivity (Yeh et al. 2019; lower is better).

    .. math::
        \mathrm{SENS}_{\max} = \max_{j \le n} \frac{\|a(x + \delta_j) - a(x)\|_2}{\|a(x)\|_2},\quad
        \mathrm{SENS}_{\mathrm{avg}} = \frac1n \sum_{j \le n} \frac{\|a(x + \delta_j) - a(x)\|_2}{\|a(x)\|_2},
        \quad \delta_j \sim \mathcal U[-r, r]^{H \times W \times C}

    The explained class stays the one of the unperturbed image. ``normalise=False`` drops the
    denominator (the paper's definition); with it (Quantus' default) methods in different
    units are comparable. A constant explainer has sensitivity 0.

    Args:
      model_fn: ``images [N, H, W, C] -> [N, K]`` (resolves ``outputs``).
      explain_fn: ``(images [B, H, W, C], outputs [B, 1] int32) -> attributions`` (an array
        ``[B, ...]``, a PixelAttribution or a single-output Explanation).
      images: ``[B, H, W, C]``.
      key: PRNG key of the noise.
      outputs: the class explained per image (``"auto"``: ``attributions``' own, else ``"top-1"``).
      attributions: :math:`a(x)` if already computed (else ``explain_fn(images, outputs)``).
      n_samples: perturbations per image.
      radius: :math:`r` (Quantus' default 0.2 for images in [0, 1]).
      normalise: divide by :math:`\|a(x)\|_2` (0 / 0 = 0).
      batch_size: model inputs per chunk when resolving ``"top-1"``.

    Returns:
      :class:`Sensitivity`.

    References:
      Yeh, Hsieh, Suggala, Inouye & Ravikumar (2019), On the (in)fidelity and sensitivity of
      explanations, NeurIPS.
    """
    key = _check_key(key)
    images = _check_images(images)
    if not callable(explain_fn):
        raise TypeError(f"explain_fn: expected a callable (images, outputs) -> attributions, "
                        f"got {type(explain_fn).__name__}")
    n = _check_pos_int(n_samples, "n_samples")
    r = _check_float(radius, "radius", lo=0, lo_open=True)
    images, k = _explained_outputs(model_fn, images, outputs, attributions, batch_size, "model_fn")
    B = images.shape[0]
    a0 = _flat(explain_fn(images, k[:, None]) if attributions is None else attributions, B, "attributions")
    rows = []
    for s in range(n):
        x = images + _noise(key, s, images.shape, r).astype(images.dtype)
        rows.append(_rel_change(a0, _flat(explain_fn(x, k[:, None]), B, "explain_fn"), bool(normalise)))
    samples = jnp.stack(rows, -1)
    return Sensitivity(max=samples.max(-1), avg=samples.mean(-1), samples=samples)


@keyword_key
def max_sensitivity(model_fn, explain_fn: Callable, images, *, key, **kwargs) -> jax.Array:
    r"""Max-sensitivity :math:`\max_j \|a(x + \delta_j) - a(x)\| / \|a(x)\|` (Yeh et al. 2019; lower is better).

    See :func:`sensitivity` for the arguments.

    References:
      Yeh et al. (2019), On the (in)fidelity and sensitivity of explanations, NeurIPS.
    """
    return sensitivity(model_fn, explain_fn, images, key=key, **kwargs).max


@keyword_key
def avg_sensitivity(model_fn, explain_fn: Callable, images, *, key, **kwargs) -> jax.Array:
    r"""Average-sensitivity :math:`\frac1n\sum_j \|a(x + \delta_j) - a(x)\| / \|a(x)\|` (Yeh et al. 2019; lower is better).

    See :func:`sensitivity` for the arguments.

    References:
      Yeh et al. (2019), On the (in)fidelity and sensitivity of explanations, NeurIPS.
    """
    return sensitivity(model_fn, explain_fn, images, key=key, **kwargs).avg
