r"""Occlusion (leave-one-out): the drop in output when one player is removed.

.. math:: a_i = v(N) - v(N \setminus \{i\})

Costs ``M + 2`` evaluations whatever the budget. Not a Shapley value (exact
only for additive games; no efficiency in general).

References:
  Zeiler, M. D. & Fergus, R. (2014). Visualizing and Understanding
  Convolutional Networks. ECCV.
"""
from __future__ import annotations

import jax.numpy as jnp

from shapjax.engine.estimators.base import Design, Estimator


def design(n_players: int, n_evals: int, *, key) -> Design:
    del key, n_evals
    M = int(n_players)
    return Design(~jnp.eye(M, dtype=bool), None)


def solve(design_: Design, y, v_empty, v_full, active):
    phi = v_full[None, :] - y
    if active is not None:
        phi = phi * active[:, None]
    return phi, None


ESTIMATOR = Estimator(
    name="occlusion",
    min_evals=lambda M: 0,
    used_evals=lambda M, n_evals, **o: M + 2,
    design=design,
    solve=solve,
    efficient=False,
    estimates="leave-one-out",
)
