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

import math

import jax.numpy as jnp

from shapjax.engine.estimators.base import Design, Estimator
from shapjax.engine.samplers import all_coalitions

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


def _size_sums(d, n: int):
    """``G [n+1, K]``: ``G[s]`` sums ``d [2]*n + [K]`` over the coalitions of size ``s``.

    One axis at a time the two halves are added, each shifted by its size: a pairwise (tree)
    summation of depth ``n``, so float32 round-off grows like ``n`` ulps, not like ``2**n``.
    """
    G = d[..., None, :]  # sizes axis
    for _ in range(n):
        a0, a1 = G[0], G[1]
        pad = jnp.zeros_like(a0[..., :1, :])
        G = jnp.concatenate([a0, pad], axis=-2) + jnp.concatenate([pad, a1], axis=-2)
    return G


def solve(design_: Design, y, v_empty, v_full, active):
    M = design_.coalitions.shape[1]
    V = jnp.concatenate([v_empty[None], y, v_full[None]], axis=0)  # [2^M, K]
    K = V.shape[-1]
    T = V.reshape((2,) * M + (K,))  # axis a <-> bit M-1-a
    # phi_i = (1/M) sum_s mean_{|S| = s} [v(S + i) - v(S)]: means per size, then their average
    inv_count = jnp.asarray([1.0 / math.comb(M - 1, s) for s in range(M)], V.dtype)[:, None]
    phi = []
    for i in range(M):
        a = M - 1 - i
        d = jnp.take(T, 1, axis=a) - jnp.take(T, 0, axis=a)  # [2]*(M-1) + [K]
        phi.append(jnp.sum(_size_sums(d, M - 1) * inv_count, axis=0) / M)
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
