"""PolySHAP, regression-adjusted Monte Carlo and stratified SVARM against exact values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapjax
from shapjax.engine.games import brute_force_shapley, random_network_game, sum_of_unanimity_game
from shapjax.kernels.polyreg import poly_fit

KEY = jax.random.key(0)
NEW = ["polyshap", "regmc", "svarm"]


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
    # every term has order <= 3: the fitted polynomial is the game itself (up to the light ridge, which
    # leaves 1e-3..4e-3 relative error at 500 evaluations over keys 0..3, 4e-4 at 800)
    M = 11
    g, phi = sum_of_unanimity_game(M, key=jax.random.key(2), n_terms=30, max_order=3)
    res = shapjax.shapley(g, M, key=KEY, method="polyshap", n_evals=500)
    assert rel_err(res.values, phi) < 6e-3
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
    if shapjax.ESTIMATORS[method].efficient:  # svarm: exact only once every stratum is reached
        np.testing.assert_allclose(res.values.sum(0), res.full_value - res.base_value, atol=1e-4)


@pytest.mark.parametrize("method", NEW)
def test_full_budget_is_exact(net10, method):
    g, ref = net10
    res = shapjax.shapley(g, 10, key=KEY, method=method, n_evals=2**10)
    np.testing.assert_allclose(res.values, ref, atol=3e-4 * np.abs(ref).max())


@pytest.mark.parametrize("method", ["svarm"])  # regmc: see the unbiasedness test
def test_error_shrinks_with_budget(net10, method):
    g, ref = net10
    e = [np.mean([rel_err(shapjax.shapley(g, 10, key=jax.random.key(s), method=method, n_evals=n).values, ref)
                  for s in range(2)]) for n in (150, 600)]
    assert e[1] < 0.7 * e[0] and e[1] < 0.1, e


def test_regmc_is_unbiased_with_calibrated_errors(net10):
    g, ref = net10
    vals, z = [], []
    for s in range(12):
        r = shapjax.shapley(g, 10, key=jax.random.key(s), method="regmc", n_evals=200)
        vals.append(np.asarray(r.values))
        z.append((np.asarray(r.values) - ref) / np.maximum(np.asarray(r.std), 1e-9))
    rms = float(np.sqrt(np.mean(np.square(z))))
    assert 0.4 < rms < 2.5, rms
    bias = np.abs(np.mean(vals, 0) - ref)
    spread = np.std(vals, 0) / np.sqrt(len(vals))
    assert np.all(bias < 4 * spread + 1e-4), (bias, spread)


def test_polyshap_beats_leverage_at_equal_budget(net10):
    g, ref = net10
    e = {m: np.mean([rel_err(shapjax.shapley(g, 10, key=jax.random.key(s), method=m, n_evals=800).values, ref)
                     for s in range(3)]) for m in ("leverage", "polyshap")}
    assert e["polyshap"] < 0.6 * e["leverage"], e  # at 800 evaluations: 0.3x (0.72x at 400)


def test_dual_solver_equals_primal():
    from shapjax.engine.estimators import leverage

    M = 8
    g = random_network_game(M, key=jax.random.key(3), n_outputs=2, hidden=32)
    d = leverage.design(M, 200, key=KEY)
    y = g(d.coalitions)
    v0, v1 = g(jnp.zeros((1, M), bool))[0], g(jnp.ones((1, M), bool))[0]
    act = jnp.ones((M,), bool).at[4].set(False)

    @jax.jit
    def fits(Z, w, y, t):  # one compiled program for the four fits
        out = []
        for active in (None, act):
            for solver in ("primal", "dual"):
                f = poly_fit(Z, w, y, t, solver=solver, active=active)
                out.append((f.phi, f.predict(Z[:20])))
        return out

    res = fits(d.coalitions, d.aux.weights, y - v0, v1 - v0)
    for active, (p, pp), (q, qp) in ((None, res[0], res[1]), (act, res[2], res[3])):
        np.testing.assert_allclose(p, q, atol=2e-3 * float(jnp.abs(p).max()))
        np.testing.assert_allclose(pp, qp, atol=5e-3)
        if active is not None:
            assert float(jnp.abs(p[4]).max()) == 0.0 and float(jnp.abs(q[4]).max()) == 0.0
        else:
            np.testing.assert_allclose(q.sum(0), v1 - v0, atol=1e-5)


@pytest.mark.parametrize("method", NEW)
def test_under_jit_and_vmap(method):
    M = 5
    W = jax.random.normal(jax.random.key(3), (3, M))

    def one(w):
        return shapjax.shapley(lambda z: jnp.sin(z.astype(jnp.float32) @ w), M, key=KEY, method=method,
                               n_evals=24).values

    batched = jax.jit(jax.vmap(one))(W)
    for i in range(3):  # accuracy is checked above; here: the same numbers batched and compiled
        np.testing.assert_allclose(batched[i], one(W[i]), atol=1e-4)
        if shapjax.ESTIMATORS[method].efficient:
            np.testing.assert_allclose(batched[i].sum(), float(jnp.sin(W[i].sum())), atol=1e-4)
