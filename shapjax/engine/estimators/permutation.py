r"""Permutation sampling of Shapley values (plain, antithetic, stratified).

The Shapley value is the expected marginal contribution of a player over
uniformly random orderings of the players:

.. math::

    \phi_i = \mathbb{E}_{\pi}\big[v(P_i^\pi \cup \{i\}) - v(P_i^\pi)\big],

where :math:`P_i^\pi` is the set of players preceding :math:`i` in
:math:`\pi`. One ordering yields the marginal contribution of *every* player
from the ``M+1`` prefix values ``v(prefix_0..prefix_M)``; the empty and full
prefixes are shared, so each ordering costs ``M - 1`` evaluations. The
contributions telescope, so every estimate satisfies efficiency exactly.

Variants:

* ``"permutation"``: independent uniform orderings (Castro et al. 2009).
* ``"antithetic"``: each ordering is followed by its reverse (Mitchell et al.
  2022): a player early in one is late in the other, which cancels much of the
  size-driven variance.
* ``"stratified"``: stratified by position (Maleki et al. 2013; Castro et al.
  2017 stratify by player and position). Orderings come in blocks of ``M``
  that form a random Latin square of positions, so inside a block every
  player occupies every position exactly once, each ordering is marginally
  uniform, and the players preceding ``i`` at position ``p`` are a uniform
  random ``p``-subset. A last, partial block uses evenly spaced rows.

Standard errors: sample standard deviation of the per-ordering (for
antithetic, per-pair) contributions over :math:`\sqrt{n}`; for the stratified
variant this ignores the stratification and is conservative.

References:
  Castro, J., Gomez, D. & Tejada, J. (2009). Polynomial calculation of the
  Shapley value based on sampling. Computers & Operations Research 36(5).
  Maleki, S. et al. (2013). Bounding the Estimation Error of Sampling-based
  Shapley Value Approximation. arXiv:1306.4265.
  Castro, J. et al. (2017). Improving polynomial estimation of the Shapley
  value by stratified random sampling with optimum allocation. C&OR 82.
  Mitchell, R. et al. (2022). Sampling Permutations for Shapley Value
  Estimation. JMLR 23.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from shapjax.engine.estimators.base import Design, Estimator
from shapjax.engine.samplers import permutations, prefix_coalitions


def n_permutations(kind: str, M: int, n_evals: int) -> int:
    if M < 2:
        return 0
    p = (n_evals - 2) // (M - 1)
    if kind == "antithetic":
        p -= p % 2
    return max(p, 0)


def _stratified_perms(key, P: int, M: int):
    """Blocks of ``M`` orderings forming a random Latin square of positions.

    In block ``b`` the position of player ``j`` in ordering ``k`` is
    ``sigma((rho(k) + tau(j)) mod M)`` with independent uniform permutations
    ``sigma, rho, tau``: every row is a uniform ordering and every player
    takes every position once per block. (Plain cyclic shifts of one ordering
    are also position-balanced but strongly correlated; measured worse than
    independent orderings.)
    """
    n_blocks = -(-P // M)
    k1, k2, k3 = jax.random.split(key, 3)
    tau, sigma, rho = (permutations(n_blocks, M, key=k) for k in (k1, k2, k3))
    rows = []
    for b in range(n_blocks):
        n_in = min(M, P - b * M)
        ks = np.floor(np.arange(n_in) * M / n_in).astype(np.int32)
        pos = sigma[b][(rho[b][ks][:, None] + tau[b][None, :]) % M]  # [n_in, M] position of player j
        rows.append(jnp.argsort(pos, axis=1))
    return jnp.concatenate(rows).astype(jnp.int32)


def make_design(kind: str):
    def design(n_players: int, n_evals: int, *, key) -> Design:
        M = int(n_players)
        P = n_permutations(kind, M, n_evals)
        if kind == "permutation":
            perms = permutations(P, M, key=key)
        elif kind == "antithetic":
            half = permutations(P // 2, M, key=key)
            perms = jnp.stack([half, half[:, ::-1]], axis=1).reshape(P, M)
        elif kind == "stratified":
            perms = _stratified_perms(key, P, M)
        else:  # pragma: no cover - guarded by the registry
            raise ValueError(kind)
        Z = prefix_coalitions(perms).reshape(P * (M - 1), M)
        return Design(Z, perms)

    return design


def make_solve(kind: str):
    def solve(design_: Design, y, v_empty, v_full, active):
        perms = design_.aux
        P, M = perms.shape
        K = y.shape[-1]
        V = jnp.concatenate(
            [
                jnp.broadcast_to(v_empty, (P, 1, K)),
                y.reshape(P, M - 1, K),
                jnp.broadcast_to(v_full, (P, 1, K)),
            ],
            axis=1,
        )  # [P, M+1, K] prefix values
        pos = jnp.argsort(perms, axis=1)  # [P, M] position of player j
        after = jnp.take_along_axis(V, (pos + 1)[:, :, None], axis=1)
        before = jnp.take_along_axis(V, pos[:, :, None], axis=1)
        delta = after - before  # [P, M, K]
        if active is not None:
            delta = delta * active[None, :, None]
        phi = delta.mean(0)
        units = delta.reshape(P // 2, 2, M, K).mean(1) if kind == "antithetic" else delta
        n = units.shape[0]
        std = jnp.std(units, axis=0, ddof=1) / jnp.sqrt(n) if n >= 2 else None
        return phi, std

    return solve


def _min(kind):
    return (lambda M: 2 * (M - 1) + 2) if kind == "antithetic" else (lambda M: M + 1)


def _used(kind):
    return lambda M, n_evals, **o: n_permutations(kind, M, n_evals) * (M - 1) + 2


ESTIMATORS = {
    kind: Estimator(
        name=kind,
        min_evals=_min(kind),
        used_evals=_used(kind),
        design=make_design(kind),
        solve=make_solve(kind),
    )
    for kind in ("permutation", "antithetic", "stratified")
}
