"""The Shapley axioms each method promises, on random games, at each method's minimum budget and a larger one:
efficiency for every efficient method; symmetry and dummy exactly for exact enumeration (and dummy for the
permutation family, whose marginal contributions of a dummy are exactly 0); the sampling methods within
their reported standard errors."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapjax
from shapjax.engine.games import brute_force_shapley

M = 8
SEEDS = [0, 1, 2]


def symmetric_dummy_game(seed):
    """A random two-layer network on the coalition vector in which players 0 and 1 are interchangeable
    and player M-1 is a dummy (it never changes the value)."""
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    W1 = np.asarray(jax.random.normal(k1, (M, 12))) / np.sqrt(M)
    W1[1] = W1[0]
    W1[M - 1] = 0.0
    b1 = np.asarray(jax.random.normal(k2, (12,))) * 0.5
    W2 = np.asarray(jax.random.normal(k3, (12, 2))) / np.sqrt(12)
    W1, b1, W2 = map(jnp.asarray, (W1, b1, W2))
    return jax.tree_util.Partial(lambda p, z: jnp.tanh(z.astype(jnp.float32) @ p[0] + p[1]) @ p[2], (W1, b1, W2))


EFFICIENT = [m for m, e in shapjax.ESTIMATORS.items() if e.efficient]
SAMPLING = ["kernel", "leverage", "permutation", "antithetic", "stratified"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", EFFICIENT)
@pytest.mark.parametrize("budget", ["minimum", "large"])
def test_efficiency(method, seed, budget):
    game = symmetric_dummy_game(seed)
    est = shapjax.ESTIMATORS[method]
    n = max(est.min_evals(M), 4) if budget == "minimum" else 600
    r = shapjax.shapley(game, M, key=jax.random.key(seed), method=method, n_evals=n)
    total = np.asarray(r.full_value - r.base_value)
    np.testing.assert_allclose(np.asarray(r.values).sum(0), total, atol=2e-5 * max(1.0, np.abs(total).max()))


@pytest.mark.parametrize("seed", SEEDS)
def test_exact_is_symmetric_and_dummy_exactly(seed):
    game = symmetric_dummy_game(seed)
    r = shapjax.shapley(game, M, key=jax.random.key(0), method="exact")
    v = np.asarray(r.values)
    np.testing.assert_allclose(v[0], v[1], rtol=1e-6, atol=1e-7)  # symmetry
    np.testing.assert_array_equal(v[M - 1], 0.0)  # dummy: every marginal contribution is exactly 0
    np.testing.assert_allclose(v, brute_force_shapley(game, M), atol=1e-6)


@pytest.mark.parametrize("method", ["permutation", "antithetic", "stratified"])
def test_permutation_family_gives_a_dummy_exactly_zero(method):
    game = symmetric_dummy_game(4)
    r = shapjax.shapley(game, M, key=jax.random.key(1), method=method, n_evals=shapjax.ESTIMATORS[method].min_evals(M))
    np.testing.assert_array_equal(np.asarray(r.values)[M - 1], 0.0)


@pytest.mark.parametrize("method", SAMPLING)
def test_sampling_methods_are_within_their_standard_errors(method):
    """Calibration: over 32 keys (one vmapped program) and two games, the exact values fall inside the
    reported ~95 % intervals (estimate +- 1.96 std) about 95 % of the time (at least 85 %: the interval
    uses a normal quantile while the per-pair sample variances have few degrees of freedom)."""
    inside, total = 0, 0
    for seed in SEEDS[:2]:
        game = symmetric_dummy_game(seed)
        exact = brute_force_shapley(game, M)
        keys = jax.random.split(jax.random.key(100 + seed), 32)
        n = 200
        res = jax.vmap(lambda k: shapjax.shapley(game, M, key=k, method=method, n_evals=n))(keys)
        assert res.std is not None, f"{method} reports no standard errors at n_evals={n}"
        err = np.abs(np.asarray(res.values) - exact[None])
        std = np.asarray(res.std)
        live = std > 0  # the dummy player: no error and no spread
        inside += int(np.sum((err <= 1.96 * std + 1e-6) & live))
        total += int(np.sum(live))
    coverage = inside / total
    assert coverage >= 0.85, f"{method}: 95 % intervals cover the exact value {coverage:.1%} of the time"
