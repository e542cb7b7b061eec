"""Shapley estimators (and the LIME / occlusion baselines) behind one protocol.

See :mod:`shapjax.estimators.base` for the protocol.
"""
from shapjax.engine.estimators import (
    exact,
    kernel,
    leverage,
    lime,
    occlusion,
    partition,
    permutation,
    polyshap,
    regmc,
    svarm,
)
from shapjax.engine.estimators.base import TARGETS, Design, Estimator

ESTIMATORS: dict[str, Estimator] = {
    "exact": exact.ESTIMATOR,
    "kernel": kernel.ESTIMATOR,
    "leverage": leverage.ESTIMATOR,
    "polyshap": polyshap.ESTIMATOR,
    "regmc": regmc.ESTIMATOR,
    **permutation.ESTIMATORS,
    "svarm": svarm.ESTIMATOR,
    "partition": partition.ESTIMATOR,
    "lime": lime.ESTIMATOR,
    "occlusion": occlusion.ESTIMATOR,
}


def get_estimator(method: str) -> Estimator:
    """The estimator registered as ``method``; a clear error lists the valid names."""
    if not isinstance(method, str) or method not in ESTIMATORS:
        raise ValueError(f"method={method!r} is not known; valid methods: {', '.join(sorted(ESTIMATORS))}")
    return ESTIMATORS[method]


__all__ = ["Design", "Estimator", "ESTIMATORS", "TARGETS", "get_estimator"]
