"""Regression designs as data: a host-side row layout, built into coalitions by array code.

KernelSHAP and Leverage SHAP decide, on the host, which coalition sizes are enumerated and how
many pairs each sampled size gets (their ``plan``). Here that plan becomes a :class:`Layout`,
a few NumPy arrays with one entry per design row, and :func:`build` turns it into coalitions
inside the compiled program with a fixed number of vectorised operations (no per-size Python
loop, no ``[C(M, s), M]`` constants embedded in the program), so compile time does not grow
with the number of players.

The layout is *data*: it is passed to the compiled program as an argument, and its length
``n_rows`` is a bucket (:func:`bucket`, four shapes per octave) rather than the budget. Rows
past the live ones have weight zero and are not sent through the model (their chunks are
skipped), so every ``n_evals`` of one bucket runs the same compiled program. Row ``i`` of a
layout does not depend on ``n_rows``, and the random draws of pair ``j`` depend only on the key
and ``j``, so a budget gives the same coalitions, the same game values and — up to float32
rounding of the sums over the zero-weight rows — the same estimates in any bucket.

Rows (``kind``): 0 enumerated (``rank`` in the combinatorial number system of subsets of size
``base``, complemented when ``flip``), 1 sampled (pair ``pair``: its base size is ``base`` or,
when -1, drawn from ``size_p``; a pair is a coalition and its complement), 2 padding.
"""
from __future__ import annotations

import functools
import logging
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.precision import floatx
from shapjax.engine.estimators.base import Design
from shapjax.engine.estimators.regression import RegressionAux
from shapjax.engine.samplers import distinct_ranks, random_subsets, unrank_varsize
from shapjax.kernels.wls import active_vector, apply_g, center, factor, least_squares, offset_targets

logger = logging.getLogger(__name__)

#: Subsets of one size with more combinations than this are drawn i.i.d. (ranks no longer fit int32).
MAX_RANKABLE = 2**30
ROUNDS = 6


def bucket(n: int) -> int:
    """The smallest of ``4, 5, 6, 7 x 2**e`` (four shapes per octave) that holds ``n`` (n itself below 8)."""
    n = int(n)
    if n <= 8:
        return max(n, 0)
    e = n.bit_length() - 3
    m = -(-n // (1 << e))
    return m << e


class Layout(NamedTuple):
    """One entry per design row (``[n_rows]``) or per pair slot (``[n_rows // 2]``); see the module doc."""

    kind: np.ndarray  # [N] int32
    base: np.ndarray  # [N] int32 size of the subset before flipping (-1: drawn)
    rank: np.ndarray  # [N] int32 enumeration rank, or index of the pair inside its stratum
    flip: np.ndarray  # [N] bool
    pair: np.ndarray  # [N] int32
    weight: np.ndarray  # [N] float64 (cast to floatx in the program)
    pair_rows: np.ndarray  # [J, 2] int32 rows of each pair (padding: 0, 0)
    pair_strata: np.ndarray  # [J] int32 stratum of each pair (padding: S)
    fpc: np.ndarray  # [S + 1] float64 finite-population correction (padding stratum: 0)
    size_p: np.ndarray  # [M // 2 + 1] float64 distribution of drawn base sizes
    n_live: np.ndarray  # [] int32 live rows (they come first)


class Static(NamedTuple):
    """What the compiled program must know statically (hashable)."""

    n_rows: int
    max_unrank: int  # largest base size unranked in the program
    has_std: bool  # at least two sampled pairs
    distinct: bool  # sampled ranks drawn without replacement (leverage)
    iid: bool  # some rows drawn i.i.d. by random_subsets


class LayoutAux(NamedTuple):
    weights: jax.Array
    pair_rows: jax.Array
    pair_strata: jax.Array
    fpc: jax.Array
    has_std: bool
    layout: Layout  # the row layout it was built from (kinds, sizes: the Gram's structure)


def _enum_rows(M, groups, mass):
    base, rank, flip, weight = [], [], [], []
    for g in groups:
        for s in g:
            b = min(s, M - s)
            C = math.comb(M, s)
            base.append(np.full(C, b, np.int32))
            rank.append(np.arange(C, dtype=np.int32))
            flip.append(np.full(C, s != b))
            weight.append(np.full(C, mass[s] / C, np.float64))
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    return cat(base, np.int32), cat(rank, np.int32), cat(flip, bool), cat(weight, np.float64)


class Pairs(NamedTuple):
    """The sampled pairs of a layout, in row order: one entry per pair (``[J]``)."""

    base: np.ndarray  # [J] int base size (-1: drawn from size_p)
    weight: np.ndarray  # [J, 2] float64 weights of the coalition and of its complement
    stratum: np.ndarray  # [J] int
    index: np.ndarray  # [J] int index of the pair inside its stratum


def pairs_of_strata(base, weight_z, weight_c, stratum, count) -> Pairs:
    """The :class:`Pairs` of strata that hold ``count[i]`` pairs each, all of base size ``base[i]``, weights
    ``weight_z[i]`` / ``weight_c[i]`` and stratum ``stratum[i]`` (indices ``0 .. count[i] - 1``)."""
    count = np.asarray(count, np.int64).reshape(-1)
    rep = lambda x, dt: np.repeat(np.asarray(x, dt).reshape(-1), count)  # noqa: E731
    starts = np.cumsum(count) - count
    index = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(starts, count)
    return Pairs(rep(base, np.int64), np.stack([rep(weight_z, np.float64), rep(weight_c, np.float64)], 1),
                 rep(stratum, np.int64), index)


#: Below this many live sampled pairs per player the regression's standard errors (a linearisation
#: around the estimate) understate its error, and ``explain`` / ``shapley`` say so: measured on a
#: 64-player cubic game against its exact values (64 keys), the ~95 % intervals covered 2-6 % of
#: the players with 31 pairs, 40 % with 63, 76-84 % with ~135 and 88-90 % with ~235 (kernel and
#: leverage alike).
STD_PAIRS_PER_PLAYER = 2


@functools.lru_cache(maxsize=256)
def _std_warning_once(method: str, M: int, n_evals: int, pairs: int, need: int) -> None:
    logger.warning(
        "method=%r, n_evals=%d: the standard errors come from %d sampled coalition pairs for %d players "
        "and understate the error (a linearisation, reliable from about %d sampled pairs per player: "
        "n_evals >= %d here); the values themselves are unaffected", method, n_evals, pairs, M,
        STD_PAIRS_PER_PLAYER, need)


def warn_if_std_unreliable(lay, static, M: int, method: str, n_evals: int) -> None:
    """Log (once per method, M and budget) when a layout's standard errors rest on fewer than
    :data:`STD_PAIRS_PER_PLAYER` live sampled pairs per player (see there)."""
    if not isinstance(lay, Layout) or not static.has_std:
        return
    pairs = int(np.count_nonzero(np.asarray(lay.kind) == 1)) // 2
    if pairs < STD_PAIRS_PER_PLAYER * M:
        _std_warning_once(method, M, int(n_evals), pairs, int(n_evals) + 2 * (STD_PAIRS_PER_PLAYER * M - pairs))


def bucketed_layout(est, M: int, n_evals: int, method: str) -> tuple:
    """``est.layout`` of ``n_evals`` at the bucketed length of its budget (the budgets of one bucket
    share one program), warning where its standard errors understate the error
    (:func:`warn_if_std_unreliable`). Returns ``(Layout, Static)``."""
    lay, static = est.layout(M, n_evals, n_rows=bucket(est.used_evals(M, n_evals) - 2))
    warn_if_std_unreliable(lay, static, M, method, n_evals)
    return lay, static


def variance_strata(stratum, count, fpc):
    """The strata of the standard errors, for sampled strata ``stratum [S']`` (in row order) holding
    ``count [S']`` pairs, with finite-population corrections ``fpc`` (indexed by stratum).

    A stratum of one pair has no variance estimate of its own: left alone it would add nothing, and
    a design of one pair per stratum (leverage's at M = 4096 with 512 pairs) would report a standard
    error of 0. Such strata are collapsed (the collapsed-strata estimator, conservative: differences
    between the merged strata's means count as variance): consecutive single-pair strata in twos, a
    run of odd length ending in a three, a lone one joined to the stratum before it (after it when
    it comes first). Returns ``(labels [S'], fpc)``: each group labelled by its first member, whose
    ``fpc`` becomes the group's pair-weighted mean (``fpc`` copied, the other entries unchanged).
    """
    stratum = np.asarray(stratum, np.int64).reshape(-1)
    count = np.asarray(count, np.int64).reshape(-1)
    fpc = np.array(fpc, np.float64, copy=True)
    n = len(stratum)
    group = np.arange(n)  # the index (into stratum) of each entry's group head
    i = 0
    while i < n:
        if count[i] != 1:
            i += 1
            continue
        j = i
        while j < n and count[j] == 1:
            j += 1
        run = j - i  # entries i .. j - 1 hold one pair each
        if run == 1:  # its neighbours hold two or more pairs each
            if i > 0:
                group[i] = group[i - 1]
            elif n > 1:
                group[1] = 0
        else:
            for t in range(i, j):
                group[t] = i + 2 * min((t - i) // 2, run // 2 - 1)
        i = j
    labels = stratum[group]
    for h in np.unique(group):
        members = group == h
        fpc[stratum[h]] = float(np.sum(fpc[stratum[members]] * count[members]) / np.sum(count[members]))
    return labels, fpc


def make_layout(M: int, n_rows: int, enum_groups, pairs: Pairs | None, *, mass, n_strata: int, size_p=None,
                fpc=None, distinct: bool) -> tuple[Layout, Static]:
    """Assemble a layout: the enumerated size groups ``enum_groups`` first, then the sampled ``pairs``
    (:class:`Pairs`, in row order; None: no sampled pairs)."""
    eb, er, ef, ew = _enum_rows(M, enum_groups, mass)
    E, J = len(eb), 0 if pairs is None else len(pairs.base)
    live = E + 2 * J
    if live > n_rows:
        raise ValueError(f"layout of {live} rows does not fit in {n_rows}")
    N, Jb = int(n_rows), int(n_rows) // 2
    kind = np.full(N, 2, np.int32)
    base = np.zeros(N, np.int32)
    rank = np.zeros(N, np.int32)
    flip = np.zeros(N, bool)
    pair = np.zeros(N, np.int32)
    weight = np.zeros(N, np.float64)  # float64 on the host: the program casts to floatx
    kind[:E], base[:E], rank[:E], flip[:E], weight[:E] = 0, eb, er, ef, ew
    pair_rows = np.zeros((Jb, 2), np.int32)
    pair_strata = np.full(Jb, n_strata, np.int32)
    if J:
        rows = E + 2 * np.arange(J)
        for off in (0, 1):
            kind[rows + off] = 1
            base[rows + off] = pairs.base
            rank[rows + off] = pairs.index
            flip[rows + off] = bool(off)
            pair[rows + off] = np.arange(J)
            weight[rows + off] = pairs.weight[:, off]
        pair_rows[:J] = np.stack([rows, rows + 1], 1)
        pair_strata[:J] = pairs.stratum
        runs = np.count_nonzero(np.diff(pairs.stratum)) + 1
        if runs != len(np.unique(pairs.stratum)):  # the standard errors sum each stratum as one run of slots
            raise ValueError("the sampled pairs of a stratum must be consecutive")
    fpc_arr = np.zeros(n_strata + 1, np.float64)
    if fpc is not None:
        fpc_arr[:n_strata] = fpc
    sp = np.zeros(M // 2 + 1, np.float64) if size_p is None else np.asarray(size_p, np.float64)
    lay = Layout(kind, base, rank, flip, pair, weight, pair_rows, pair_strata, fpc_arr, sp, np.int32(live))
    static = Static(N, max_unrank(M, N, distinct), J >= 2, bool(distinct), needs_iid(M, distinct))
    return lay, static


@functools.lru_cache(maxsize=None)
def max_unrank(M: int, n_rows: int, distinct: bool) -> int:
    """Largest base size unranked for a bucket: enumerable ones (a whole size fits in ``n_rows``)
    and, for ``distinct`` designs, every rankable sampled size."""
    best = 0
    for s in range(1, M // 2 + 1):
        C = math.comb(M, s)
        if C <= n_rows or (distinct and C <= MAX_RANKABLE):
            best = s
    return best


def needs_iid(M: int, distinct: bool) -> bool:
    return not distinct or math.comb(M, M // 2) > MAX_RANKABLE


def _live_subsets(sizes, M: int, key, n_live):
    """:func:`random_subsets` of the pair slots ``sizes [J]``, drawn for the ``n_live`` live slots only:
    in blocks of ``max(8, 2**16 // M)`` slots (block ``i`` from the key folded with ``i``, so a slot's
    draw does not depend on the bucket's length), a loop of ``ceil(n_live / block)`` steps; the
    padding slots stay empty."""
    J = sizes.shape[0]
    block = max(8, 2**16 // M)
    n_blocks = -(-J // block)
    sizes = jnp.concatenate([sizes, jnp.zeros(n_blocks * block - J, sizes.dtype)])

    def body(i, Zs):
        z = random_subsets(jax.lax.dynamic_slice(sizes, (i * block,), (block,)), M, key=jax.random.fold_in(key, i))
        return jax.lax.dynamic_update_slice(Zs, z, (i * block, 0))

    Zs = jnp.zeros((n_blocks * block, M), bool)
    if n_blocks == 1:
        return body(0, Zs)[:J]
    return jax.lax.fori_loop(0, (n_live + block - 1) // block, body, Zs)[:J]


def draw_sizes(p, n: int, *, key):
    """``n`` draws ``[n] int32`` from the distribution ``p [S]`` (sums to 1; zeros never drawn) by the
    inverse of its CDF: ``O(n log S)``, where ``jax.random.categorical`` (Gumbel-max) costs a log and
    a random number per size and draw (at M = 1024, 1536 x 513 of them: 7 ms of a 90 ms engine).
    Draw ``i`` depends on the key and ``i`` only, not on ``n`` (JAX's partitionable threefry)."""
    p = jnp.asarray(p, floatx())
    cdf = jnp.cumsum(p)
    u = jax.random.uniform(key, (n,), cdf.dtype) * cdf[-1]
    last = p.shape[0] - 1 - jnp.argmax(p[::-1] > 0)  # the largest size that can be drawn (rounding at 1)
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right", method="compare_all"), last).astype(jnp.int32)


def build(M: int, lay: Layout, static: Static, *, key) -> Design:
    """The coalitions of a layout, ``[n_rows, M]`` bool, in a fixed number of array operations."""
    k_size, k_sub, k_perm = jax.random.split(key, 3)
    kind, pair = lay.kind, lay.pair
    Jb = lay.pair_rows.shape[0]
    drawn = draw_sizes(lay.size_p, max(Jb, 1), key=k_size)
    base = jnp.where(lay.base >= 0, lay.base, drawn[pair]).astype(jnp.int32)
    sampled = kind == 1
    rank = lay.rank
    use_rank = kind == 0
    if static.distinct:
        half = M // 2
        ncomb = jnp.asarray(np.array([min(math.comb(M, s), MAX_RANKABLE + 1) for s in range(half + 1)], np.int32))
        n_c = ncomb[jnp.clip(base, 0, half)]
        rankable = sampled & (n_c <= MAX_RANKABLE)
        S1 = lay.fpc.shape[0]
        keys = jax.random.bits(k_perm, (S1, ROUNDS), jnp.uint32)[lay.pair_strata[pair]]
        rk = distinct_ranks(jnp.where(rankable, rank, 0), jnp.where(rankable, n_c, 1), keys)
        rank = jnp.where(rankable, rk, rank)
        use_rank = use_rank | rankable
    zu = unrank_varsize(rank, jnp.where(use_rank, jnp.minimum(base, static.max_unrank), 0), M, static.max_unrank)
    if static.iid and Jb:
        n_pairs = jnp.sum(jnp.asarray(kind) == 1) // 2
        zs = _live_subsets(base[lay.pair_rows[:, 0]], M, k_sub, n_pairs)  # [J, M], one draw per pair
        Z = jnp.where(use_rank[:, None], zu, zs[pair])
    else:
        Z = zu
    Z = (Z ^ lay.flip[:, None]) & (kind != 2)[:, None]
    aux = LayoutAux(jnp.asarray(lay.weight, floatx()), jnp.asarray(lay.pair_rows), jnp.asarray(lay.pair_strata),
                    jnp.asarray(lay.fpc, floatx()), static.has_std, lay)
    return Design(Z, aux)


def as_regression_design(design: Design, lay: Layout) -> Design:
    """A design built from a layout of exactly its live rows, with the
    :class:`~shapjax.engine.estimators.regression.RegressionAux` the regression code expects
    (enumerated rows first, then the pairs in order)."""
    kind = np.asarray(lay.kind)
    n_enum = int(np.sum(kind == 0))
    J = int(np.sum(kind == 1)) // 2
    S = lay.fpc.shape[0] - 1
    aux = RegressionAux(design.aux.weights, n_enum, jnp.asarray(np.asarray(lay.pair_strata)[:J]),
                        jnp.asarray(np.asarray(lay.fpc)[:S], floatx()))
    return Design(design.coalitions, aux)


def _slot_chunk(n_slots: int, per_slot: int, budget: int) -> int:
    """Pair slots per chunk: ``budget`` elements of per-slot work in all, at least 8, at most all."""
    return int(max(1, min(n_slots, max(8, budget // max(per_slot, 1)))))


def _fold_slots(step, init, n_slots: int, n_live, chunk: int):
    """Fold ``acc = step(acc, idx, live)`` over the pair slots ``0 .. n_live - 1`` in chunks of ``chunk``
    slots (``idx [chunk]`` clipped into range, ``live`` marks the slots below ``n_live``): a loop of
    ``ceil(n_live / chunk)`` steps, so the padding slots of a bucket cost nothing."""
    n_chunks = -(-n_slots // chunk)
    last = max(n_slots - 1, 0)
    if n_chunks == 1:
        return step(init, jnp.minimum(jnp.arange(chunk), last), jnp.arange(chunk) < n_live)

    def body(i, acc):
        slots = i * chunk + jnp.arange(chunk)
        return step(acc, jnp.minimum(slots, last), slots < n_live)

    return jax.lax.fori_loop(0, (n_live + chunk - 1) // chunk, body, init)


def gram(Z, lay, w, a, m, n_pairs, pair_rows):
    r"""The centred Gram matrix ``P Z^T W Z P`` of a layout's rows (``P = diag(a) - a a^T / m``, the
    sum-zero subspace of the active players ``a``; see :func:`shapjax.kernels.wls.constrained_wls`),
    from its structure rather than a product over all ``N`` rows:

    * enumerated rows hold whole sizes at one weight per size, and the coalitions of size ``s``
      sum to :math:`\binom{M-2}{s-1} I + \binom{M-2}{s-2} \mathbf{1}\mathbf{1}^\top`; centred,
      only :math:`\alpha P` is left, ``alpha`` a sum over the rows (``O(N)``);
    * a sampled pair is a coalition ``z`` and its complement ``1 - z``, whose centred rows are
      :math:`\pm Pz`: the pair adds :math:`(w_1 + w_2) Pz (Pz)^\top`, one product over the ``J`` live
      pairs (chunks past them skipped), half the rows of the pairs and none of the padding.
    """
    N, M = Z.shape
    dt = w.dtype
    size = jnp.where(jnp.asarray(lay.flip), M - jnp.asarray(lay.base), jnp.asarray(lay.base)).astype(dt)
    we = jnp.where(jnp.asarray(lay.kind) == 0, w, 0)
    alpha = jnp.sum(we * size * (M - size)) / (M * (M - 1))
    A = alpha * (jnp.diag(a) - jnp.outer(a, a) / m)
    Jb = pair_rows.shape[0]
    if Jb == 0:
        return A

    def pairs(acc, idx, live):
        r1, r2 = pair_rows[idx, 0], pair_rows[idx, 1]
        zt = center(Z[r1].astype(dt), a, m)
        wp = jnp.where(live, w[r1] + w[r2], 0)
        return acc + jnp.einsum("jm,j,jl->ml", zt, wp, zt)

    return _fold_slots(pairs, A, Jb, n_pairs, _slot_chunk(Jb, M, 2**20))


def solve(design, y, v_empty, v_full, active):
    r"""Constrained WLS on ``y - v_empty`` plus stratified standard errors of the sampled pairs.

    As :func:`shapjax.engine.estimators.regression.solve` (the centred system of
    :func:`shapjax.kernels.wls.constrained_wls`), with the Gram matrix from the layout's structure
    (:func:`gram`), no ``M x M`` inverse (``G z`` by triangular solves with the Cholesky factor at
    hand, :func:`shapjax.kernels.wls.apply_g`), and the work over the sampled pairs done over the
    live pairs only, in chunks (``O(J M^2)`` for ``J`` live pairs, not ``O(N M^2)``). A pair's
    coalitions are complements and ``G 1 = 0``, so its second member's ``G z`` is minus the
    first's. Under ``jit``, a caller that drops the standard errors also drops their cost: XLA
    removes the unused computation.
    """
    Z = design.coalitions
    aux: LayoutAux = design.aux
    lay: Layout = aux.layout
    w = aux.weights
    yc = y - v_empty[None, :]
    total = v_full - v_empty
    M, dt = Z.shape[1], w.dtype
    a, m = active_vector(M, active, dt)
    ones = a
    n_pairs = jnp.sum(jnp.asarray(lay.kind) == 1) // 2  # live sampled pairs: pair slots 0 .. n_pairs - 1
    Abar = gram(Z, lay, w, a, m, n_pairs, aux.pair_rows)
    fact = factor(Abar, active=active)
    Zf = Z.astype(dt) * a[None, :]
    phi = least_squares(fact, Zf, w, offset_targets(yc.astype(dt), Zf @ a, total, m), total)
    if not aux.has_std:
        return phi, None
    K, Jb, S1 = yc.shape[1], aux.pair_rows.shape[0], aux.fpc.shape[0]
    n_s = jax.ops.segment_sum(jnp.ones((Jb,), dt), aux.pair_strata, num_segments=S1)  # pairs per stratum
    # var = sum_s c_s (sum_j q_j^2 - (sum_j q_j)^2 / n_s) over the strata; a stratum of one pair has
    # no variance estimate and adds nothing
    c = jnp.where(n_s >= 2, aux.fpc * n_s / jnp.maximum(n_s - 1.0, 1.0), 0.0)
    cn = c / jnp.maximum(n_s, 1.0)
    chunk = min(_slot_chunk(Jb, M * K, 2**22), 256)  # (the run sums cost chunk flops per element)

    def pairs(acc, idx, live):
        # a stratum's pairs are one run of slots (make_layout checks it): its sum is summed run by
        # run inside the chunk (a [chunk, chunk] one-hot product, no scatter into [S, M, K]) and the
        # run still open at the chunk's end is carried into the next chunk
        cq2, var2, open_q, open_s = acc
        r1, r2 = aux.pair_rows[idx, 0], aux.pair_rows[idx, 1]
        z1 = Z[r1].astype(dt) * ones[None, :]
        z2 = Z[r2].astype(dt) * ones[None, :]
        g = apply_g(fact, z1.T).T  # [c, M] G z1 (= -G z2)
        # delta method: phi_hat - phi ~= G (b_hat - A_hat phi), residuals carry the sampling error
        u = w[r1][:, None] * (yc[r1] - z1 @ phi) - w[r2][:, None] * (yc[r2] - z2 @ phi)  # [c, K]
        q = jnp.where(live[:, None, None], g[:, :, None] * u[:, None, :], 0)  # [c, M, K] the pair's part
        st = jnp.where(live, aux.pair_strata[idx], S1 - 1)
        cq2 = cq2 + jnp.einsum("j,jmk->mk", c[st], q * q)
        new_run = jnp.concatenate([jnp.array([True]), st[1:] != st[:-1]])
        run = jnp.cumsum(new_run) - 1  # [c] run index inside the chunk
        onehot = (run[:, None] == jnp.arange(chunk)[None, :]).astype(dt)  # [slot, run]
        T = jnp.einsum("jr,jmk->rmk", onehot, q)  # [c, M, K] sum of each run
        run_s = jnp.full((chunk,), S1 - 1, jnp.int32).at[run].set(st)  # stratum of each run
        cont = st[0] == open_s  # the first run continues the carried one
        T = T.at[0].add(jnp.where(cont, open_q, 0))
        var2 = var2 + jnp.where(cont, 0.0, cn[open_s]) * open_q**2  # the carried run ended
        last = run[-1]
        closed = (jnp.arange(chunk) < last).astype(dt) * cn[run_s]
        var2 = var2 + jnp.einsum("r,rmk->mk", closed, T * T)
        return cq2, var2, T[last], run_s[last]

    zero = jnp.zeros((M, K), dt)
    cq2, var2, open_q, open_s = _fold_slots(pairs, (zero, zero, zero, jnp.int32(S1 - 1)), Jb, n_pairs, chunk)
    var_phi = cq2 - var2 - cn[open_s] * open_q**2
    return phi, jnp.sqrt(jnp.maximum(var_phi, 0.0))


__all__ = ["Layout", "Static", "LayoutAux", "Pairs", "bucket", "make_layout", "pairs_of_strata", "build", "solve", "max_unrank"]
