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

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.precision import floatx
from shapjax.engine.estimators import regression
from shapjax.engine.estimators.base import Design, Estimator
from shapjax.engine.samplers import random_subsets
from shapjax.kernels.weights import shapley_kernel_size_mass


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
            return enum, groups[i:], remaining_rows // 2
    return enum, [], 0


def design(n_players: int, n_evals: int, *, key) -> Design:
    M = int(n_players)
    mass = shapley_kernel_size_mass(M)
    enum, sample, n_pairs = plan(M, n_evals - 2)
    Ze, we = regression.enumerated_rows(M, enum, mass)
    if n_pairs == 0 or not sample:
        aux = regression.RegressionAux(jnp.asarray(we), len(we), jnp.zeros((0,), jnp.int32), jnp.ones((1,), floatx()))
        return Design(jnp.asarray(Ze), aux)
    gmass = np.array([sum(mass[s] for s in g) for g in sample])
    rest = float(gmass.sum())
    k_size, k_sub = jax.random.split(key)
    gi = jax.random.choice(k_size, len(sample), (n_pairs,), p=jnp.asarray(gmass / rest))
    sizes = jnp.asarray([g[0] for g in sample])[gi]
    z = random_subsets(sizes, M, key=k_sub)
    pairs = jnp.stack([z, ~z], axis=1).reshape(2 * n_pairs, M)
    Z = jnp.concatenate([jnp.asarray(Ze), pairs])
    w = jnp.concatenate([jnp.asarray(we), jnp.full((2 * n_pairs,), rest / (2 * n_pairs), floatx())])
    aux = regression.RegressionAux(w, len(we), jnp.zeros((n_pairs,), jnp.int32), jnp.ones((1,), floatx()))
    return Design(Z, aux)


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
)
