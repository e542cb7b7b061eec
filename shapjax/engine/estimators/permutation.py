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

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shapjax.engine.estimators.base import Design, Estimator


def n_permutations(kind: str, M: int, n_evals: int) -> int:
    if M < 2:
        return 0
    p = (n_evals - 2) // (M - 1)
    if kind == "antithetic":
        p -= p % 2
    return max(p, 0)


class PermLayout(NamedTuple):
    """The live part of a (bucketed) ordering design, data of the compiled program."""

    n_live: np.ndarray  # [] int32 live design rows, n_perms * (M - 1) (they come first)
    n_perms: np.ndarray  # [] int32 live orderings


class PermStatic(NamedTuple):
    """What the compiled program must know statically: the bucket's length."""

    n_rows: int  # design rows, n_slots * (M - 1)
    n_slots: int  # orderings the program holds (live ones first)
    has_std: bool  # at least two live units (orderings; antithetic: pairs)


class PermAux(NamedTuple):
    pos: jax.Array  # [n_slots, M] int32: the position of player j in ordering p
    n_perms: jax.Array  # [] int32 live orderings
    has_std: bool


def _uniform(key, idx, M: int):
    """Ordering ``i`` of ``idx``: a uniform permutation from the key folded with ``i`` alone."""
    return jax.vmap(lambda i: jax.random.permutation(jax.random.fold_in(key, i), M))(idx).astype(jnp.int32)


def _stratified_positions(key, n_slots: int, M: int, n_perms):
    """Blocks of ``M`` orderings forming a random Latin square of positions.

    In block ``b`` the position of player ``j`` in ordering ``k`` is
    ``sigma((rho(k) + tau(j)) mod M)`` with independent uniform permutations
    ``sigma, rho, tau`` of block ``b``'s own key: every row is a uniform ordering and every
    player takes every position once per block. A last, partial block of ``n`` orderings uses the
    evenly spaced rows ``floor(i M / n)``. (Plain cyclic shifts of one ordering are also
    position-balanced but strongly correlated; measured worse than independent orderings.)
    """
    n_blocks = -(-n_slots // M)
    blocks = jnp.arange(n_blocks)
    tau, sigma, rho = (_uniform(k, blocks, M) for k in jax.random.split(key, 3))
    r = jnp.arange(n_slots)
    b, j = r // M, r % M
    n_in = jnp.clip(n_perms - b * M, 1, M)
    ks = (j * M) // n_in
    shift = jnp.take_along_axis(rho[b], ks[:, None], axis=1)  # [n_slots, 1]
    return jnp.take_along_axis(sigma[b], (shift + tau[b]) % M, axis=1).astype(jnp.int32)


def layout(kind: str):
    def lay(n_players: int, n_evals: int, *, n_rows: int | None = None):
        """The orderings of ``n_evals`` in a design of at least ``n_rows`` rows (default: the live
        ones): whole orderings, an even number for antithetic. Ordering ``i`` depends only on the
        key and ``i``, so a budget gives the same orderings and estimates in any bucket."""
        M = int(n_players)
        P = n_permutations(kind, M, n_evals)
        slots = P if n_rows is None else max(P, -(-int(n_rows) // (M - 1)))
        if kind == "antithetic":
            slots += slots % 2
        units = P // 2 if kind == "antithetic" else P
        return (PermLayout(np.int32(P * (M - 1)), np.int32(P)),
                PermStatic(slots * (M - 1), slots, units >= 2))

    return lay


def make_build(kind: str):
    def build(n_players: int, lay: PermLayout, static: PermStatic, *, key) -> Design:
        M, S = int(n_players), static.n_slots
        if kind == "permutation":
            pos = _uniform(key, jnp.arange(S), M)
        elif kind == "antithetic":  # ordering 2i + 1 reverses ordering 2i
            half = _uniform(key, jnp.arange(S // 2), M)
            pos = jnp.stack([half, M - 1 - half], axis=1).reshape(S, M)
        elif kind == "stratified":
            pos = _stratified_positions(key, S, M, lay.n_perms)
        else:  # pragma: no cover - guarded by the registry
            raise ValueError(kind)
        # (a uniform permutation's inverse is uniform: positions are drawn directly, no argsort)
        t = jnp.arange(1, M)
        Z = (pos[:, None, :] < t[None, :, None]).reshape(S * (M - 1), M)
        return Design(Z, PermAux(pos, jnp.asarray(lay.n_perms, jnp.int32), static.has_std))

    return build


def make_design(kind: str):
    lay, build = layout(kind), make_build(kind)

    def design(n_players: int, n_evals: int, *, key) -> Design:
        return build(n_players, *lay(n_players, n_evals), key=key)

    return design


def make_solve(kind: str):
    def solve(design_: Design, y, v_empty, v_full, active):
        pos, P, has_std = design_.aux
        S, M = pos.shape
        K = y.shape[-1]
        V = jnp.concatenate(
            [
                jnp.broadcast_to(v_empty, (S, 1, K)),
                y.reshape(S, M - 1, K),
                jnp.broadcast_to(v_full, (S, 1, K)),
            ],
            axis=1,
        )  # [S, M+1, K] prefix values
        after = jnp.take_along_axis(V, (pos + 1)[:, :, None], axis=1)
        before = jnp.take_along_axis(V, pos[:, :, None], axis=1)
        delta = after - before  # [S, M, K]
        if active is not None:
            delta = delta * active[None, :, None]
        dt = delta.dtype
        live = (jnp.arange(S) < P)[:, None, None]
        delta = jnp.where(live, delta, 0)  # orderings past the live ones (a bucket's padding)
        n = P.astype(dt)
        phi = delta.sum(0) / n
        if kind == "antithetic":
            units, n, live = delta.reshape(S // 2, 2, M, K).sum(1) / 2, n / 2, live[::2]
        else:
            units = delta
        if not has_std:
            return phi, None
        dev = jnp.where(live, units - phi[None], 0)
        std = jnp.sqrt(jnp.sum(dev * dev, axis=0) / (jnp.maximum(n - 1, 1) * n))
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
        layout=layout(kind),
        build=make_build(kind),
        layout_solve=make_solve(kind),
    )
    for kind in ("permutation", "antithetic", "stratified")
}
