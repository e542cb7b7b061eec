"""Chunked evaluation: ``lax.map`` / ``lax.scan`` over ``batch_size`` rows at a time."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from shapjax._util.checks import _check_pos_int

DEFAULT_BATCH_SIZE = 256  # model inputs per chunk when ``batch_size=None``


def _batch(batch_size) -> int:
    return DEFAULT_BATCH_SIZE if batch_size is None else _check_pos_int(batch_size, "batch_size")


def _chunks(xs, bs: int):
    """Pad the leading axis of every leaf of ``xs`` to a multiple of ``bs`` and reshape."""
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    bs = max(1, min(bs, n))
    n_chunks = -(-n // bs)
    pad = n_chunks * bs - n

    def f(a):
        if pad:
            a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)])
        return a.reshape(n_chunks, bs, *a.shape[1:])

    return n, n_chunks, bs, jax.tree_util.tree_map(f, xs)


def _map_chunks(fn: Callable, xs, batch_size: int):
    """``fn`` over the leading axis of ``xs``, ``batch_size`` rows per call (lax.map)."""
    n, n_chunks, bs, xs_c = _chunks(xs, batch_size)
    if n_chunks == 1:
        return fn(jax.tree_util.tree_map(lambda a: a[0, :n], xs_c))
    out = jax.lax.map(fn, xs_c)
    return jax.tree_util.tree_map(lambda a: a.reshape(n_chunks * bs, *a.shape[2:])[:n], out)


def _sum_chunks(fn: Callable, xs, batch_size: int, init: jax.Array) -> jax.Array:
    """``init.at[idx].add(contrib)`` over chunks, where ``fn(chunk) -> (idx, contrib)``.

    Only one chunk of contributions is alive at a time (lax.scan).
    """
    n, n_chunks, bs, xs_c = _chunks(xs, batch_size)
    valid = (jnp.arange(n_chunks * bs) < n).reshape(n_chunks, bs)

    def body(acc, inp):
        chunk, ok = inp
        idx, c = fn(chunk)
        c = jnp.where(ok.reshape((-1,) + (1,) * (c.ndim - 1)), c, 0)
        return acc.at[idx].add(c), None

    if n_chunks == 1:
        return body(init, (jax.tree_util.tree_map(lambda a: a[0], xs_c), valid[0]))[0]
    return jax.lax.scan(body, init, (xs_c, valid))[0]


def _pick(out, k):
    return jnp.take_along_axis(out, k[:, None], axis=1)[:, 0]


def under_autodiff(*trees) -> bool:
    """True when any leaf is being differentiated (a JVP/linearize tracer, possibly under vmap).

    The chunked loops of shapjax unroll then: on XLA:CPU the backward pass of a convolution inside a
    rolled loop (``lax.map`` / ``lax.scan``) runs 20-40x slower than the same work unrolled
    (``benchmarks/results/grad_through_explain.md``). Forward-only calls keep the rolled loop, whose
    compile time does not grow with the number of chunks.
    """
    for leaf in jax.tree_util.tree_leaves(trees):
        x = leaf
        for _ in range(8):
            if not isinstance(x, jax.core.Tracer):
                break
            name = type(x).__name__
            if name in ("JVPTracer", "LinearizeTracer"):
                return True
            x = getattr(x, "val", None) if hasattr(x, "val") else getattr(x, "primal", None)
    return False
