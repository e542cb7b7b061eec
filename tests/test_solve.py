"""The regression solve (issue 20): the centred system, its refinement, the structured Gram matrix
and the chunked standard errors, against independent formulas."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapjax
from shapjax._util.precision import precision_scope
from shapjax.engine.estimators import ESTIMATORS
from shapjax.engine.estimators import layout as L
from shapjax.engine.games import random_network_game
from shapjax.engine.shapley import with_ends
from shapjax.kernels.wls import constrained_wls, normal_equations, solve_normal_equations

KEY = jax.random.key(0)


def test_centred_solve_equals_the_closed_form_in_float64():
    with precision_scope("float64"):
        M, N = 12, 300
        Z = jax.random.bernoulli(jax.random.key(1), 0.4, (N, M))
        w = jax.random.uniform(jax.random.key(2), (N,), jnp.float64) + 0.1
        y = jax.random.normal(jax.random.key(3), (N, 3), jnp.float64)
        total = jnp.array([1.0, -2.0, 0.5])
        for active in (None, jnp.arange(M) % 4 != 1):
            phi, G = constrained_wls(Z, w, y, total, active=active)
            A, b = normal_equations(Z, w, y, active=active)
            phi2, G2 = solve_normal_equations(A, b, total, active=active)
            np.testing.assert_allclose(phi, phi2, rtol=1e-9, atol=1e-11)
            on = np.ones(M, bool) if active is None else np.asarray(active)
            # (on the active players: an inactive one's rows of G meet only zero columns of Z)
            np.testing.assert_allclose(np.asarray(G)[np.ix_(on, on)], np.asarray(G2)[np.ix_(on, on)], rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(phi.sum(0), total, atol=1e-12)


@pytest.mark.parametrize("method", ["kernel", "leverage"])
@pytest.mark.parametrize("M,n", [(11, 333), (64, 8000)])  # (64, 8000): many chunks, strata across chunks
def test_layout_solve_equals_the_dense_regression_in_float64(method, M, n):
    est = ESTIMATORS[method]
    with precision_scope("float64"):
        g = random_network_game(M, key=jax.random.key(3))
        live = est.used_evals(M, n) - 2
        lay, st = est.layout(M, n, n_rows=L.bucket(live) + 17)
        d = est.build(M, lay, st, key=KEY)
        V = g(with_ends(d.coalitions)).astype(jnp.float64)
        V = V.reshape(V.shape[0], -1)
        V = jnp.concatenate([V, V**2], 1)
        d2 = est.design(M, n, key=KEY)
        for active in (None, jnp.arange(M) % 5 != 3):
            # (the coalitions are an argument: closed over, XLA would fold the Gram matrix at compile time)
            phi, std = jax.jit(lambda Z, V, a: est.layout_solve(d._replace(coalitions=Z), V[2:], V[0], V[1], a))(
                d.coalitions, V, active)
            V2 = V[:live + 2]
            phi2, std2 = est.solve(d2, V2[2:], V2[0], V2[1], active)
            np.testing.assert_allclose(phi, phi2, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(std, std2, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("method", ["kernel", "leverage"])
def test_float32_at_1024_players_is_exact_on_an_additive_game(method):
    """The Gram matrix's 1 1^T part is ~M^2 times the rest: solving it directly in float32 lost
    every digit at M = 4096 (0.12 absolute error here, at M = 1024). Centred and refined: ~1e-5."""
    M = 1024
    w = jax.random.normal(jax.random.key(5), (M,))
    game = lambda z: z.astype(jnp.float32) @ w  # noqa: E731
    res = shapjax.shapley(game, M, key=KEY, method=method, n_evals=2 * M + 2 + 512)
    assert res.values.dtype == jnp.float32
    np.testing.assert_allclose(res.values, w, atol=5e-5)
    # the unbucketed path (the dense centred solve) too
    est = ESTIMATORS[method]
    d = est.design(M, 2 * M + 2 + 512, key=KEY)
    y = game(d.coalitions)[:, None]
    # (the coalitions are an argument: closed over, XLA would fold the Gram matrix at compile time)
    solve = jax.jit(lambda Z, y: est.solve(d._replace(coalitions=Z), y, jnp.zeros(1), w.sum()[None], None))
    phi, _ = solve(d.coalitions, y)
    np.testing.assert_allclose(phi[:, 0], w, atol=5e-5)
