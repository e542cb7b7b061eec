"""The Shapley engine against exact values on games with known answers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapjax
from shapjax.engine.estimators.partition import balanced_tree
from shapjax.engine.games import (
    additive_game,
    brute_force_shapley,
    random_network_game,
    unanimity_game,
    weighted_voting_game,
)

SHAPLEY_METHODS = ["exact", "kernel", "leverage", "permutation", "antithetic", "stratified"]
ALL_METHODS = SHAPLEY_METHODS + ["partition"]
KEY = jax.random.key(0)


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_additive_game_is_exact_for_every_method(method):
    w = np.linspace(-1.0, 2.0, 9).astype(np.float32)
    res = shapjax.shapley(additive_game(w), 9, key=KEY, method=method, n_evals=200)
    np.testing.assert_allclose(res.values, w, atol=2e-5)
    assert res.values.shape == (9,)
    assert float(res.base_value) == 0.0
    np.testing.assert_allclose(float(res.full_value), w.sum(), rtol=1e-6)


@pytest.mark.parametrize("method", SHAPLEY_METHODS)
def test_unanimity_game(method):
    M, T = 10, [1, 4, 7]
    res = shapjax.shapley(unanimity_game(T, M), M, key=KEY, method=method, n_evals=4000)
    expect = np.zeros(M)
    expect[T] = 1 / 3
    tol = 1e-5 if method in ("exact",) else 0.08
    np.testing.assert_allclose(res.values, expect, atol=tol)


def test_exact_matches_brute_force_multi_output():
    g = random_network_game(8, key=jax.random.key(3), n_outputs=4)
    ref = brute_force_shapley(g, 8)
    res = shapjax.shapley(g, 8, key=KEY, method="exact")
    assert res.values.shape == (8, 4)
    np.testing.assert_allclose(res.values, ref, atol=2e-6)
    assert res.n_evals == 256


def test_weighted_voting_exact():
    # Weights [3, 1, 1, 1] quota 4: player 0 is pivotal unless... brute force is the reference.
    g = weighted_voting_game([3, 1, 1, 1, 2], 5)
    np.testing.assert_allclose(shapjax.shapley(g, 5, key=KEY, method="exact").values, brute_force_shapley(g, 5), atol=1e-6)


@pytest.mark.parametrize("method", ["kernel", "leverage"])
def test_regression_with_full_budget_equals_exact(method):
    M = 12
    g = random_network_game(M, key=jax.random.key(5))
    ref = brute_force_shapley(g, M)
    res = shapjax.shapley(g, M, key=KEY, method=method, n_evals=2**M)
    np.testing.assert_allclose(res.values, ref, atol=2e-4 * np.abs(ref).max())
    assert res.std is None  # everything enumerated: no sampling error


@pytest.mark.parametrize("method", SHAPLEY_METHODS[1:])
def test_error_shrinks_with_budget(method):
    M = 14
    g = random_network_game(M, key=jax.random.key(7), hidden=32)
    ref = brute_force_shapley(g, M)
    errs = []
    for n in (300, 3000):
        errs.append(np.mean([rel_err(shapjax.shapley(g, M, key=jax.random.key(s), method=method, n_evals=n).values, ref) for s in range(4)]))
    assert errs[1] < errs[0] * 0.75, errs
    assert errs[1] < 0.1


def test_antithetic_no_worse_than_plain_permutation():
    M = 12
    g = random_network_game(M, key=jax.random.key(11), hidden=32)
    ref = brute_force_shapley(g, M)
    e = {m: np.mean([rel_err(shapjax.shapley(g, M, key=jax.random.key(s), method=m, n_evals=600).values, ref) for s in range(12)])
         for m in ("permutation", "antithetic")}
    assert e["antithetic"] <= e["permutation"], e


@pytest.mark.parametrize("method", SHAPLEY_METHODS + ["partition"])
def test_efficiency(method):
    M = 11
    g = random_network_game(M, key=jax.random.key(2), n_outputs=3)
    res = shapjax.shapley(g, M, key=KEY, method=method, n_evals=500)
    np.testing.assert_allclose(res.values.sum(0), res.full_value - res.base_value, atol=2e-5)


def test_standard_errors_are_calibrated():
    M = 12
    g = random_network_game(M, key=jax.random.key(4))
    ref = brute_force_shapley(g, M)
    for method in ("kernel", "permutation", "leverage"):
        z = []
        for s in range(10):
            r = shapjax.shapley(g, M, key=jax.random.key(s), method=method, n_evals=400)
            assert r.std is not None and r.std.shape == r.values.shape
            z.append((np.asarray(r.values) - ref) / np.maximum(np.asarray(r.std), 1e-9))
        rms = float(np.sqrt(np.mean(np.square(z))))
        assert 0.4 < rms < 2.5, (method, rms)


def owen_brute_force(game, M):
    """Average marginal contributions over orderings consistent with the balanced tree."""
    tree = balanced_tree(M)

    def orders(node):
        if node < M:
            return [[node]]
        L, R = int(tree.left[node - M]), int(tree.right[node - M])
        return [a + b for a in orders(L) for b in orders(R)] + [b + a for a in orders(L) for b in orders(R)]

    perms = orders(2 * M - 2)
    phi = np.zeros(M)
    for p in perms:
        z = np.zeros(M, bool)
        prev = float(game(jnp.asarray(z[None]))[0])
        for j in p:
            z[j] = True
            cur = float(game(jnp.asarray(z[None]))[0])
            phi[j] += cur - prev
            prev = cur
    return phi / len(perms)


def test_partition_full_budget_is_exact_owen():
    M = 8
    g = random_network_game(M, key=jax.random.key(9), n_outputs=1)
    scalar = lambda z: g(z)[:, 0]  # noqa: E731
    res = shapjax.shapley(scalar, M, key=KEY, method="partition", n_evals=10_000)
    np.testing.assert_allclose(res.values, owen_brute_force(scalar, M), atol=1e-5)


def test_partition_spends_budget_on_large_effects():
    M = 16
    w = np.zeros(M, np.float32)
    w[3] = 5.0  # one important player
    # The whole tree needs 2 + 2 * (1 + 4 + 16 + 64) = 172 evaluations; refining
    # the tasks with large worth first resolves the one important leaf with 60.
    res = shapjax.shapley(additive_game(w), M, key=KEY, method="partition", n_evals=60)
    assert res.n_evals <= 60
    np.testing.assert_allclose(res.values, w, atol=1e-6)


def test_same_key_same_result_different_keys_differ():
    g = random_network_game(10, key=jax.random.key(1))
    for m in ("kernel", "leverage", "permutation", "antithetic", "stratified", "lime"):
        a = shapjax.shapley(g, 10, key=jax.random.key(0), method=m, n_evals=300).values
        b = shapjax.shapley(g, 10, key=jax.random.key(0), method=m, n_evals=300).values
        c = shapjax.shapley(g, 10, key=jax.random.key(1), method=m, n_evals=300).values
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c), m


def test_under_jit_with_traced_parameters():
    M = 8

    @jax.jit
    def explain(w):
        game = lambda z: jnp.tanh(z.astype(jnp.float32) @ w)  # closes over a tracer  # noqa: E731
        return shapjax.shapley(game, M, key=KEY, method="kernel", n_evals=256).values

    w = jnp.linspace(-1, 1, M)
    ref = brute_force_shapley(lambda z: jnp.tanh(z.astype(jnp.float32) @ w), M)
    np.testing.assert_allclose(explain(w), ref, atol=1e-4)


@pytest.mark.parametrize("method", ["kernel", "antithetic", "partition", "exact"])
def test_vmap_over_a_batch_of_games(method):
    M = 6
    W = jax.random.normal(jax.random.key(3), (5, M))

    def one(w):
        return shapjax.shapley(lambda z: jnp.sin(z.astype(jnp.float32) @ w), M, key=KEY, method=method, n_evals=64).values

    batched = jax.vmap(one)(W)
    assert batched.shape == (5, M)
    for i in range(5):
        np.testing.assert_allclose(batched[i], one(W[i]), atol=1e-5)


def test_second_call_does_not_recompile():
    traces = []

    def game(z):
        traces.append(1)
        return z.astype(jnp.float32).sum(-1) ** 2

    shapjax.shapley(game, 7, key=jax.random.key(0), method="kernel", n_evals=100)
    n = len(traces)
    shapjax.shapley(game, 7, key=jax.random.key(1), method="kernel", n_evals=100)
    assert len(traces) == n


def test_chunked_evaluation_matches_single_batch():
    g = random_network_game(9, key=jax.random.key(2))
    a = shapjax.shapley(g, 9, key=KEY, method="kernel", n_evals=333, batch_size=7).values
    b = shapjax.shapley(g, 9, key=KEY, method="kernel", n_evals=333, batch_size=4096).values
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_single_player():
    res = shapjax.shapley(lambda z: z[:, 0].astype(jnp.float32) * 3 + 1, 1, key=KEY, method="kernel", n_evals=8)
    np.testing.assert_allclose(res.values, [3.0])


def test_result_is_a_pytree():
    res = shapjax.shapley(additive_game(np.ones(4)), 4, key=KEY, method="exact")
    leaves = jax.tree_util.tree_leaves(res)
    assert len(leaves) == 3  # values, base, full (std None)


# ---------------------------------------------------------------- bad input


def test_bad_n_players():
    with pytest.raises(ValueError, match="n_players"):
        shapjax.shapley(additive_game(np.ones(3)), 0, key=KEY)
    with pytest.raises(TypeError, match="n_players"):
        shapjax.shapley(additive_game(np.ones(3)), 2.5, key=KEY)


def test_budget_too_small_names_the_minimum():
    with pytest.raises(ValueError, match=r"n_evals=5 .* at least 22"):  # 2M + 2: full rank, see kernel.min_evals
        shapjax.shapley(additive_game(np.ones(10)), 10, key=KEY, method="kernel", n_evals=5)
    with pytest.raises(ValueError, match="at least 20"):
        shapjax.shapley(additive_game(np.ones(10)), 10, key=KEY, method="antithetic", n_evals=19)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="valid methods: .*kernel"):
        shapjax.shapley(additive_game(np.ones(3)), 3, key=KEY, method="kernal")


def test_exact_refuses_too_many_players():
    with pytest.raises(ValueError, match="n_players <= 20"):
        shapjax.shapley(additive_game(np.ones(21)), 21, key=KEY, method="exact")


def test_value_fn_wrong_shape():
    with pytest.raises(ValueError, match="value_fn must return"):
        shapjax.shapley(lambda z: jnp.zeros((3,)), 4, key=KEY, n_evals=64)
    with pytest.raises(ValueError, match="value_fn must return"):
        shapjax.shapley(lambda z: jnp.zeros((z.shape[0], 2, 2)), 4, key=KEY, n_evals=64)


def test_value_fn_nan():
    with pytest.raises(ValueError, match="NaN"):
        shapjax.shapley(lambda z: jnp.log(z.astype(jnp.float32).sum(-1) - 2.0), 4, key=KEY, n_evals=64)


def test_missing_or_bad_key():
    with pytest.raises(TypeError, match="key"):
        shapjax.shapley(additive_game(np.ones(3)), 3, key=None)
    with pytest.raises(TypeError, match="key"):
        shapjax.shapley(additive_game(np.ones(3)), 3, key=0)


@pytest.mark.parametrize("method", ["kernel", "leverage"])
def test_minimum_budget_is_enough_for_the_regression(method):
    M = 49
    g = random_network_game(M, key=jax.random.key(0))
    res = shapjax.shapley(g, M, key=KEY, method=method, n_evals=shapjax.ESTIMATORS[method].min_evals(M))
    assert np.all(np.isfinite(np.asarray(res.values)))
    np.testing.assert_allclose(res.values.sum(0), res.full_value - res.base_value, atol=1e-4)
