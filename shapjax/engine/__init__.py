"""The game-level engine: cooperative games, coalition samplers, estimators and :func:`shapley`.

Data flow: ``key -> sampler -> coalitions [N, M] -> value_fn -> [N, K] -> estimator -> values [M, K]``.
Nothing here knows about images; :mod:`shapjax.image` builds image games on top.
"""
from shapjax.engine.estimators import ESTIMATORS, Estimator, get_estimator
from shapjax.engine.shapley import ShapleyResult, shapley

__all__ = ["ESTIMATORS", "Estimator", "get_estimator", "ShapleyResult", "shapley"]
