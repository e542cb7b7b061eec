r"""Stratified SVARM: Shapley values from stratum means, without marginal contributions.

Kolpaczki et al. (2024) write the Shapley value as a difference of averages
over *strata* (coalition sizes),

.. math::

    \phi_i = \frac1M \sum_{\ell=0}^{M-1} \big(\phi^+_{i,\ell} - \phi^-_{i,\ell}\big),\qquad
    \phi^+_{i,\ell} = \mathbb{E}_{|A| = \ell+1,\, i \in A}\, v(A),\quad
    \phi^-_{i,\ell} = \mathbb{E}_{|A| = \ell,\, i \notin A}\, v(A),

and estimate every stratum mean by the sample mean of the sampled coalitions
that fall in it: one evaluation :math:`v(A)` updates :math:`\phi^+_{i,|A|-1}`
for the :math:`|A|` members of :math:`A` and :math:`\phi^-_{i,|A|}` for the
others, so every sample is used by every player ("maximum sample reuse").
Sizes 0, 1, M-1 and M are computed exactly (the paper's warm-up: the
singletons and their complements are enumerated; empty and full are always
evaluated).

Batched: the coalitions are drawn up front. The budget is split over size
groups ``(s, M - s)`` in proportion to the paper's size distribution
:math:`P(s) \propto 1/\min(s, M - s)` on sizes ``2..M-2`` (its shape; the
paper's small correction of the middle size is left out), with fixed counts per
group (stratified, water-filled when a group fits whole), coalitions drawn
without replacement within a size and paired with their complements (the design
of :mod:`.leverage` with a different allocation). A stratum mean no sample
reached (a player in no sampled coalition of that size) falls back to the mean
of all sampled coalitions of that size. Efficiency holds up to that fallback
(exactly once every stratum is reached). ``std`` is not provided (None).

References:
  Kolpaczki, P., Bengs, V., Muschalik, M. & Hüllermeier, E. (2024).
  Approximating the Shapley Value without Marginal Contributions. AAAI.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from shapjax.engine.estimators import leverage
from shapjax.engine.estimators.base import Estimator


def size_mass(n_players: int) -> np.ndarray:
    """``[M+1]`` allocation target: ``1 / min(s, M - s)`` on sizes 2..M-2 (sizes 1 and M-1 are enumerated)."""
    M = int(n_players)
    m = np.zeros(M + 1)
    for s in range(1, M):
        m[s] = 1.0 / min(s, M - s)
    return m / max(m.sum(), 1e-12)


design, used_evals = leverage.with_size_mass(size_mass)  # leverage's design, svarm's allocation


def stratum_means(Z, y, v_empty, v_full):
    """``(plus [M+1, M, K], minus [M+1, M, K])``: mean of ``v`` over sampled coalitions of size ``s`` with
    (plus) and without (minus) player ``i``, falling back to the size mean where no sample reached."""
    N, M = Z.shape
    zf = Z.astype(jnp.float32)
    size = Z.sum(1)
    onehot = (size[:, None] == jnp.arange(M + 1)[None, :]).astype(jnp.float32)  # [N, M+1]
    s_sum = jnp.einsum("ns,nk->sk", onehot, y)
    s_cnt = onehot.sum(0)
    s_mean = s_sum / jnp.maximum(s_cnt, 1.0)[:, None]
    s_mean = s_mean.at[0].set(v_empty).at[M].set(v_full)
    p_sum = jnp.einsum("ns,ni,nk->sik", onehot, zf, y)
    p_cnt = jnp.einsum("ns,ni->si", onehot, zf)
    m_sum = s_sum[:, None, :] - p_sum
    m_cnt = s_cnt[:, None] - p_cnt
    plus = jnp.where(p_cnt[..., None] > 0, p_sum / jnp.maximum(p_cnt, 1.0)[..., None], s_mean[:, None, :])
    minus = jnp.where(m_cnt[..., None] > 0, m_sum / jnp.maximum(m_cnt, 1.0)[..., None], s_mean[:, None, :])
    plus = plus.at[M].set(jnp.broadcast_to(v_full, plus[M].shape))
    minus = minus.at[0].set(jnp.broadcast_to(v_empty, minus[0].shape))
    return plus, minus


def solve(design_, y, v_empty, v_full, active):
    M = design_.coalitions.shape[1]
    plus, minus = stratum_means(design_.coalitions, y, v_empty, v_full)
    phi = (plus[1:].sum(0) - minus[:M].sum(0)) / M  # sum over l of phi+_{i,l} (size l+1) - phi-_{i,l} (size l)
    if active is not None:
        phi = phi * active[:, None]
    return phi, None


def min_evals(M: int) -> int:
    """``2M + 2``: the singletons and their complements are enumerated (full rank), as in :mod:`.leverage`.

    A function of this module (not ``leverage.min_evals``): ``shapjax methods`` describes an estimator by the
    docstring of the module that defines its ``min_evals``."""
    return leverage.min_evals(M)


ESTIMATOR = Estimator(
    name="svarm",
    min_evals=min_evals,
    used_evals=used_evals,
    design=design,
    solve=solve,
    efficient=False,
)
