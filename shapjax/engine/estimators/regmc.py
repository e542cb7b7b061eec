r"""Regression-adjusted Monte Carlo: an exact-Shapley proxy plus an unbiased correction of its residual.

Witter, Liu & Musco (2025) write any game as a proxy plus a residual,
:math:`v = f + (v - f)`: the Shapley values of the proxy :math:`f` are computed
exactly and those of the residual by an unbiased Monte Carlo estimator; the
better the proxy, the smaller the residual and the variance. Here:

* the **proxy** is the order-3 polynomial of :mod:`.polyshap` (ridge regression
  on every interaction of orders 2 and 3, solved on device by
  :func:`shapjax.kernels.polyreg.poly_fit`, its Shapley values in closed form);
* the **correction** is the stratified Horvitz-Thompson estimator of the
  residual :math:`r = v - f` over coalition sizes. From
  :math:`\phi_i(r) = \sum_{S \ni i} w(|S|-1)\,r(S) - \sum_{S \not\ni i} w(|S|)\,r(S)`
  with :math:`w(s) = s!(M-s-1)!/M!` and :math:`w(s-1)\binom{M}{s} = 1/s`,

  .. math::

      \phi_i(r) = \frac{r(1) - r(0)}{M} + \sum_{s=1}^{M-1}
          \mathbb{E}_{|S| = s}\Big[\Big(\frac{[i \in S]}{s} - \frac{[i \notin S]}{M - s}\Big) r(S)\Big],

  each size's expectation replaced by the mean over that size's rows (exact for
  enumerated sizes, a uniform sample without replacement otherwise). The
  coefficients sum to zero over players, so the correction keeps efficiency
  exactly (the constrained proxy has :math:`r(0) = r(1) = 0`).
* **cross-fitting** keeps the correction unbiased: the sampled pairs are split
  into two halves (alternating within each size group); the proxy fitted on the
  enumerated rows plus half A is corrected on half B and vice versa, and the two
  estimates are averaged. Given its proxy, each half's correction is unbiased
  (a size group with a single pair is shared by both halves, and a size group
  with no pair is left out of the correction: below about ``2M + 2 + 4 *
  #groups`` evaluations the estimate is not exactly unbiased).

Standard errors are the stratified sample variance of the per-pair correction
terms (finite-population corrected), halved for the average of two independent
halves; they are conditional on the proxies.

References:
  Witter, R. T., Liu, Y. & Musco, C. (2025). Regression-Adjusted Monte Carlo
  Estimators for Shapley Values and Probabilistic Values. NeurIPS.
  Fumagalli, F., Witter, R. T. & Musco, C. (2026). PolySHAP. ICLR.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from shapjax.engine.estimators import leverage, polyshap
from shapjax.engine.estimators.base import Design, Estimator
from shapjax.engine.estimators.kernel import min_evals as kernel_min_evals
from shapjax.kernels.polyreg import fit_bytes, n_features, poly_fit, primal


class Half(NamedTuple):
    """Static (NumPy) layout of one half: rows, weights, and the per-size counts of its rows."""

    fit_rows: np.ndarray  # enumerated rows + this half's sampled rows (fit the proxy)
    fit_scale: np.ndarray  # weight multiplier of each fit row (the half's pairs carry the whole stratum)
    pair_rows: np.ndarray  # [J, 2] this half's sampled pairs
    pair_strata: np.ndarray  # [J]
    strata_fpc: np.ndarray  # [S]
    size_count: np.ndarray  # [M+1] rows of each size in enumerated + this half


class RegmcAux(NamedTuple):
    weights: object
    n_enum: int
    halves: tuple


def _halves(M: int, n_evals: int):
    enum, sampled = leverage.plan(M, n_evals - 2)
    n_enum = sum(math.comb(M, s) for g in enum for s in g)
    enum_sizes = np.zeros(M + 1, np.int64)
    for g in enum:
        for s in g:
            enum_sizes[s] += math.comb(M, s)
    halves = []
    for h in (0, 1):
        rows, scale, pairs, strata, fpc = [], [], [], [], []
        cnt = enum_sizes.copy()
        off = n_enum
        for si, (g, k) in enumerate(sampled):
            js = [j for j in range(k) if j % 2 == h] if k > 1 else [0]
            s = g[0]
            for j in js:
                r0 = off + 2 * j
                pairs.append([r0, r0 + 1])
                strata.append(si)
                rows += [r0, r0 + 1]
                scale += [k / len(js)] * 2
                cnt[s] += 1
                cnt[M - s] += 1
            fpc.append(max(0.0, 1.0 - len(js) / math.comb(M, s)))
            off += 2 * k
        halves.append(Half(
            np.concatenate([np.arange(n_enum), np.asarray(rows, np.int64)]).astype(np.int32),
            np.concatenate([np.ones(n_enum), np.asarray(scale)]).astype(np.float32),
            np.asarray(pairs, np.int32).reshape(-1, 2), np.asarray(strata, np.int32),
            np.asarray(fpc if fpc else [1.0], np.float32), cnt))
    return n_enum, tuple(halves)


def _max_fit_rows(M: int, n_evals: int) -> int:
    """``max(len(h.fit_rows) for h in _halves(M, n_evals)[1])`` in closed form, without building the halves
    (the memory check runs on every call): the enumerated rows plus, per sampled size, the pairs of half 0
    (``ceil(k / 2)``: even indices, or the one pair both halves share when ``k == 1``)."""
    enum, sampled = leverage.plan(M, n_evals - 2)
    n_enum = sum(math.comb(M, s) for g in enum for s in g)
    return n_enum + sum(2 * (-(-k // 2)) for _, k in sampled)


def design(n_players: int, n_evals: int, *, key) -> Design:
    M = int(n_players)
    d = leverage.design(M, n_evals, key=key)
    n_enum, halves = _halves(M, n_evals)
    return Design(d.coalitions, RegmcAux(d.aux.weights, n_enum, halves))


def _coef(Z, size_count, M):
    """``a_i(S) / n_|S|`` per row: ``([i in S] / s - [i not in S] / (M - s))`` over the rows of that size."""
    zf = Z.astype(jnp.float32)
    s = zf.sum(1)
    n_s = jnp.asarray(np.maximum(size_count, 1).astype(np.float32))[s.astype(jnp.int32)]
    a = zf / jnp.maximum(s, 1.0)[:, None] - (1.0 - zf) / jnp.maximum(M - s, 1.0)[:, None]
    return a / n_s[:, None]


def _correction(Z, resid, n_enum, half: Half, M):
    """HT correction over enumerated rows + ``half``'s pairs, and its variance ``[M, K]``."""
    enum = _coef(Z[:n_enum], half.size_count, M).T @ resid[:n_enum] if n_enum else 0.0
    pr = half.pair_rows
    if pr.shape[0] == 0:
        return enum, None
    q = (_coef(Z[pr[:, 0]], half.size_count, M)[:, :, None] * resid[pr[:, 0]][:, None, :]
         + _coef(Z[pr[:, 1]], half.size_count, M)[:, :, None] * resid[pr[:, 1]][:, None, :])  # [J, M, K]
    corr = enum + q.sum(0)
    S = half.strata_fpc.shape[0]
    onehot = jnp.asarray((half.pair_strata[:, None] == np.arange(S)[None, :]).astype(np.float32))
    n_s = onehot.sum(0)[:, None, None]
    s1 = jnp.einsum("js,jmk->smk", onehot, q)
    s2 = jnp.einsum("js,jmk->smk", onehot, q * q)
    var_q = jnp.maximum(s2 - s1**2 / jnp.maximum(n_s, 1.0), 0.0) / jnp.maximum(n_s - 1.0, 1.0)
    var = jnp.sum(n_s * var_q * jnp.asarray(half.strata_fpc)[:, None, None], axis=0)
    return corr, var


def solve(design_: Design, y, v_empty, v_full, active):
    Z = design_.coalitions
    aux: RegmcAux = design_.aux
    M = Z.shape[1]
    yc = y - v_empty[None, :]
    total = v_full - v_empty
    phis, vars_ = [], []
    for fit_h, cor_h in ((0, 1), (1, 0)):
        h = aux.halves[fit_h]
        Zf = Z[h.fit_rows]
        w = aux.weights[h.fit_rows] * jnp.asarray(h.fit_scale)
        fit = poly_fit(Zf, w, yc[h.fit_rows], total, orders=polyshap.ORDERS,
                       alpha=polyshap.ridge(M, Zf.shape[0]), active=active)
        resid = yc - fit.predict(Z)
        corr, var = _correction(Z, resid, aux.n_enum, aux.halves[cor_h], M)
        phis.append(fit.phi + corr)
        vars_.append(var)
    phi = 0.5 * (phis[0] + phis[1])
    std = None if vars_[0] is None else 0.5 * jnp.sqrt(vars_[0] + vars_[1])
    if active is not None:
        phi = phi * active[:, None]
        std = None if std is None else std * active[:, None]
    return phi, std


def solve_bytes(M: int, n_evals: int, *, n_outputs: int = 1) -> int:
    """Two fits on half the rows each, and each fit's prediction on all rows (``N x N/2`` in the dual form)."""
    N = leverage.used_evals(M, n_evals) - 2
    half = _max_fit_rows(M, n_evals)
    predict = 4 * N * (n_features(M, polyshap.ORDERS) if primal(M, half, polyshap.ORDERS) else half)
    return 2 * (fit_bytes(M, half, polyshap.ORDERS, n_outputs) + predict)


def min_evals(M: int) -> int:
    """``2M + 2``: the singletons and their complements are enumerated (full rank), as in :mod:`.kernel`."""
    return kernel_min_evals(M)


ESTIMATOR = Estimator(
    name="regmc",
    min_evals=min_evals,
    used_evals=leverage.used_evals,
    design=design,
    solve=solve,
    solve_bytes=solve_bytes,
)
