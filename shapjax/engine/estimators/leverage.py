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

import functools
import math

import numpy as np

from shapjax.engine.estimators import layout as L
from shapjax.engine.estimators import regression
from shapjax.engine.estimators.base import Design, Estimator
from shapjax.engine.estimators.kernel import min_evals as kernel_min_evals
from shapjax.kernels.weights import leverage_size_mass, shapley_kernel_size_mass


def _max_pairs(M, g):
    n = math.comb(M, g[0])
    return n // 2 if len(g) == 1 else n


@functools.lru_cache(maxsize=256)
def _plan(n_players: int, n_rows: int, size_mass):
    return plan_uncached(n_players, n_rows, size_mass=None if size_mass is None else np.asarray(size_mass))


def plan(n_players: int, n_rows: int, *, size_mass=None):
    """Static allocation: ``(enum_groups, [(group, n_pairs), ...])`` by water-filling over sizes (cached).

    ``size_mass`` ``[M+1]`` replaces the leverage mass (uniform over sizes) as the allocation target.
    """
    key = None if size_mass is None else tuple(float(x) for x in np.asarray(size_mass))
    return _plan(int(n_players), int(n_rows), key)


def plan_uncached(n_players: int, n_rows: int, *, size_mass=None):
    """:func:`plan` without the cache."""
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
            count = regression.group_count(M, g)
            if count <= rows and count <= share:  # (rows first: C(M, s) can overflow a float at large M)
                enum.append(g)
                open_.remove(g)
                rows -= regression.group_count(M, g)
                changed = True
                break
    if not open_:
        return tuple(enum), ()
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
    return tuple(enum), tuple((g, a) for g, a in zip(open_, alloc) if a > 0)


def layout(n_players: int, n_evals: int, *, n_rows: int | None = None, size_mass=None):
    """The design of ``n_evals`` as a row layout (:mod:`shapjax.engine.estimators.layout`): the
    sampled pairs of size group ``g`` form stratum ``g`` (its index among all size groups, so the
    program's shapes do not depend on the budget); for the standard errors, strata of one pair are
    collapsed with their neighbours (:func:`~shapjax.engine.estimators.layout.variance_strata`). ``size_mass`` replaces the leverage allocation
    target (see :func:`plan`). Returns ``(Layout, Static)``."""
    M = int(n_players)
    mass = shapley_kernel_size_mass(M)
    enum, sampled = plan(M, n_evals - 2, size_mass=size_mass)
    groups = regression.size_groups(M)
    gid = {g: i for i, g in enumerate(groups)}
    fpc = np.ones(len(groups))
    s = np.array([g[0] for g, _ in sampled], np.int64)
    k = np.array([k for _, k in sampled], np.int64)
    two = np.array([len(g) == 2 for g, _ in sampled], bool)
    sid = np.array([gid[g] for g, _ in sampled], np.int64)
    # a pair of sizes (s, M - s) gives each side its own mass / k; a middle size splits its mass over both
    w_z = np.where(two, mass[s] / k, mass[s] / (2 * k))
    w_c = np.where(two, mass[M - s] / k, w_z)
    fpc[sid] = [max(0.0, 1.0 - int(kk) / math.comb(M, int(ss))) for ss, kk in zip(s, k)]
    labels, fpc = L.variance_strata(sid, k, fpc)  # strata of one pair collapsed for the standard errors
    pairs = L.pairs_of_strata(s, w_z, w_c, labels, k)
    live = used_evals(M, n_evals, size_mass=size_mass) - 2
    return L.make_layout(M, live if n_rows is None else n_rows, enum, pairs, mass=mass, n_strata=len(groups),
                         fpc=fpc, distinct=True)


def design(n_players: int, n_evals: int, *, key, size_mass=None) -> Design:
    """The design of ``n_evals`` (the live rows of :func:`layout`, built in array code) with the
    :class:`~shapjax.engine.estimators.regression.RegressionAux` of :func:`regression.solve`."""
    lay, static = layout(n_players, n_evals, size_mass=size_mass)
    return L.as_regression_design(L.build(int(n_players), lay, static, key=key), lay)


def used_evals(M, n_evals, *, size_mass=None, **options):
    enum, sampled = plan(M, n_evals - 2, size_mass=size_mass)
    return sum(regression.group_count(M, g) for g in enum) + sum(2 * k for _, k in sampled) + 2


def with_size_mass(size_mass_of):
    """``(design, used_evals)`` of this design with the allocation target ``size_mass_of(M)`` (``[M+1]``) in place
    of the leverage mass (see :func:`plan`): all an estimator needs that keeps the design and only re-weights the
    sizes (:mod:`.svarm`)."""

    def design_(n_players: int, n_evals: int, *, key) -> Design:
        return design(n_players, n_evals, key=key, size_mass=size_mass_of(n_players))

    def used_evals_(M, n_evals, **options):
        return used_evals(M, n_evals, size_mass=size_mass_of(M))

    return design_, used_evals_


def min_evals(M: int) -> int:
    """``2M + 2``: the singleton group is enumerated first (full rank at every budget), as in :mod:`.kernel`."""
    return kernel_min_evals(M)


ESTIMATOR = Estimator(
    name="leverage",
    min_evals=min_evals,
    used_evals=used_evals,
    design=design,
    solve=regression.solve,
    layout=layout,
    build=L.build,
    layout_solve=L.solve,
)
