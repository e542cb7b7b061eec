r"""Complexity of an explanation: how concentrated the attribution is (Gini sparseness, entropy).

Both are computed on :math:`|a|` of a ``[B, ...]`` batch (pixel maps, segment vectors, a
PixelAttribution or a single-output Explanation). Neither says whether the explanation is
right; they say how much a person has to look at.

References:
  Chalasani et al. (2020), Concise explanations of neural networks using adversarial training, ICML.
  Hurley & Rickard (2009), Comparing measures of sparsity, IEEE Trans. Inf. Theory.
  Bhatt, Weller & Moura (2020), Evaluating and aggregating feature-based model explanations, IJCAI.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from shapjax.evaluation.metrics._base import _flat_abs

__all__ = ["sparseness", "complexity"]


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


