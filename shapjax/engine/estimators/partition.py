r"""Owen values over a binary partition tree (shap's PartitionExplainer idea).

Players are leaves of a binary hierarchy (for images: a recursive spatial
split of the segments). The Owen value splits each node's worth between its
two children as a two-player Shapley game played inside every context of the
higher levels. Starting from the root task ``(context = {}, v({}), v(N))`` a
task on node ``n`` with children ``L, R`` evaluates ``v(ctx + L)`` and
``v(ctx + R)`` and spawns four half-weight tasks

.. math::

    (L: ctx \to ctx{+}L),\ (R: ctx{+}L \to ctx{+}L{+}R),\
    (L: ctx{+}R \to ctx{+}L{+}R),\ (R: ctx \to ctx{+}R),

whose weighted worths add up to the parent's: efficiency holds at every step.
Tasks are processed level by level; when the budget cannot expand every task
of a level, the ones with the largest ``weight * max|worth|`` are refined first
(``lax.top_k``) and the rest are spread uniformly over their leaves. With a
budget covering the whole tree the result is the exact Owen value, which for an
additive game equals the Shapley value.

Everything has static shapes (the schedule of tasks per level is computed from
the budget and the tree's depth profile), so it runs under ``jit`` and
``vmap``.

References:
  Owen, G. (1977). Values of games with a priori unions. In Mathematical
  Economics and Game Theory.
  Lundberg, S. M. et al. (2020). From local explanations to global
  understanding with explainable AI for trees. Nature Machine Intelligence
  (partition/Owen explanations in the shap library).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.precision import floatx
from shapjax.engine.estimators.base import Estimator


class Tree(NamedTuple):
    """Binary hierarchy over ``M`` players (for images see
    :func:`shapjax.image.hierarchy.partition_tree`, which has the same layout).

    Nodes ``0..M-1`` are the leaves (player ids), internal nodes are
    ``M..2M-2`` and the root is ``2M-2``. ``left[i]``/``right[i]`` are the
    children of internal node ``M + i``; ``members[n]`` is the set of players
    under node ``n``.
    """

    left: object  # [M-1] int32
    right: object  # [M-1] int32
    members: object  # [2M-1, M] bool


def _build(groups_fn, ids, M):
    left, right, members = [], [], np.zeros((2 * M - 1, M), bool)
    members[np.arange(M), np.arange(M)] = True

    def rec(items):
        if len(items) == 1:
            return int(items[0])
        a, b = groups_fn(items)
        ln, rn = rec(a), rec(b)
        node = M + len(left)
        left.append(ln)
        right.append(rn)
        members[node] = members[ln] | members[rn]
        return node

    rec(np.asarray(ids))
    return Tree(np.asarray(left, np.int32), np.asarray(right, np.int32), members)


def balanced_tree(n_players: int) -> Tree:
    """Recursive halving of players ``0..M-1`` in index order."""
    M = int(n_players)
    return _build(lambda it: (it[: len(it) // 2], it[len(it) // 2 :]), np.arange(M), M)


def _internal_per_depth(tree: Tree, M: int):
    depth = {2 * M - 2: 0} if M > 1 else {0: 0}
    counts = []
    stack = [2 * M - 2] if M > 1 else []
    while stack:
        n = stack.pop()
        d = depth[n]
        while len(counts) <= d:
            counts.append(0)
        counts[d] += 1
        for ch in (int(tree.left[n - M]), int(tree.right[n - M])):
            depth[ch] = d + 1
            if ch >= M:
                stack.append(ch)
    return counts


def schedule(n_players: int, n_evals: int, *, tree: Tree | None = None):
    """Static number of tasks expanded at each level: ``[k_0, k_1, ...]``."""
    M = int(n_players)
    t = tree if tree is not None and not isinstance(tree.left, jax.core.Tracer) else balanced_tree(M)
    caps = _internal_per_depth(t, M)
    budget, T, ks = int(n_evals) - 2, 1, []
    for d, n_int in enumerate(caps):
        k = min(T, budget // 2, (2**d) * n_int)
        if k <= 0:
            break
        ks.append(k)
        budget -= 2 * k
        T = 4 * k
    return ks


def estimate(eval_fn, n_players: int, n_evals: int, *, key, tree: Tree | None = None, ks=None):
    """Owen values of the game ``eval_fn([n, M] bool) -> [n, K]``.

    Returns ``(values [M, K], None, v_empty [K], v_full [K])``.
    """
    del key  # deterministic given the budget
    M = int(n_players)
    if tree is None:
        tree = balanced_tree(M)
    if ks is None:
        ks = schedule(M, n_evals, tree=tree)
    left, right = jnp.asarray(tree.left), jnp.asarray(tree.right)
    members = jnp.asarray(tree.members)
    ends = eval_fn(jnp.stack([jnp.zeros((M,), bool), jnp.ones((M,), bool)]))
    v0, v1 = ends[0], ends[1]
    K = v0.shape[-1]
    sizes = members.sum(1).astype(v0.dtype)

    m00 = jnp.zeros((1, M), bool)
    f00, f11 = v0[None], v1[None]
    node = jnp.full((1,), 2 * M - 2 if M > 1 else 0, jnp.int32)
    w = jnp.ones((1,), floatx())
    phi = jnp.zeros((M, K), v0.dtype)

    def spread(phi, node, w, f00, f11, mask):
        contrib = (w * mask)[:, None] * (f11 - f00)
        share = members[node].astype(jnp.float32) / sizes[node][:, None]
        return phi + jnp.einsum("tm,tk->mk", share, contrib)

    for k in ks:
        T = node.shape[0]
        internal = node >= M
        prio = jnp.where(internal, w * jnp.max(jnp.abs(f11 - f00), axis=-1), -jnp.inf)
        _, sel = jax.lax.top_k(prio, k)
        chosen = jnp.zeros((T,), bool).at[sel].set(True)
        phi = spread(phi, node, w, f00, f11, (~chosen).astype(w.dtype))
        n_s, w_s, c00, c11, g00 = node[sel], w[sel], f00[sel], f11[sel], m00[sel]
        exp = n_s >= M
        phi = spread(phi, n_s, w_s, c00, c11, (~exp).astype(w.dtype))
        idx = jnp.clip(n_s - M, 0, max(M - 2, 0))
        L = jnp.where(exp, left[idx], n_s)
        R = jnp.where(exp, right[idx], n_s)
        m10, m01 = g00 | members[L], g00 | members[R]
        f = eval_fn(jnp.concatenate([m10, m01]))
        f10, f01 = f[:k], f[k:]
        wc = jnp.where(exp, w_s / 2, 0.0)
        m00 = jnp.concatenate([g00, m10, m01, g00])
        f00 = jnp.concatenate([c00, f10, f01, c00])
        f11 = jnp.concatenate([f10, c11, c11, f01])
        node = jnp.concatenate([L, R, L, R])
        w = jnp.concatenate([wc, wc, wc, wc])
    phi = spread(phi, node, w, f00, f11, jnp.ones_like(w))
    return phi, None, v0, v1


def used_evals(M, n_evals, **options):
    return 2 + 2 * sum(schedule(M, n_evals, tree=options.get("tree")))


ESTIMATOR = Estimator(
    name="partition",
    min_evals=lambda M: 2,
    used_evals=used_evals,
    estimate=estimate,
    # Owen values: exact for additive games, 4-69 % away from the Shapley values of
    # interacting games at any budget (benchmarks/results/accuracy.md).
    estimates="owen",
)
