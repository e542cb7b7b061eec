r"""Exact Shapley values by full enumeration of the :math:`2^M` coalitions.

.. math::

    \phi_i = \sum_{S \subseteq N \setminus \{i\}} \frac{|S|!\,(M-|S|-1)!}{M!}
             \,[v(S \cup \{i\}) - v(S)]

The differences are taken first (one axis of the ``[2]*M`` value tensor at a
time) and weighted afterwards, which keeps float32 round-off at the level of
single differences.

References:
  Shapley, L. S. (1953). A value for n-person games. Contributions to the
  Theory of Games II, 307-317.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from shapjax.engine.estimators.base import Design, Estimator
from shapjax.engine.samplers import all_coalitions
from shapjax.kernels.weights import shapley_value_weights

#: The largest number of players enumerated (2**20 = 1,048,576 evaluations).
MAX_EXACT_PLAYERS = 20


def design(n_players: int, n_evals: int, *, key) -> Design:
    del key, n_evals
    M = int(n_players)
    if M > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"method='exact' enumerates 2**n_players coalitions and is limited to "
            f"n_players <= {MAX_EXACT_PLAYERS}; got n_players={M}"
        )
    Z = all_coalitions(M)
    return Design(Z[1:-1], None)


def solve(design_: Design, y, v_empty, v_full, active):
    M = design_.coalitions.shape[1]
    V = jnp.concatenate([v_empty[None], y, v_full[None]], axis=0)  # [2^M, K]
    K = V.shape[-1]
    T = V.reshape((2,) * M + (K,))  # axis a <-> bit M-1-a
    w = jnp.asarray(shapley_value_weights(M), jnp.float32)
    bits = np.indices((2,) * (M - 1)).sum(0) if M > 1 else np.zeros((), int)
    W = w[jnp.asarray(bits)]  # [2]*(M-1), weight by |S|
    phi = []
    for i in range(M):
        a = M - 1 - i
        d = jnp.take(T, 1, axis=a) - jnp.take(T, 0, axis=a)
        phi.append(jnp.tensordot(W, d, axes=M - 1) if M > 1 else d)
    phi = jnp.stack(phi)
    if active is not None:
        phi = phi * active[:, None]
    return phi, None


ESTIMATOR = Estimator(
    name="exact",
    min_evals=lambda M: 0,  # the budget is ignored: always 2**M
    used_evals=lambda M, n_evals, **o: 2**M,
    design=design,
    solve=solve,
)
