"""Weighting kernels for Shapley regression and LIME.

All functions are plain ``jax.numpy`` (jit-able) unless they take only static
Python ints, in which case they return NumPy arrays usable as constants.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def shapley_value_weights(n_players: int) -> np.ndarray:
    r"""Weights of the Shapley value formula, indexed by coalition size.

    .. math::

        \phi_i = \sum_{S \subseteq N \setminus \{i\}} w(|S|)\,[v(S \cup i) - v(S)],
        \qquad w(s) = \frac{s!\,(M-s-1)!}{M!}

    Returns:
      ``[M]`` float64 array ``w(s)`` for ``s = 0..M-1``.

    References:
      Shapley, L. S. (1953). A value for n-person games.
    """
    M = int(n_players)
    s = np.arange(M, dtype=np.float64)
    logw = np.array([math.lgamma(k + 1) + math.lgamma(M - k) - math.lgamma(M + 1) for k in s])
    return np.exp(logw)


def shapley_kernel_size_mass(n_players: int) -> np.ndarray:
    r"""Total Shapley-kernel mass of each coalition size, normalised to sum 1.

    The Shapley kernel gives a coalition of size :math:`s` the weight
    :math:`\pi(s) = \frac{M-1}{\binom{M}{s}\, s\,(M-s)}`; summed over the
    :math:`\binom{M}{s}` coalitions of that size the mass is proportional to
    :math:`\frac{M-1}{s(M-s)}`.

    Returns:
      ``[M+1]`` float64 array, zero at sizes 0 and M (those are handled by the
      efficiency constraint).

    References:
      Lundberg & Lee (2017). A Unified Approach to Interpreting Model Predictions.
    """
    M = int(n_players)
    mass = np.zeros(M + 1, dtype=np.float64)
    if M >= 2:
        s = np.arange(1, M, dtype=np.float64)
        mass[1:M] = (M - 1) / (s * (M - s))
        mass /= mass.sum()
    return mass


def shapley_kernel_weight(n_players: int, sizes) -> jnp.ndarray:
    r"""Per-coalition Shapley kernel weight :math:`\frac{M-1}{\binom{M}{s} s (M-s)}`.

    ``sizes`` may be traced. Sizes 0 and M get weight 0 (they enter through the
    constraint, not the regression). Normalised so that the weights of all
    coalitions sum to 1.
    """
    M = int(n_players)
    mass = shapley_kernel_size_mass(M)
    counts = np.array([math.comb(M, s) for s in range(M + 1)], dtype=np.float64)
    per = np.where(mass > 0, mass / counts, 0.0).astype(np.float32)
    return jnp.asarray(per)[jnp.asarray(sizes)]


def leverage_size_mass(n_players: int) -> np.ndarray:
    r"""Leverage-score mass of each coalition size (uniform over sizes 1..M-1).

    Musco & Witter show that the leverage score of coalition :math:`z` in the
    (projected, kernel-weighted) KernelSHAP regression is
    :math:`\binom{M}{|z|}^{-1}` up to a constant, so every size carries the
    same total leverage.

    References:
      Musco, C. & Witter, R. T. (2025). Provably Accurate Shapley Value
      Estimation via Leverage Score Sampling. ICLR 2025.
    """
    M = int(n_players)
    mass = np.zeros(M + 1, dtype=np.float64)
    if M >= 2:
        mass[1:M] = 1.0 / (M - 1)
    return mass


def lime_kernel(distances, kernel_width: float = 0.25):
    r"""LIME's exponential kernel :math:`\sqrt{\exp(-d^2/\sigma^2)}`.

    References:
      Ribeiro, Singh & Guestrin (2016). "Why Should I Trust You?": Explaining
      the Predictions of Any Classifier.
    """
    d = jnp.asarray(distances)
    return jnp.sqrt(jnp.exp(-(d**2) / kernel_width**2))


def cosine_distance_to_full(coalitions) -> jnp.ndarray:
    """Cosine distance of each binary coalition ``[N, M]`` to the all-ones vector ``[N]``.

    The empty coalition has distance 1 (cosine similarity taken as 0).
    """
    z = jnp.asarray(coalitions, jnp.float32)
    M = z.shape[-1]
    size = z.sum(-1)
    cos = jnp.where(size > 0, size / jnp.sqrt(jnp.maximum(size, 1.0) * M), 0.0)
    return 1.0 - cos
