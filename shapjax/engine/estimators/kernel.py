r"""KernelSHAP: Shapley values as an efficiency-constrained weighted regression.

The Shapley values are the solution of

.. math::

    \min_\phi \sum_{z \ne 0, \mathbf{1}} \pi(z)\,\big(v(z) - v(0) - z^\top\phi\big)^2
    \quad\text{s.t.}\quad \mathbf{1}^\top\phi = v(\mathbf{1}) - v(0),
    \qquad \pi(z) = \frac{M-1}{\binom{M}{|z|}\,|z|\,(M-|z|)}.

The design follows shap's ``KernelExplainer``: coalition sizes are visited from
the outside in (1 and M-1, then 2 and M-2, ...) and a pair of sizes is
enumerated exactly whenever the remaining budget, split in proportion to the
kernel mass, covers all its coalitions; the remaining budget is spent on
*paired* samples ``(z, 1 - z)`` drawn from the kernel distribution restricted to
the remaining sizes (Covert & Lee 2021 show pairing reduces variance). The
constrained problem is solved in closed form (Covert & Lee 2021). With a budget
of ``2**M`` every size is enumerated and the result is the exact Shapley value.

Standard errors treat the regression matrix as fixed and propagate the
sample covariance of the paired contributions through the closed-form solution
(the delta method of Covert & Lee 2021).

References:
  Lundberg, S. M. & Lee, S.-I. (2017). A Unified Approach to Interpreting
  Model Predictions. NeurIPS.
  Covert, I. & Lee, S.-I. (2021). Improving KernelSHAP: Practical Shapley
  Value Estimation via Linear Regression. AISTATS.
"""
from __future__ import annotations

import functools

import numpy as np

from shapjax.engine.estimators import layout as L
from shapjax.engine.estimators import regression
from shapjax.engine.estimators.base import Design, Estimator
from shapjax.kernels.weights import shapley_kernel_size_mass


@functools.lru_cache(maxsize=256)
def plan(n_players: int, n_rows: int):
    """Static split of ``n_rows`` into enumerated size groups and sampled pairs.

    Returns ``(enum_groups, sample_groups, n_pairs)``.
    """
    M = int(n_players)
    mass = shapley_kernel_size_mass(M)
    groups = regression.size_groups(M)
    remaining_rows, remaining_mass = int(n_rows), 1.0
    enum = []
    for i, g in enumerate(groups):
        gm = float(sum(mass[s] for s in g))
        count = regression.group_count(M, g)
        share = remaining_rows * gm / remaining_mass if remaining_mass > 1e-12 else 0.0
        # The singletons and their complements (sizes 1 and M-1) are always enumerated: they make
        # the design full rank at every allowed budget, so even the minimum budget is exact on an
        # additive game (sampled pairs alone repeat and leave directions unidentified).
        if count <= remaining_rows and (i == 0 or share >= count * (1 - 1e-9)):
            enum.append(g)
            remaining_rows -= count
            remaining_mass -= gm
        else:
            return tuple(enum), tuple(groups[i:]), remaining_rows // 2
    return tuple(enum), (), 0


def layout(n_players: int, n_evals: int, *, n_rows: int | None = None):
    """The design of ``n_evals`` as a row layout of ``n_rows`` rows (default: the live rows), see
    :mod:`shapjax.engine.estimators.layout`. Returns ``(Layout, Static)``."""
    M = int(n_players)
    mass = shapley_kernel_size_mass(M)
    enum, sample, n_pairs = plan(M, n_evals - 2)
    live = used_evals(M, n_evals) - 2
    size_p = np.zeros(M // 2 + 1)
    pairs = None
    if n_pairs and sample:
        gmass = np.array([sum(mass[s] for s in g) for g in sample])
        rest = float(gmass.sum())
        size_p[[g[0] for g in sample]] = gmass / rest
        w = rest / (2 * n_pairs)
        pairs = L.pairs_of_strata(-1, w, w, 0, n_pairs)  # one stratum; sizes drawn from size_p
    return L.make_layout(M, live if n_rows is None else n_rows, enum, pairs, mass=mass, n_strata=1, size_p=size_p,
                         fpc=[1.0], distinct=False)


def design(n_players: int, n_evals: int, *, key) -> Design:
    """The design of ``n_evals`` (the live rows of :func:`layout`, built in array code) with the
    :class:`~shapjax.engine.estimators.regression.RegressionAux` of :func:`regression.solve`."""
    lay, static = layout(n_players, n_evals)
    return L.as_regression_design(L.build(int(n_players), lay, static, key=key), lay)


def used_evals(M, n_evals, **options):
    enum, sample, n_pairs = plan(M, n_evals - 2)
    mass_rows = sum(regression.group_count(M, g) for g in enum)
    return mass_rows + 2 * n_pairs + 2


def min_evals(M: int) -> int:
    """The empty and full coalitions plus the M singletons and their M complements (all of them
    when M <= 3): the smallest budget whose design always has full rank."""
    return min(2 * M + 2, 2**M)


ESTIMATOR = Estimator(
    name="kernel",
    min_evals=min_evals,
    used_evals=used_evals,
    design=design,
    solve=regression.solve,
    layout=layout,
    build=L.build,
    layout_solve=L.solve,
)
