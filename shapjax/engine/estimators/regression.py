"""Shared pieces of the regression estimators (KernelSHAP, Leverage SHAP).

Both draw a *design* made of an enumerated part (whole coalition sizes, exact
kernel weight, no variance) and a sampled part made of complementary pairs
``(z, 1 - z)`` grouped in strata; both solve the efficiency-constrained
weighted least squares of :func:`kernels.wls.constrained_wls`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.precision import floatx
from shapjax.kernels.wls import centred_normal_equations, constrained_wls, solve_centred


class RegressionAux(NamedTuple):
    """Per-row regression weights and the layout of the sampled pairs.

    The first ``n_enum`` rows are enumerated; the rest come in pairs: rows
    ``n_enum + 2j`` and ``n_enum + 2j + 1`` are a coalition and its complement.
    """

    weights: object  # [N] float (floatx: float32, or float64 under precision="float64")
    n_enum: int
    pair_strata: object  # [J] int32 stratum of each sampled pair
    strata_fpc: object  # [S] float32 finite-population correction (1 - n/N) per stratum


def size_groups(n_players: int):
    """Pairs of complementary sizes ``(s, M - s)`` for ``s = 1..ceil((M-1)/2)`` (a middle size appears once)."""
    M = int(n_players)
    groups = []
    for s in range(1, (M - 1) // 2 + 1 + (1 if M % 2 == 0 else 0)):
        groups.append((s,) if s == M - s else (s, M - s))
    return groups


def group_count(n_players: int, group) -> int:
    return sum(math.comb(int(n_players), s) for s in group)


def solve(design, y, v_empty, v_full, active):
    r"""Constrained WLS on ``y - v_empty`` plus stratified standard errors of the sampled pairs.

    The standard errors linearise the closed-form solution around the
    estimate: :math:`\hat\phi - \phi \approx G(\hat b - \hat A\hat\phi)`, a
    sum of independent per-pair terms :math:`w\,z\,(y - z^\top\hat\phi)`, whose
    (stratified) sample covariance gives the variance (Covert & Lee 2021).
    """
    Z = design.coalitions
    aux: RegressionAux = design.aux
    w = aux.weights
    yc = y - v_empty[None, :]
    total = v_full - v_empty
    phi, G = constrained_wls(Z, w, yc, total, active=active)
    n_enum = aux.n_enum
    J = (Z.shape[0] - n_enum) // 2
    if J < 2:
        return phi, None
    M = Z.shape[1]
    dt = phi.dtype
    ones = jnp.ones((M,), dt) if active is None else active.astype(dt)
    Zs = Z[n_enum:].astype(dt) * ones[None, :]
    z1, z2 = Zs[0::2], Zs[1::2]
    # Delta method: phi_hat - phi ~= G (b_hat - A_hat phi), a sum over pairs of
    # w z (y - z.phi): residuals, not raw targets, carry the sampling error.
    resid = yc[n_enum:] - Zs @ phi
    y1, y2 = resid[0::2], resid[1::2]
    w1, w2 = w[n_enum:][0::2], w[n_enum:][1::2]
    g1 = z1 @ G.T  # G z for each pair member  [J, M]
    g2 = z2 @ G.T
    # q_j = w1 g1 (x) y1 + w2 g2 (x) y2, the pair's contribution to phi.
    a, b = g1 * w1[:, None], g2 * w2[:, None]
    S = aux.strata_fpc.shape[0]
    # per-stratum sums by segment_sum: O(J M K) (a one-hot einsum over strata was O(J S M K))
    seg = lambda x: jax.ops.segment_sum(x, aux.pair_strata, num_segments=S)  # noqa: E731
    n_s = seg(jnp.ones(aux.pair_strata.shape, dt))  # [S]
    q = a[:, :, None] * y1[:, None, :] + b[:, :, None] * y2[:, None, :]  # [J, M, K] the pair's contribution
    sum_q, sum_q2 = seg(q), seg(q * q)
    n3 = n_s[:, None, None]
    var_q = jnp.maximum(sum_q2 - sum_q**2 / jnp.maximum(n3, 1.0), 0.0) / jnp.maximum(n3 - 1.0, 1.0)
    var_phi = jnp.sum(n3 * var_q * aux.strata_fpc[:, None, None], axis=0)
    return phi, jnp.sqrt(var_phi)


def enumerated_rows(n_players: int, groups, mass) -> tuple[np.ndarray, np.ndarray]:
    """All coalitions of the sizes in ``groups`` with weight ``mass[s] / C(M, s)`` each."""
    from shapjax.engine.samplers import enumerate_size

    M = int(n_players)
    rows, weights = [np.zeros((0, M), bool)], [np.zeros((0,), np.float64)]
    for g in groups:
        for s in g:
            Zs = enumerate_size(M, s)
            rows.append(Zs)
            weights.append(np.full(len(Zs), mass[s] / math.comb(M, s), np.float64))
    return np.concatenate(rows), np.concatenate(weights).astype(floatx())


def normal_stats(design, y, v_empty, v_full, active):
    """The round's centred normal equations ``(Abar [M, M], r [M, K])`` of :func:`solve`
    (:func:`shapjax.kernels.wls.centred_normal_equations` on ``y - v_empty``).

    Averaged over independent rounds they are the normal equations of the pooled design (the
    to-tolerance mode of :mod:`shapjax.engine.rounds`): a ratio of means, not a mean of ratios,
    so the small-sample bias of a regression shrinks with the total budget, not the round's.
    """
    return centred_normal_equations(design.coalitions, design.aux.weights, y - v_empty[None, :], v_full - v_empty,
                                    active=active)


def solve_stats(stats, v_empty, v_full, active):
    """Values ``[M, K]`` from (averaged) centred normal equations: the constrained solve of :func:`solve`."""
    Abar, r = stats
    return solve_centred(Abar, r, v_full - v_empty, active=active)
