"""PolySHAP, regression-adjusted Monte Carlo and stratified SVARM against exact values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapjax
from shapjax.engine.games import brute_force_shapley, random_network_game, sum_of_unanimity_game
from shapjax.kernels.polyreg import poly_fit

KEY = jax.random.key(0)
NEW = ["polyshap"]


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def net10():
    g = random_network_game(10, key=jax.random.key(7), n_outputs=1, hidden=32)
    return g, brute_force_shapley(g, 10)


def test_sum_of_unanimity_game_values_match_brute_force():
    g, phi = sum_of_unanimity_game(8, key=jax.random.key(1), n_terms=12)
    np.testing.assert_allclose(brute_force_shapley(g, 8), phi, atol=1e-5)


def test_polyshap_is_exact_on_an_order_3_game():
    # every term has order <= 3: the fitted polynomial is the game itself (up to the light ridge)
    M = 11
    g, phi = sum_of_unanimity_game(M, key=jax.random.key(2), n_terms=30, max_order=3)
    res = shapjax.shapley(g, M, key=KEY, method="polyshap", n_evals=500)
    assert rel_err(res.values, phi) < 5e-3  # 1.1e-3 - 3.8e-3 over keys 0-4 with the layout sampler
    lev = shapjax.shapley(g, M, key=KEY, method="leverage", n_evals=500)
    assert rel_err(lev.values, phi) > 10 * rel_err(res.values, phi)


@pytest.mark.parametrize("method", NEW)
def test_minimum_budget_is_finite_and_efficient(method):
    M = 10
    g = random_network_game(M, key=jax.random.key(0), n_outputs=2)
    n = shapjax.ESTIMATORS[method].min_evals(M)
    assert n == 2 * M + 2
    res = shapjax.shapley(g, M, key=KEY, method=method, n_evals=n)
    assert np.all(np.isfinite(np.asarray(res.values)))
    np.testing.assert_allclose(res.values.sum(0), res.full_value - res.base_value, atol=1e-4)


def test_polyshap_full_budget_is_exact(net10):
    g, ref = net10
    res = shapjax.shapley(g, 10, key=KEY, method="polyshap", n_evals=2**10)
    np.testing.assert_allclose(res.values, ref, atol=3e-4 * np.abs(ref).max())


def test_polyshap_beats_leverage_at_equal_budget(net10):
    g, ref = net10
    e = {m: np.mean([rel_err(shapjax.shapley(g, 10, key=jax.random.key(s), method=m, n_evals=400).values, ref)
                     for s in range(3)]) for m in ("leverage", "polyshap")}
    assert e["polyshap"] < 0.8 * e["leverage"], e  # layout sampler: 0.61 over 8 keys, 0.72 over these 3


def test_dual_solver_equals_primal():
    from shapjax.engine.estimators import leverage

    M = 8
    g = random_network_game(M, key=jax.random.key(3), n_outputs=2, hidden=32)
    d = leverage.design(M, 200, key=KEY)
    y = g(d.coalitions)
    v0, v1 = g(jnp.zeros((1, M), bool))[0], g(jnp.ones((1, M), bool))[0]
    act = jnp.ones((M,), bool).at[4].set(False)
    for active in (None, act):
        fit = jax.jit(lambda Z, w, y, t, solver: (lambda f: (f.phi, f.predict(Z[:20])))(
            poly_fit(Z, w, y, t, solver=solver, active=active)), static_argnames="solver")
        (p, pp), (q, qp) = (fit(d.coalitions, d.aux.weights, y - v0, v1 - v0, solver=s) for s in ("primal", "dual"))
        np.testing.assert_allclose(p, q, atol=2e-3 * float(jnp.abs(p).max()))
        np.testing.assert_allclose(pp, qp, atol=5e-3)
        if active is not None:
            assert float(jnp.abs(p[4]).max()) == 0.0 and float(jnp.abs(q[4]).max()) == 0.0
        else:
            np.testing.assert_allclose(q.sum(0), v1 - v0, atol=1e-5)


@pytest.mark.parametrize("method", NEW)
def test_under_jit_and_vmap(method):
    M = 6
    W = jax.random.normal(jax.random.key(3), (3, M))

    def one(w):
        return shapjax.shapley(lambda z: jnp.sin(z.astype(jnp.float32) @ w), M, key=KEY, method=method,
                               n_evals=48).values

    batched = jax.jit(jax.vmap(one))(W)
    for i in range(3):  # accuracy is checked above; here: the same numbers batched and compiled
        np.testing.assert_allclose(batched[i], one(W[i]), atol=1e-4)
        np.testing.assert_allclose(batched[i].sum(), float(jnp.sin(W[i].sum()) - 0.0), atol=1e-4)
