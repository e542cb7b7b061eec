"""`shapjax.shapley`: Shapley values of any cooperative game, one compiled program."""
from __future__ import annotations

import logging
from functools import partial
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from shapjax._util.checks import check_int, check_key, check_memory, is_traced
from shapjax._util.chunks import under_autodiff
from shapjax._util.cpu_threads import quiet_lapack
from shapjax._util.modelfn import join_model, split_model
from shapjax._util.precision import as_device_arrays, check_precision, floatx, precision_scope
from shapjax.engine import rounds
from shapjax.engine.estimators import get_estimator
from shapjax.engine.estimators import layout as layout_mod
from shapjax.engine.estimators.partition import Tree, schedule
from shapjax.engine.games import auto_batch_size, evaluate, output_spec


logger = logging.getLogger(__name__)


@struct.dataclass
class ShapleyResult:
    """Result of :func:`shapley` (a pytree).

    Attributes:
      values: ``[M]`` or ``[M, K]`` estimated values.
      base_value: ``[]`` or ``[K]``, v(empty).
      full_value: ``[]`` or ``[K]``, v(all players).
      std: standard errors shaped like ``values`` where the estimator defines
        them, else None.
      n_evals: game evaluations actually spent (static). With ``tol=`` inside your own
        ``jax.jit`` / ``jax.vmap`` the count is not known when the program is traced: ``n_evals`` is
        then the most it may spend and ``evals`` holds the count.
      method: the estimator's name (static).
      evals: with ``tol=``, the evaluations spent (int32 array; None otherwise).
      rse: with ``tol=``, the relative standard error reached (see :mod:`shapjax.engine.rounds`).
    """

    values: jax.Array
    base_value: jax.Array
    full_value: jax.Array
    std: Any
    evals: Any = None
    rse: Any = None
    n_evals: int = struct.field(pytree_node=False, default=0)
    method: str = struct.field(pytree_node=False, default="")


def check_budget(est, n_players: int, n_evals: int, players: str) -> None:
    """Raise a ValueError naming the minimum when ``n_evals`` is below the estimator's need."""
    need = est.min_evals(n_players)
    if n_evals < need:
        raise ValueError(
            f"n_evals={n_evals} is too small for method={est.name!r} with {players}: "
            f"it needs at least {need} evaluations (the empty and full coalitions included)"
        )
    if est.name == "exact":
        est.design(n_players, n_evals, key=None)  # raises above the enumeration limit


def check_design_memory(est, n_players: int, n_evals: int, *, n_games: int, n_outputs: int, players: str) -> None:
    """Refuse a budget whose design and game values cannot fit in memory (before it is built).

    The design is ``rows x M`` bool plus a float weight per row; the values are
    ``n_games x rows x K`` float32 (the chunked model activations come on top); estimators whose
    solve grows faster (``Estimator.solve_bytes``: polyshap, regmc) add its peak per game.
    """
    rows = 2**n_players if est.name == "exact" else est.used_evals(n_players, n_evals) if n_players > 1 else 2
    nbytes = rows * (n_players + 8) + 4 * rows * max(n_outputs, 1) * max(n_games, 1)
    if est.solve_bytes is not None and n_players > 1:  # the polynomial fits' N x N systems, one per game
        nbytes += est.solve_bytes(n_players, n_evals, n_outputs=max(n_outputs, 1)) * max(n_games, 1)
    check_memory(nbytes, f"method={est.name!r} with {players} and n_evals={n_evals:,} ({rows:,} coalitions)")


def raise_not_finite(what: str, v0, v1, method: str, n_evals: int):
    """Explain why estimates are not finite: the game's values, or a singular estimator."""
    ends_ok = bool(jnp.all(jnp.isfinite(v0))) and bool(jnp.all(jnp.isfinite(v1)))
    if ends_ok:
        raise ValueError(
            f"the estimates of method={method!r} are not finite with n_evals={n_evals}: either {what} returned "
            "NaN or infinite values on some coalitions, or the budget is too small for the design; "
            "check the outputs on masked inputs or raise n_evals"
        )
    raise ValueError(
        f"{what} returned NaN or infinite values: v(empty)={np.asarray(v0)}, v(all)={np.asarray(v1)}"
    )


def with_ends(coalitions):
    """Prepend the empty and full coalitions (rows 0 and 1) to a design ``[N, M]``."""
    M = coalitions.shape[1]
    return jnp.concatenate([jnp.zeros((1, M), bool), jnp.ones((1, M), bool), coalitions])


def _run_design(est, key, n_players, n_evals, eval_fn, *, solve_active=None):
    """Design, evaluate (empty and full first), solve: the non-adaptive pipeline for one game."""
    d = est.design(n_players, n_evals, key=key)
    V = eval_fn(with_ends(d.coalitions))
    phi, std = est.solve(d, V[2:], V[0], V[1], solve_active)
    return phi, std, V[0], V[1]


@partial(jax.jit, static_argnames=("game", "n_players", "method", "n_evals", "batch_size", "ks", "unroll", "precision",
                                   "round_evals", "layout_static"))
def _shapley_impl(key, tree, game_data, tol, layout=None, *, game, n_players, method, n_evals, batch_size, ks,
                  unroll=False, precision="float32", round_evals=None, layout_static=None):
    del precision  # a static argument only: float32 and float64 programs are two cache entries (see floatx)
    est = get_estimator(method)
    value_fn = join_model(game, game_data)
    M = n_players
    eval_fn = lambda Z: evaluate(value_fn, Z, batch_size=batch_size, unroll=unroll)  # noqa: E731
    if M == 1:
        V = eval_fn(jnp.array([[False], [True]]))
        return (V[1] - V[0])[None], None, V[0], V[1], None
    if tol is not None:  # rounds until the relative standard error is under tol (shapjax.engine.rounds)
        V = eval_fn(with_ends(jnp.zeros((0, M), bool)))
        r = rounds.run(est, key=key, n_players=M, round_evals=round_evals, n_evals=n_evals, tol=tol,
                       eval_rows=lambda Z: eval_fn(Z)[None], v0=V[:1], v1=V[1:2])
        return r.values[0], r.std[0], V[0], V[1], (r.spent, r.rse)
    if layout is not None:  # a bucketed design: every budget of the bucket runs this program
        d = est.build(M, layout, layout_static, key=key)
        V = evaluate(value_fn, with_ends(d.coalitions), batch_size=batch_size, n_live=layout.n_live + 2)
        phi, std = est.layout_solve(d, V[2:], V[0], V[1], None)
        return phi, std, V[0], V[1], None
    if est.estimate is not None:
        return (*est.estimate(eval_fn, M, n_evals, key=key, tree=tree, ks=ks), None)
    return (*_run_design(est, key, M, n_evals, eval_fn), None)


def shapley(
    value_fn: Callable[[jax.Array], jax.Array],
    n_players: int,
    *,
    key,
    method: str = "kernel",
    n_evals: int = 2048,
    batch_size: Optional[int] = None,
    tree: Optional[Tree] = None,
    precision: str = "float32",
    tol: Optional[float] = None,
    round_evals: Optional[int] = None,
) -> ShapleyResult:
    """Estimate the Shapley values of a cooperative game.

    Args:
      value_fn: JAX-traceable ``coalitions [N, M] bool -> [N]`` or ``[N, K]``
        (True = player present). Evaluated in chunks of ``batch_size`` rows
        inside one compiled program.
      n_players: M, the number of players (>= 1).
      key: JAX PRNG key; the same key gives the same result.
      method: ``"exact"`` (2**M evaluations, M <= 20), ``"kernel"``
        (KernelSHAP), ``"leverage"`` (Leverage SHAP), ``"permutation"``,
        ``"antithetic"``, ``"stratified"``, ``"partition"`` (Owen values over
        ``tree``), or the non-Shapley baselines ``"lime"`` and ``"occlusion"``.
      n_evals: evaluation budget, the empty and full coalitions included
        (ignored by ``exact`` and ``occlusion``).
      batch_size: rows per model call; None picks one.
      tree: for ``"partition"``, a :class:`~shapjax.estimators.partition.Tree`
        (default: recursive halving of the players in index order).
      precision: ``"float32"`` (default) or ``"float64"``: the dtype of the game values, regression
        weights and solves. ``"float64"`` runs the program in JAX's x64 mode (enabled for this call
        only, :mod:`shapjax._util.precision`); full enumeration (``exact``, or ``kernel`` /
        ``leverage`` with ``n_evals >= 2**M``) then matches the textbook formula to ~1e-12 where
        float32 stops at ~1e-6 (float32 games are promoted; their values are what they are).
        Under your own ``jax.jit`` enable ``jax_enable_x64`` globally to keep float64 results.
      tol: to-tolerance mode: evaluate in rounds of ``round_evals`` (each round the method's own
        design, with its own key) and stop as soon as the relative standard error
        ``max_i std_i / max(|v(all) - v(empty)|, ||values||_2)`` (per output, the largest over
        outputs) is at most ``tol``, or when another round would exceed ``n_evals`` (which becomes
        the cap). The evaluations spent are ``n_evals`` of the result (and ``evals``), the error
        reached is ``rse``; a warning is logged when the cap stops it first. Needs a method with
        standard errors (kernel, leverage, permutation, antithetic, stratified). Works under
        ``jax.jit`` and ``jax.vmap`` (a ``lax.while_loop``), not under reverse-mode autodiff.
        Rounds combine as described in :mod:`shapjax.engine.rounds`.
      round_evals: evaluations per round for ``tol`` (default ``min(n_evals, max(256, 4 x the
        method's minimum))``).

    Returns:
      :class:`ShapleyResult`.

    Example:
      >>> import jax, jax.numpy as jnp, shapjax
      >>> game = lambda z: z.astype(jnp.float32) @ jnp.arange(4.0)
      >>> res = shapjax.shapley(game, 4, key=jax.random.key(0), method="exact")
      >>> [round(float(v), 4) for v in res.values]
      [0.0, 1.0, 2.0, 3.0]
    """
    check_key(key)
    precision = check_precision(precision)
    # float64: every trace of the game happens in x64 mode (its shape probe too: JAX caches a
    # NumPy constant converted once in float32 mode and would reuse the float32 copy)
    with precision_scope(precision):
        return _shapley(value_fn, n_players, key=key, method=method, n_evals=n_evals, batch_size=batch_size,
                        tree=tree, precision=precision, tol=tol, round_evals=round_evals)


def _shapley(value_fn, n_players, *, key, method, n_evals, batch_size, tree, precision, tol, round_evals):
    M = check_int(n_players, "n_players", 1)
    est = get_estimator(method)
    n_evals = check_int(n_evals, "n_evals", 1)
    check_budget(est, M, n_evals, f"n_players={M}")
    if tol is not None and M > 1:
        tol, round_evals = rounds.check_tol(tol, est, M, n_evals, round_evals, players=f"n_players={M}")
    else:
        tol, round_evals = None, None
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    K = output_spec(value_fn, M, min(batch_size or 8, 8))
    scalar = K is None
    # refused before any design (or its layout) is built
    check_design_memory(est, M, round_evals or n_evals, n_games=1, n_outputs=K or 1, players=f"n_players={M}")
    layout, layout_static = None, None
    if est.layout is not None and M > 1 and tol is None and not under_autodiff(split_model(value_fn, "value_fn")[1]):
        # the design's length is a bucket of the budget: the budgets of one bucket share one program
        layout, layout_static = layout_mod.bucketed_layout(est, M, n_evals, method)
    rows = layout_static.n_rows + 2 if layout is not None else max(n_evals, 2**M if method == "exact" else 0)
    bs = batch_size or auto_batch_size(rows, M)
    ks = None
    if method == "partition":
        if tree is None:
            from shapjax.engine.estimators.partition import balanced_tree

            tree = balanced_tree(M)
        ks = tuple(schedule(M, n_evals, tree=tree))
    used = est.used_evals(M, n_evals, tree=tree) if M > 1 else 2
    game, game_data = split_model(value_fn, "value_fn")  # a game's parameters are data, not constants
    game_data = as_device_arrays(game_data, precision)
    unroll = under_autodiff(game_data)
    if tol is not None and unroll:
        raise ValueError("tol= cannot be differentiated in reverse mode (its rounds are a lax.while_loop); "
                         "differentiate a fixed budget instead (n_evals=..., tol=None)")
    quiet_lapack()  # (once per process: see shapjax._util.cpu_threads)
    phi, std, v0, v1, info = _shapley_impl(
        key, tree, game_data, None if tol is None else jnp.asarray(tol, floatx()), layout, game=game, n_players=M,
        method=method, n_evals=0 if layout is not None else n_evals, batch_size=bs, ks=ks, unroll=unroll,
        precision=precision, round_evals=round_evals, layout_static=layout_static,
    )
    if scalar:
        phi, v0, v1 = phi[:, 0], v0[0], v1[0]
        std = None if std is None else std[:, 0]
    evals = rse = None
    if info is not None:
        evals, rse = info
        used = n_evals if is_traced(evals) else int(evals)
        if not is_traced(rse) and float(rse) > tol:
            logger.warning("tol=%g was not reached within n_evals=%d (method=%r): relative standard error %.3g "
                           "after %d evaluations; raise n_evals", tol, n_evals, method, float(rse), used)
    res = ShapleyResult(phi, v0, v1, std, evals, rse, n_evals=int(used), method=method)
    if not is_traced(phi) and not bool(jnp.all(jnp.isfinite(phi))):
        raise_not_finite("value_fn", v0, v1, method, n_evals)
    return res
