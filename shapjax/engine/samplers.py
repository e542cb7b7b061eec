"""Coalition samplers: random subsets, enumeration, permutations.

Every function is pure; randomness comes only from the explicit ``key``.
Coalitions are ``bool`` arrays ``[N, M]`` (True = player present).
"""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

#: Above this many combinations of one size, ranks no longer fit int32 and
#: subsets are drawn independently (duplicates then have negligible probability).
_MAX_RANKABLE = 2**30


def all_coalitions(n_players: int) -> jax.Array:
    """Every coalition of ``M`` players, ``[2**M, M]`` bool; row ``r`` has player ``j`` iff bit ``j`` of ``r`` is set."""
    M = int(n_players)
    r = jnp.arange(2**M, dtype=jnp.uint32)
    return ((r[:, None] >> jnp.arange(M, dtype=jnp.uint32)[None, :]) & 1).astype(bool)


def enumerate_size(n_players: int, size: int) -> np.ndarray:
    """Every coalition of exactly ``size`` players, ``[C(M, size), M]`` bool (NumPy, static)."""
    M = int(n_players)
    combos = list(itertools.combinations(range(M), int(size)))
    out = np.zeros((len(combos), M), dtype=bool)
    for r, c in enumerate(combos):
        out[r, list(c)] = True
    return out


def random_subsets(sizes, n_players: int, *, key) -> jax.Array:
    """Uniform random coalitions of the given sizes.

    Args:
      key: PRNG key.
      sizes: ``[N]`` int, the size of each coalition (may be traced).
      n_players: M (static).

    Returns:
      ``[N, M]`` bool; row ``n`` is a uniform random subset of size ``sizes[n]``.
    """
    sizes = jnp.asarray(sizes)
    noise = jax.random.uniform(key, (sizes.shape[0], int(n_players)))
    ranks = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)
    return ranks < sizes[:, None]


def unrank_combinations(ranks, n_players: int, size: int) -> jax.Array:
    """Map ranks in ``[0, C(M, size))`` to distinct ``size``-subsets (combinatorial number system).

    Returns ``[k, M]`` bool. Static ``size``; ``ranks`` may be traced (int32).
    """
    M, s = int(n_players), int(size)
    table = np.array([[math.comb(c, j) for j in range(s + 1)] for c in range(M)], dtype=np.int64)
    table = jnp.asarray(np.minimum(table, np.iinfo(np.int32).max).astype(np.int32))
    r = jnp.asarray(ranks, jnp.int32)
    out = jnp.zeros((r.shape[0], M), dtype=bool)
    for j in range(s, 0, -1):
        # largest c with C(c, j) <= r (C(c, j) is non-decreasing in c)
        c = jnp.sum(table[None, :, j] <= r[:, None], axis=1) - 1
        out = out.at[jnp.arange(r.shape[0]), c].set(True)
        r = r - table[c, j]
    return out


def distinct_subsets(n_players: int, size: int, count: int, *, key) -> jax.Array:
    """``count`` distinct uniform random subsets of ``size`` players, drawn without replacement.

    ``count`` must not exceed ``C(M, size)``. For astronomically many
    combinations (more than 2**30) subsets are drawn independently, where a
    repeat has negligible probability.

    Returns:
      ``[count, M]`` bool.
    """
    M, s, k = int(n_players), int(size), int(count)
    n_comb = math.comb(M, s)
    if k > n_comb:
        raise ValueError(f"count={k} exceeds the {n_comb} subsets of size {s} among {M} players")
    if k == 0:
        return jnp.zeros((0, M), bool)
    if n_comb > _MAX_RANKABLE:
        return random_subsets(jnp.full((k,), s), M, key=key)
    if n_comb <= 4 * k + 1024:
        ranks = jax.random.choice(key, n_comb, (k,), replace=False)
    else:
        # The first k distinct values of an i.i.d. uniform sequence are a uniform
        # k-subset. 2k draws from more than 4k values hold k distinct ones with
        # overwhelming probability.
        draws = jax.random.randint(key, (2 * k,), 0, n_comb, dtype=jnp.int32)
        order = jnp.argsort(draws, stable=True)
        sd = draws[order]
        dup_sorted = jnp.concatenate([jnp.array([False]), sd[1:] == sd[:-1]])
        dup = jnp.zeros_like(dup_sorted).at[order].set(dup_sorted)
        keep = jnp.argsort(dup.astype(jnp.int32) * (2 * k) + jnp.arange(2 * k), stable=True)[:k]
        ranks = draws[keep]
    return unrank_combinations(ranks, M, s)


def permutations(count: int, n_players: int, *, key) -> jax.Array:
    """``[count, M]`` int32, independent uniform random permutations of ``0..M-1``."""
    keys = jax.random.split(key, int(count))
    return jax.vmap(lambda k: jax.random.permutation(k, int(n_players)))(keys).astype(jnp.int32)


def prefix_coalitions(perms) -> jax.Array:
    """Interior prefix coalitions of each permutation.

    Args:
      perms: ``[P, M]`` permutations.

    Returns:
      ``[P, M-1, M]`` bool; entry ``[p, t-1]`` is the set of the first ``t``
      players of ``perms[p]``, for ``t = 1..M-1`` (the empty and full
      coalitions are left out: they are shared by every permutation).
    """
    P, M = perms.shape
    pos = jnp.argsort(perms, axis=1)  # position of each player
    t = jnp.arange(1, M)
    return pos[:, None, :] < t[None, :, None]
