"""The estimator protocol shared by every Shapley estimator.

A non-adaptive estimator is two pure functions (blackjax-style low-level
kernels under the thin :func:`shapjax.shapley` facade):

* ``design(n_players, n_evals, *, key) -> Design`` picks the
  coalitions to evaluate (``[N, M]`` bool, the empty and full coalitions are
  *not* included: the engine always evaluates those two itself) plus any
  estimator-specific ``aux`` pytree (weights, permutations...).
* ``solve(design, y, v_empty, v_full, active) -> (values [M, K], std [M, K] | None)``
  turns the game values ``y [N, K]`` of those coalitions into estimates.

Because the design does not depend on the game, one design can be shared by
many games (a batch of images) and the regression factored once.

Adaptive estimators (the Owen/partition explainer) instead provide
``estimate(eval_fn, n_players, n_evals, *, key, **options)``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax


class Design(NamedTuple):
    """Coalitions to evaluate, ``[N, M]`` bool, and estimator-specific data."""

    coalitions: jax.Array
    aux: Any


class Estimator(NamedTuple):
    """A registered estimator.

    Attributes:
      name: method name used by :func:`shapjax.shapley`.
      min_evals: ``M -> int``, the smallest budget (empty and full included).
      design: see module docstring (None for adaptive estimators).
      solve: see module docstring (None for adaptive estimators).
      estimate: adaptive path (None for design/solve estimators).
      efficient: whether values sum exactly to ``v(all) - v(empty)``.
      estimates: what the method's values estimate, one of :data:`TARGETS`:
        ``"shapley"`` (Shapley values), ``"owen"`` (Owen values over a partition
        tree: equal to the Shapley values only for special games, e.g. additive
        ones), ``"lime-surrogate"`` (coefficients of a locally weighted linear
        surrogate) or ``"leave-one-out"`` (occlusion: ``v(N) - v(N \\ i)``).
      used_evals: ``(M, n_evals, options) -> int``, evaluations actually spent.
      layout: optional ``(M, n_evals, n_rows) -> (layout, static)``: the design as host data of a
        bucketed length (:mod:`shapjax.engine.estimators.layout`), so budgets of one bucket share
        one compiled program; ``build(M, layout, static, *, key) -> Design`` makes it in the program,
        and ``layout_solve`` (same signature as ``solve``) solves a built design, skipping its padding.
      solve_bytes: optional ``(M, n_evals, *, n_outputs) -> int``, rough peak memory of one game's solve
        where it grows faster than the design (the polynomial fits' ``N x N`` systems), so that a
        budget that cannot fit is refused before it is compiled.
    """

    name: str
    min_evals: Callable[[int], int]
    used_evals: Callable[..., int]
    design: Optional[Callable] = None
    solve: Optional[Callable] = None
    estimate: Optional[Callable] = None
    efficient: bool = True
    estimates: str = "shapley"
    layout: Optional[Callable] = None
    build: Optional[Callable] = None
    layout_solve: Optional[Callable] = None
    solve_bytes: Optional[Callable] = None

    @property
    def shapley(self) -> bool:
        """True when the values estimate Shapley values (see :attr:`estimates`)."""
        return self.estimates == "shapley"


#: What an estimator's values can estimate, with a one-line meaning (``shapjax methods`` shows it).
TARGETS = {
    "shapley": "Shapley values",
    "owen": "Owen values (a partition-tree variant of Shapley values)",
    "lime-surrogate": "coefficients of a local linear surrogate (not Shapley values)",
    "leave-one-out": "leave-one-out drops v(N) - v(N - i) (not Shapley values)",
}
