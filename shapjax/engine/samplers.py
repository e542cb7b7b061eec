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
    """Uniform random coalitions of the given sizes, no sort (a binary search per row, :func:`kth_smallest`).

    Each row gets i.i.d. random 32-bit keys whose low ``ceil(log2 M)`` bits are replaced by the
    column index, so the keys of a row are distinct; a row's coalition is its ``size`` smallest
    keys, found as ``key <= the size-th smallest`` (:func:`kth_smallest`; the double argsort this
    replaced cost 1.2 s at M = 1024, a sort of the values 16 ms, the search 4 ms). Ties in the random
    high bits are broken by column index, a bias of order ``M / 2**(32 - log2 M)`` per row.

    Args:
      key: PRNG key.
      sizes: ``[N]`` int, the size of each coalition (may be traced), ``0..M``.
      n_players: M (static).

    Returns:
      ``[N, M]`` bool; row ``n`` is a uniform random subset of size ``sizes[n]``.
    """
    sizes = jnp.asarray(sizes, jnp.int32)
    M = int(n_players)
    N = sizes.shape[0]
    low = max(1, (M - 1).bit_length())
    bits = jax.random.bits(key, (N, M), jnp.uint32)
    col = jnp.arange(M, dtype=jnp.uint32)
    keys = ((bits >> low) << low) | col[None, :]
    return (keys <= kth_smallest(keys, sizes)[:, None]) & (sizes[:, None] > 0)


def kth_smallest(keys, k):
    """``[N]`` uint32: the ``k[n]``-th smallest (1-based) of the distinct ``keys [N, M]`` uint32 of row
    ``n`` (``k`` in ``1..M``; 0 gives the smallest key's lower bound, 0), by a binary search over the 32
    bits: 32 compare-and-count passes over the rows, which XLA:CPU vectorises, where a sort per row runs
    a comparator per element pair (4 ms against 16 ms at 512 x 1024, measured). The largest ``t`` with
    fewer than ``k`` keys below it is the ``k``-th smallest key."""
    k = jnp.asarray(k, jnp.int32)

    def step(i, t):
        cand = t | (jnp.uint32(1) << (31 - i).astype(jnp.uint32))
        below = jnp.sum(keys < cand[:, None], axis=1, dtype=jnp.int32)
        return jnp.where(below < k, cand, t)

    return jax.lax.fori_loop(0, 32, step, jnp.zeros(keys.shape[:1], jnp.uint32))


def comb_table(n_players: int, max_size: int) -> np.ndarray:
    """``[M, max_size + 1]`` int32 table of ``C(c, j)`` for ``c < M``, saturated at ``2**31 - 1``."""
    M, s = int(n_players), int(max_size)
    table = np.array([[math.comb(c, j) for j in range(s + 1)] for c in range(M)], dtype=object)
    return np.minimum(table, np.iinfo(np.int32).max).astype(np.int32)


def unrank_varsize(ranks, sizes, n_players: int, max_size: int) -> jax.Array:
    """:func:`unrank_combinations` with a (traced) size per row: ``sizes [N]`` in ``0..max_size``.

    ``max_size`` is static (the loop runs that many vectorised steps over every row; rows whose
    size is smaller idle). Ranks must lie in ``[0, C(M, size))``. Returns ``[N, M]`` bool.
    """
    M, smax = int(n_players), int(max_size)
    r = jnp.asarray(ranks, jnp.int32)
    sz = jnp.asarray(sizes, jnp.int32)
    out = jnp.zeros((r.shape[0], M), dtype=bool)
    if smax == 0:
        return out
    table = comb_table(M, smax)  # [M, smax + 1], each column non-decreasing in c
    tab = jnp.asarray(table)
    # the largest candidate c with C(c, j) <= r: binary searches, one per column j, O(N smax log M)
    # (at 3072 x 1024, smax = 3: 1.2 ms against 14 ms), or at small M the count of the row's own
    # table row, O(N M)
    search = 2 * smax * M.bit_length() <= M
    columns = [jnp.asarray(table[:, jj]) for jj in range(1, smax + 1)] if search else None
    tabT = None if search else tab.T
    cols = jnp.arange(M)
    for t in range(smax):
        j = sz - t  # the j-th element, counted from the largest
        on = j >= 1
        jc = jnp.clip(j, 1, smax)
        if search:
            c = jnp.zeros_like(r)
            for jj, column in enumerate(columns, start=1):
                c = jnp.where(jc == jj, jnp.searchsorted(column, r, side="right") - 1, c)
        else:
            c = jnp.sum(tabT[jc] <= r[:, None], axis=1) - 1
        r = jnp.where(on, r - tab[jnp.clip(c, 0, M - 1), jc], r)
        out = out | ((cols[None, :] == c[:, None]) & on[:, None])
    return out


def _mix32(x):
    """A 32-bit integer mixing function (lowbias32), the round function of :func:`distinct_ranks`."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def distinct_ranks(index, n_comb, round_keys) -> jax.Array:
    """A keyed pseudo-random permutation of ``[0, n_comb)`` evaluated at ``index`` (array code).

    A balanced Feistel network on the smallest even number of bits covering ``n_comb`` (6 rounds
    keyed by ``round_keys``), with cycle walking back into range: distinct indexes of one
    stratum (same ``n_comb`` and keys) give distinct ranks, so the first ``k`` indexes are a
    without-replacement draw of ``k`` ranks, whatever ``k`` (traced) and without a per-size
    loop. Args: ``index [N]``, ``n_comb [N]`` (each <= 2**30), ``round_keys [N, R]`` uint32.
    """
    idx = jnp.asarray(index, jnp.uint32)
    n = jnp.asarray(n_comb, jnp.uint32)
    nbits = jnp.maximum(32 - jax.lax.clz(jnp.maximum(n, 2) - 1), 2)
    h = ((nbits + 1) // 2).astype(jnp.uint32)  # half width
    mask = (jnp.uint32(1) << h) - 1
    rk = jnp.asarray(round_keys, jnp.uint32)

    def perm(x):
        L, R = x >> h, x & mask
        for i in range(rk.shape[1]):
            L, R = R, (L ^ _mix32(R ^ rk[:, i])) & mask
        return (L << h) | R

    x = perm(idx)
    x = jax.lax.while_loop(lambda x: jnp.any(x >= n), lambda x: jnp.where(x >= n, perm(x), x), x)
    return x.astype(jnp.int32)


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
