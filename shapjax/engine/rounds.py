r"""To-tolerance estimation: evaluate in rounds until the relative standard error is under ``tol``.

Used by ``shapley(..., tol=)`` and ``explain(..., tol=)``. Every round is the estimator's own design
at a fixed round budget (the same shapes every round, so the round is compiled once) drawn with the
key ``fold_in(key, r)``; the rounds run in a ``lax.while_loop`` inside the one compiled program, so
the mode also works under the caller's ``jax.jit`` and ``jax.vmap`` (a vmapped loop runs until every
lane has stopped; each lane keeps its own result).

**Combining rounds.** For the unbiased sampling estimators (the permutation family) the estimate is
the mean of the round estimates. For the regression estimators (KernelSHAP, Leverage SHAP) the
rounds' normal equations are averaged and solved once: the solution of the pooled design, whose
ratio-estimator bias shrinks with the whole budget rather than with the round's. Coalition sizes a
regression design enumerates are the same every round: they are evaluated in the first round only
and their values reused. With independent rounds the variance of the combined estimate is

.. math:: \widehat{\operatorname{Var}}(\hat\phi) = \frac{1}{R^2} \sum_{r=1}^{R} \hat s_r^2,

where :math:`\hat s_r` is the round's own standard error (the estimator's ``std``).

**The stopping rule.** After round :math:`R` (at least two rounds when the budget allows) the
*relative standard error* is

.. math::

    \mathrm{rse} = \max_{g, k}\; \frac{\max_i \hat\sigma_{g,i,k}}
                   {\max\big(|v_g(N)_k - v_g(\emptyset)_k|,\ \lVert\hat\phi_{g,\cdot,k}\rVert_2\big)},

the largest standard error of any player, relative to the size of that game's (``g``: image)
explained output ``k``; the loop stops when ``rse <= tol`` or when another round would exceed
``n_evals`` evaluations. Both the evaluations spent and the final ``rse`` are returned.

A design whose round enumerates every coalition (``round_evals >= 2**M`` for a regression) has no
sampling error: one round is spent and returned (``rse = 0``).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from shapjax.engine.estimators import regression

#: The smallest default round (evaluations, the empty and full coalitions included).
MIN_ROUND = 256


class RoundsResult(NamedTuple):
    """``values``, ``std`` ``[G, M, K]``, ``spent`` (int32 evaluations per game), ``rse`` and ``rounds``."""

    values: jax.Array
    std: object
    spent: jax.Array
    rse: jax.Array
    rounds: jax.Array


def check_tol(tol, est, n_players: int, n_evals: int, round_evals, *, players: str) -> tuple[float, int]:
    """Validate ``tol`` and the round budget; returns ``(tol, round_evals)``."""
    import math

    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol={tol!r}: expected a positive relative standard error, e.g. tol=0.01")
    if est.estimate is not None or est.design is None:
        raise ValueError(f"tol= needs a sampling method with standard errors; method={est.name!r} has none "
                         "(use kernel, leverage, permutation, antithetic or stratified)")
    if round_evals is None:
        round_evals = default_round_evals(est, n_players, n_evals)
    if isinstance(round_evals, bool) or not isinstance(round_evals, int) or round_evals < 1:
        raise ValueError(f"round_evals={round_evals!r}: expected a positive int (evaluations per round)")
    need = est.min_evals(n_players)
    if round_evals < need:
        raise ValueError(f"round_evals={round_evals} is too small for method={est.name!r} with {players}: "
                         f"a round needs at least {need} evaluations")
    if round_evals > n_evals:
        raise ValueError(f"round_evals={round_evals} exceeds n_evals={n_evals} (the most evaluations tol= may spend)")
    return float(tol), int(round_evals)


def default_round_evals(est, n_players: int, n_evals: int) -> int:
    """``min(n_evals, max(256, 4 x the method's minimum budget))``: rounds large enough for a stable
    standard error, small enough to stop close to the tolerance."""
    return int(min(n_evals, max(MIN_ROUND, 4 * est.min_evals(n_players))))


def _stacked(Y, v0, v1):
    """G games sharing one design as the columns of one problem: ``[N, G*K]``, ``[G*K]``, ``[G*K]``."""
    G, N, K = Y.shape
    return jnp.moveaxis(Y, 0, 1).reshape(N, G * K), v0.reshape(-1), v1.reshape(-1)


def _unstack(a, G: int, K: int):
    return None if a is None else jnp.moveaxis(a.reshape(a.shape[0], G, K), 1, 0)


def solve_games(est, d, Y, v0, v1, active):
    """The estimator's ``solve`` for G games ``Y [G, N, K]``: ``(values, std)`` ``[G, M, K]``.

    Without inactive players the games are stacked as columns (one factorisation for all, as in
    ``explain``); with them, one solve per game (vmap).
    """
    G, _, K = Y.shape
    if active is None:
        phi, std = est.solve(d, *_stacked(Y, v0, v1), None)
        return _unstack(phi, G, K), _unstack(std, G, K)
    return jax.vmap(lambda y, a, b, act: est.solve(d, y, a, b, act))(Y, v0, v1, active)


def _normal(d, Y, v0, v1, active):
    """A regression round's centred normal equations: ``(Abar [M, M], r [M, G*K])`` stacked, or per game ``[G, ...]``."""
    if active is None:
        y, a, b = _stacked(Y, v0, v1)
        return regression.normal_stats(d, y, a, b, None)
    return jax.vmap(lambda y, a, b, act: regression.normal_stats(d, y, a, b, act))(Y, v0, v1, active)


def _from_normal(S, v0, v1, active):
    G, K = v0.shape
    if active is None:
        return _unstack(regression.solve_stats(S, v0.reshape(-1), v1.reshape(-1), None), G, K)
    return jax.vmap(regression.solve_stats)(S, v0, v1, active)


def _is_regression(est, d) -> bool:
    return isinstance(d.aux, regression.RegressionAux) and est.solve is regression.solve


def relative_standard_error(phi, std, v0, v1):
    """The ``rse`` of the module docstring for ``phi, std [G, M, K]``, ``v0, v1 [G, K]`` (a scalar)."""
    scale = jnp.maximum(jnp.abs(v1 - v0), jnp.sqrt(jnp.sum(phi**2, axis=1)))  # [G, K]
    top = jnp.max(std, axis=1)
    ratio = jnp.where(scale > 0, top / jnp.where(scale > 0, scale, 1.0), jnp.where(top > 0, jnp.inf, 0.0))
    return jnp.max(ratio)


def run(est, *, key, n_players: int, round_evals: int, n_evals: int, tol,
        eval_rows: Callable, v0, v1, active=None) -> RoundsResult:
    """Rounds of ``est`` until ``rse <= tol`` or the budget ``n_evals`` (traceable; see the module doc).

    Args:
      est: a design/solve :class:`~shapjax.engine.estimators.base.Estimator`.
      eval_rows: ``Z [n, M] bool -> [G, n, K]`` game values of coalitions for the G games.
      v0, v1: ``[G, K]`` values of the empty and full coalitions (already evaluated: counted here).
      active: None or ``[G, M]`` bool (players present in each game).
      tol: a float or a traced scalar (a new tolerance does not recompile).
    """
    M = int(n_players)
    d0 = est.design(M, round_evals, key=jax.random.fold_in(key, 0))
    N = d0.coalitions.shape[0]
    pooled = _is_regression(est, d0)
    n_enum = int(d0.aux.n_enum) if pooled else 0
    Y0 = eval_rows(d0.coalitions)
    phi0, std0 = solve_games(est, d0, Y0, v0, v1, active)
    one = jnp.int32(1)
    if std0 is None:
        if (pooled and n_enum == N) or est.name == "exact":  # every coalition enumerated: nothing to estimate
            zero = jnp.zeros((), phi0.dtype)
            return RoundsResult(phi0, jnp.zeros_like(phi0), jnp.int32(N + 2), zero, one)
        raise ValueError(f"tol= needs standard errors, and method={est.name!r} reports none at "
                         f"round_evals={round_evals}; use kernel, leverage, permutation, antithetic or stratified")
    rows_next = N - n_enum
    max_rounds = 1 + max(0, (n_evals - 2 - N) // rows_next) if rows_next > 0 else 1
    min_rounds = min(2, max_rounds)
    Y_enum = Y0[:, :n_enum]

    if pooled:  # average the normal equations, solve once
        stats_fn = lambda d, Y: _normal(d, Y, v0, v1, active)  # noqa: E731
        finish = lambda S: _from_normal(S, v0, v1, active)  # noqa: E731
    else:  # average the round estimates
        stats_fn = lambda d, Y: solve_games(est, d, Y, v0, v1, active)[0]  # noqa: E731
        finish = lambda S: S  # noqa: E731

    def combine(S, V, r):
        rf = r.astype(V.dtype)
        phi = finish(jax.tree_util.tree_map(lambda a: a / rf, S))
        std = jnp.sqrt(V) / rf
        return phi, std

    S0 = stats_fn(d0, Y0)
    V0 = std0**2
    rse0 = relative_standard_error(*combine(S0, V0, one), v0, v1)

    def cond(c):
        r, _, _, rse = c
        return (r < max_rounds) & ((r < min_rounds) | (rse > tol))

    def body(c):
        r, S, V, _ = c
        d = est.design(M, round_evals, key=jax.random.fold_in(key, r))
        Y = jnp.concatenate([Y_enum, eval_rows(d.coalitions[n_enum:])], axis=1)
        _, std_r = solve_games(est, d, Y, v0, v1, active)
        S = jax.tree_util.tree_map(jnp.add, S, stats_fn(d, Y))
        V = V + std_r**2
        rse = relative_standard_error(*combine(S, V, r + 1), v0, v1)
        return r + 1, S, V, rse

    R, S, V, rse = jax.lax.while_loop(cond, body, (one, S0, V0, rse0))
    phi, std = combine(S, V, R)
    spent = 2 + N + (R - 1) * rows_next
    return RoundsResult(phi, std, spent.astype(jnp.int32), rse, R)
