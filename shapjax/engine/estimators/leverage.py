r"""Leverage SHAP: KernelSHAP's regression with leverage-score sampling.

Musco & Witter (2025) show that, after projecting out the efficiency
constraint, the leverage score of coalition :math:`z` in the Shapley-kernel
regression is proportional to :math:`\binom{M}{|z|}^{-1}`: every coalition
*size* carries the same total leverage. Sampling in proportion to leverage
(rather than to the kernel, as KernelSHAP does) gives estimates with
non-asymptotic accuracy guarantees.

This implementation:

* allocates the budget **uniformly over sizes** (sizes 1..M-1, grouped as
  complementary pairs ``(s, M-s)``); a size group whose coalitions all fit in
  its share is enumerated exactly and its unused share is handed to the other
  groups (water-filling);
* within a sampled size, draws coalitions **without replacement** (distinct
  ranks in the combinatorial number system) and **paired** with their
  complements;
* weights each row by kernel mass / number of samples of its size (importance
  weights of the stratified design) and solves the same projected,
  efficiency-constrained regression as KernelSHAP.

Stratifying the sizes with fixed counts (instead of drawing each size at
random) keeps the sampling distribution of the paper and removes the
between-size variance. Standard errors are stratified by size with the
finite-population correction.

References:
  Musco, C. & Witter, R. T. (2025). Provably Accurate Shapley Value
  Estimation via Leverage Score Sampling. ICLR.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from shapjax.engine.estimators import regression
from shapjax.engine.estimators.base import Design, Estimator
from shapjax.engine.estimators.kernel import min_evals as kernel_min_evals
from shapjax.engine.samplers import distinct_subsets
from shapjax.kernels.weights import leverage_size_mass, shapley_kernel_size_mass


def _max_pairs(M, g):
    n = math.comb(M, g[0])
    return n // 2 if len(g) == 1 else n


def plan(n_players: int, n_rows: int, *, size_mass=None):
    """Static allocation: ``(enum_groups, [(group, n_pairs), ...])`` by water-filling over sizes.

    ``size_mass`` ``[M+1]`` replaces the leverage mass (uniform over sizes) as the allocation target.
    """
    M = int(n_players)
    lev = leverage_size_mass(M) if size_mass is None else size_mass
    groups = regression.size_groups(M)
    enum, open_ = [], list(groups)
    rows = int(n_rows)
    if open_ and regression.group_count(M, open_[0]) <= rows:  # singletons: full rank (see kernel.plan)
        enum.append(open_.pop(0))
        rows -= regression.group_count(M, enum[0])
    changed = True
    while changed and open_:
        changed = False
        total = sum(sum(lev[s] for s in g) for g in open_)
        for g in list(open_):
            share = rows * sum(lev[s] for s in g) / total
            if regression.group_count(M, g) <= share:
                enum.append(g)
                open_.remove(g)
                rows -= regression.group_count(M, g)
                changed = True
                break
    if not open_:
        return enum, []
    total = sum(sum(lev[s] for s in g) for g in open_)
    pairs = rows // 2
    alloc = [int(pairs * sum(lev[s] for s in g) / total) for g in open_]
    left = pairs - sum(alloc)
    for i in range(len(open_)):
        if left <= 0:
            break
        alloc[i] += 1
        left -= 1
    alloc = [min(a, _max_pairs(M, g)) for a, g in zip(alloc, open_)]
    return enum, [(g, a) for g, a in zip(open_, alloc) if a > 0]


def design(n_players: int, n_evals: int, *, key, size_mass=None) -> Design:
    M = int(n_players)
    mass = shapley_kernel_size_mass(M)
    enum, sampled = plan(M, n_evals - 2, size_mass=size_mass)
    Ze, we = regression.enumerated_rows(M, enum, mass)
    Zs, ws, strata, fpc = [jnp.asarray(Ze)], [jnp.asarray(we)], [], []
    keys = jax.random.split(key, max(len(sampled), 1))
    for i, (g, k) in enumerate(sampled):
        s = g[0]
        z = distinct_subsets(M, s, k, key=keys[i])
        Zs.append(jnp.stack([z, ~z], axis=1).reshape(2 * k, M))
        if len(g) == 2:
            w_pair = [mass[s] / k, mass[M - s] / k]
        else:
            w_pair = [mass[s] / (2 * k)] * 2
        ws.append(jnp.tile(jnp.asarray(w_pair, jnp.float32), k))
        strata.append(np.full(k, i, np.int32))
        fpc.append(max(0.0, 1.0 - k / math.comb(M, s)))
    aux = regression.RegressionAux(
        jnp.concatenate(ws),
        len(we),
        jnp.asarray(np.concatenate(strata) if strata else np.zeros(0, np.int32)),
        jnp.asarray(np.array(fpc if fpc else [1.0], np.float32)),
    )
    return Design(jnp.concatenate(Zs), aux)


def used_evals(M, n_evals, *, size_mass=None, **options):
    enum, sampled = plan(M, n_evals - 2, size_mass=size_mass)
    return sum(regression.group_count(M, g) for g in enum) + sum(2 * k for _, k in sampled) + 2


def min_evals(M: int) -> int:
    """``2M + 2``: the singleton group is enumerated first (full rank at every budget), as in :mod:`.kernel`."""
    return kernel_min_evals(M)


ESTIMATOR = Estimator(
    name="leverage",
    min_evals=min_evals,
    used_evals=used_evals,
    design=design,
    solve=regression.solve,
)
