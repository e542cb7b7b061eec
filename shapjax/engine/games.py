"""Cooperative games (value functions) and their chunked, compiled evaluation.

A game over ``M`` players is a JAX-traceable ``value_fn(coalitions [N, M] bool)
-> [N]`` or ``[N, K]``. :func:`evaluate` runs it over many coalitions in
chunks of ``batch_size`` rows inside one compiled program (``lax.map`` over
chunks, not a Python loop).

The test games at the bottom have known Shapley values and are used by the
test-suite and the accuracy benchmarks.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.api import keyword_key
from shapjax._util.checks import check_output_dtype
from shapjax._util.precision import floatx

ValueFn = Callable[[jax.Array], jax.Array]


def auto_batch_size(n_rows: int, row_cost: int = 1, *, budget: int | None = None) -> int:
    """Pick a chunk size: at most ``budget`` elements of work per chunk, a power of two, <= n_rows.

    The default budget depends on the backend: ``2**22`` elements on
    accelerators (large chunks keep a GPU busy), ``2**18`` on CPU with at
    least 16 rows per chunk. On CPU, chunks whose activations overflow the
    caches run slower per image: in ``explain`` the 28x28 small CNN ran 2-2.5x
    slower with chunks of 512-2048 images (2048 was the old ``2**22``
    default) than with 128-256, and ResNet-18 at 32x32 ran ~15% slower with
    chunks of 128-512 than with 16-64 while its memory grew 3x (the chunk-size
    table of ``benchmarks/results/SUMMARY.md``).
    """
    n_rows = max(int(n_rows), 1)
    min_rows = 1
    if budget is None:
        cpu = jax.default_backend() == "cpu"
        budget = (1 << 18) if cpu else (1 << 22)
        min_rows = 16 if cpu else 1
    bs = max(1, budget // max(int(row_cost), 1))
    bs = max(1 << (bs.bit_length() - 1), min_rows)
    return int(min(bs, 1 << (n_rows - 1).bit_length(), 4096))


def output_spec(value_fn: ValueFn, n_players: int, batch_size: int):
    """Trace ``value_fn`` abstractly and check it returns ``[n]`` or ``[n, K]`` floats.

    Returns ``K`` or ``None`` for a scalar game.
    """
    spec = jax.ShapeDtypeStruct((batch_size, n_players), jnp.bool_)
    try:
        out = jax.eval_shape(value_fn, spec)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise TypeError(
            f"value_fn could not be traced on coalitions of shape {(batch_size, n_players)} bool: "
            f"{type(e).__name__}: {e}"
        ) from e
    shape = getattr(out, "shape", None)
    if shape is not None and hasattr(out, "dtype"):
        check_output_dtype(out.dtype, "value_fn")
    if shape is None or len(shape) not in (1, 2) or shape[0] != batch_size:
        raise ValueError(
            f"value_fn must return an array of shape [N] or [N, K] for coalitions [N, M]; "
            f"for N={batch_size} it returned {shape if shape is not None else type(out).__name__}"
        )
    return None if len(shape) == 1 else int(shape[1])


def evaluate(value_fn: ValueFn, coalitions: jax.Array, *, batch_size: int, unroll: bool = False,
             n_live=None) -> jax.Array:
    """Evaluate ``value_fn`` on ``coalitions [N, M]`` in chunks of ``batch_size`` rows.

    The chunks run under ``jax.lax.map`` so the whole evaluation is one
    compiled loop whose memory is bounded by one chunk. With ``n_live`` (traced
    int: only the first ``n_live`` rows matter, a bucketed design) chunks past it
    are skipped (``lax.cond``) and their rows read 0.

    Returns:
      ``[N, K]`` float32 (float64 under ``precision="float64"``; a scalar game gets ``K = 1``).
    """
    N, M = coalitions.shape
    bs = int(min(batch_size, max(N, 1)))

    def call(z):
        out = jnp.asarray(value_fn(z), floatx())
        return out[:, None] if out.ndim == 1 else out

    if N == 0:
        K = output_spec(value_fn, M, 1) or 1
        return jnp.zeros((0, K), floatx())
    if N <= bs:
        return call(coalitions)
    n_chunks = -(-N // bs)
    pad = n_chunks * bs - N
    z = jnp.concatenate([coalitions, jnp.broadcast_to(coalitions[-1:], (pad, M))]) if pad else coalitions
    if unroll:  # being differentiated: see shapjax._util.chunks.under_autodiff
        return jnp.concatenate([call(z[i * bs:(i + 1) * bs]) for i in range(n_chunks)])[:N]
    if n_live is None:
        out = jax.lax.map(call, z.reshape(n_chunks, bs, M))
    else:
        K = output_spec(value_fn, M, bs) or 1
        skip = lambda c: jnp.zeros((bs, K), jnp.float32)  # noqa: E731
        out = jax.lax.map(lambda a: jax.lax.cond(a[1] * bs < n_live, lambda c: call(c), skip, a[0]),
                          (z.reshape(n_chunks, bs, M), jnp.arange(n_chunks)))
    return out.reshape(n_chunks * bs, -1)[:N]


# ---------------------------------------------------------------------------
# Games with known Shapley values (tests and benchmarks).
# ---------------------------------------------------------------------------

def additive_game(weights) -> ValueFn:
    """``v(S) = sum_{i in S} w_i`` (``weights [M]`` or ``[M, K]``); Shapley value = ``w``."""
    w = jnp.asarray(weights, jnp.float32)
    return lambda z: z.astype(jnp.float32) @ w


def unanimity_game(members, n_players: int) -> ValueFn:
    """``v(S) = 1`` if ``T subset S`` else 0; Shapley value ``1/|T|`` on ``T``, 0 elsewhere."""
    t = np.zeros(int(n_players), bool)
    t[list(members)] = True
    tj = jnp.asarray(t)
    return lambda z: jnp.all(z | ~tj, axis=-1).astype(jnp.float32)


def sum_of_unanimity_game(n_players: int, *, key, n_terms: int = 30, max_order: int = 3, n_outputs: int = 0):
    """A sum of unanimity games ``v(S) = sum_b c_b [T_b subset S]`` with random ``T_b`` and ``c_b``.

    ``|T_b|`` is uniform on ``1..max_order`` and ``c_b`` standard normal; the Shapley
    value is ``sum_b c_b / |T_b|`` on the members of ``T_b``. Returns ``(value_fn, phi)``
    with ``phi [M]`` (``[M, K]`` and ``[N, K]`` values when ``n_outputs > 0``).
    """
    M = int(n_players)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().astype(np.uint32))
    K = max(int(n_outputs), 1)
    U = np.zeros((int(n_terms), M), bool)
    for b in range(int(n_terms)):
        U[b, rng.choice(M, int(rng.integers(1, max_order + 1)), replace=False)] = True
    c = rng.standard_normal((int(n_terms), K)).astype(np.float32)
    phi = (U / U.sum(1, keepdims=True)).T.astype(np.float64) @ c.astype(np.float64)  # [M, K]
    Uj, cj = jnp.asarray(U), jnp.asarray(c)

    def value_fn(z):
        hit = jnp.all(z[:, None, :] | ~Uj[None], axis=-1).astype(jnp.float32)  # [N, terms]
        out = hit @ cj
        return out if n_outputs else out[:, 0]

    return value_fn, (phi if n_outputs else phi[:, 0])


def weighted_voting_game(weights, quota: float) -> ValueFn:
    """``v(S) = 1`` if ``sum_{i in S} w_i >= quota`` else 0."""
    w = jnp.asarray(weights, jnp.float32)
    return lambda z: (z.astype(jnp.float32) @ w >= quota).astype(jnp.float32)


@keyword_key
def random_network_game(n_players: int, *, key, n_outputs: int = 3, hidden: int = 16) -> ValueFn:
    """A small random two-layer network on the coalition vector: a non-additive game with interactions."""
    k1, k2, k3 = jax.random.split(key, 3)
    W1 = jax.random.normal(k1, (n_players, hidden)) / np.sqrt(n_players)
    b1 = jax.random.normal(k2, (hidden,)) * 0.5
    W2 = jax.random.normal(k3, (hidden, n_outputs)) / np.sqrt(hidden)
    return lambda z: jnp.tanh(z.astype(jnp.float32) @ W1 + b1) @ W2


def brute_force_shapley(value_fn: ValueFn, n_players: int) -> np.ndarray:
    """Shapley values by the textbook formula, in float64 NumPy, independent of the estimators.

    Row ``r`` of the enumeration holds player ``j`` iff bit ``j`` of ``r`` is
    set; for each player the pairs ``(S, S + i)`` are found by bit arithmetic
    and weighted by ``|S|! (M - |S| - 1)! / M!``. Returns ``[M]`` or ``[M, K]``.
    Only for small M (it evaluates all 2**M coalitions at once).
    """
    M = int(n_players)
    r = np.arange(2**M)
    Z = ((r[:, None] >> np.arange(M)[None, :]) & 1).astype(bool)
    v = np.asarray(value_fn(jnp.asarray(Z)), dtype=np.float64)
    size = Z.sum(1)
    fact = [math.factorial(k) for k in range(M + 1)]
    phi = np.zeros((M,) + v.shape[1:])
    for i in range(M):
        without = r[~Z[:, i]]
        w = np.array([fact[s] * fact[M - s - 1] / fact[M] for s in size[without]])
        d = v[without | (1 << i)] - v[without]
        phi[i] = np.tensordot(w, d, axes=1)
    return phi
