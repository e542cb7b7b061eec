r"""LIME: a locally weighted linear surrogate over binary segment coalitions.

Follows ``lime``'s image explainer: coalitions are uniform random (each
segment present with probability 1/2), the unmasked image (all segments on)
is added as the first sample, samples are weighted by the exponential kernel
:math:`\sqrt{\exp(-d^2/\sigma^2)}` of the cosine distance :math:`d` to the
all-on coalition (kernel width :math:`\sigma = 0.25`), and a weighted ridge
regression with intercept (``alpha = 1``) on the raw model outputs gives the
attributions. These are *not* Shapley values: they do not satisfy efficiency.

References:
  Ribeiro, M. T., Singh, S. & Guestrin, C. (2016). "Why Should I Trust You?":
  Explaining the Predictions of Any Classifier. KDD.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from shapjax.engine.estimators.base import Design, Estimator
from shapjax.kernels.weights import cosine_distance_to_full, lime_kernel
from shapjax.kernels.wls import weighted_ridge

KERNEL_WIDTH = 0.25
ALPHA = 1.0


def design(n_players: int, n_evals: int, *, key) -> Design:
    Z = jax.random.bernoulli(key, 0.5, (n_evals - 2, int(n_players)))
    return Design(Z, None)


def solve(design_: Design, y, v_empty, v_full, active):
    Z = design_.coalitions
    M = Z.shape[1]
    X = jnp.concatenate([jnp.ones((1, M), bool), Z])
    Y = jnp.concatenate([v_full[None], y])
    w = lime_kernel(cosine_distance_to_full(X), KERNEL_WIDTH)
    if active is not None:
        X = X & active[None, :]
    coef, _ = weighted_ridge(X, w, Y, alpha=ALPHA)
    return coef, None


ESTIMATOR = Estimator(
    name="lime",
    min_evals=lambda M: 4,
    used_evals=lambda M, n_evals, **o: n_evals,
    design=design,
    solve=solve,
    efficient=False,
    estimates="lime-surrogate",
)
