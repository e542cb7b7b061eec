"""Bucketed designs (issue 19) and the array-code samplers (issue 20)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapjax
from shapjax import maskers
from shapjax._util.compile_log import CompileLog
from shapjax.engine import samplers
from shapjax.engine.estimators import ESTIMATORS
from shapjax.engine.estimators import layout as L
from shapjax.engine.games import random_network_game
from shapjax.engine.shapley import with_ends

KEY = jax.random.key(0)


def test_bucket_four_shapes_per_octave():
    assert [L.bucket(n) for n in (1, 8, 9, 10, 11, 16, 17, 100, 1000, 1024, 1025)] == \
        [1, 8, 10, 10, 12, 16, 20, 112, 1024, 1024, 1280]
    for n in range(1, 5000, 37):
        assert n <= L.bucket(n) <= 1.25 * n + 1


def test_random_subsets_sizes_and_uniform_marginals():
    sizes = jnp.array([0, 1, 2, 5, 9, 10] * 2000)
    z = np.asarray(samplers.random_subsets(sizes, 10, key=KEY))
    np.testing.assert_array_equal(z.sum(1), np.asarray(sizes))
    rows = z[np.asarray(sizes) == 2]
    np.testing.assert_allclose(rows.mean(0), 0.2, atol=0.03)


def test_distinct_ranks_is_a_permutation():
    keys = jax.random.bits(KEY, (1, L.ROUNDS), jnp.uint32)
    for n in (1, 2, 5, 64, 1001):
        r = samplers.distinct_ranks(jnp.arange(n), jnp.full((n,), n), jnp.broadcast_to(keys, (n, L.ROUNDS)))
        assert sorted(np.asarray(r).tolist()) == list(range(n))


@pytest.mark.parametrize("method", ["kernel", "leverage", "permutation", "antithetic", "stratified"])
def test_a_bucket_gives_the_unbucketed_design_and_estimate(method):
    M, n = 11, 333
    est = ESTIMATORS[method]
    live = est.used_evals(M, n) - 2
    g = random_network_game(M, key=jax.random.key(3))
    out = []
    for rows in (live, L.bucket(live), L.bucket(live) + 40):
        lay, st = est.layout(M, n, n_rows=rows)
        assert st.n_rows >= rows and int(lay.n_live) == live
        d = est.build(M, lay, st, key=KEY)
        Z = d.coalitions
        if method in ("kernel", "leverage"):
            assert not np.asarray(Z[live:]).any() and not np.asarray(d.aux.weights[live:]).any()
        V = g(with_ends(Z))
        phi, std = est.layout_solve(d, V[2:], V[0], V[1], None)
        out.append((np.asarray(Z[:live]), np.asarray(phi), np.asarray(std)))
    # the estimator's own (unbucketed) design is the live part of every bucket
    d = est.design(M, n, key=KEY)
    np.testing.assert_array_equal(np.asarray(d.coalitions), out[0][0])
    for Z, phi, std in out[1:]:
        np.testing.assert_array_equal(Z, out[0][0])
        np.testing.assert_allclose(phi, out[0][1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(std, out[0][2], rtol=1e-4, atol=1e-6)


def test_leverage_draws_without_replacement_within_a_size():
    M, n = 10, 700
    lay, st = ESTIMATORS["leverage"].layout(M, n)
    Z = np.asarray(L.build(M, lay, st, key=KEY).coalitions)
    live = int(lay.n_live)
    for s in range(1, M):  # (the middle size: the drawn coalitions, not their complements)
        rows = [tuple(r) for r, k, f in zip(Z[:live], lay.kind[:live], lay.flip[:live])
                if k == 1 and r.sum() == s and not (2 * s == M and f)]
        assert len(rows) == len(set(rows)), s
        assert len(rows) <= math.comb(M, s)


def test_design_program_size_does_not_grow_with_players():
    def n_eqns(M, method):
        est = ESTIMATORS[method]
        n = 4 * M + 2
        lay, st = est.layout(M, n)
        return len(jax.make_jaxpr(lambda k, lay: L.build(M, lay, st, key=k).coalitions)(KEY, lay).eqns)

    for method in ("kernel", "leverage"):
        small, big = n_eqns(64, method), n_eqns(1024, method)
        assert big <= small + 10, (method, small, big)


def test_no_recompilation_inside_a_bucket_shapley():
    g = random_network_game(12, key=jax.random.key(1))
    for method in ("kernel", "leverage", "permutation", "antithetic", "stratified"):
        a = shapjax.shapley(g, 12, key=KEY, method=method, n_evals=300)  # bucket of 298 design rows: 320
        with CompileLog() as log:
            b = shapjax.shapley(g, 12, key=KEY, method=method, n_evals=310)
        assert log.count("_shapley_impl") == 0, (method, log.by_name)
        est = ESTIMATORS[method]
        assert (a.n_evals, b.n_evals) == (est.used_evals(12, 300), est.used_evals(12, 310))
        assert a.n_evals < b.n_evals
        assert not np.allclose(a.values, b.values)


def _tiny_model():
    w = jax.random.normal(jax.random.key(2), (8 * 8, 3)) / 8
    return lambda x: x.reshape(x.shape[0], -1) @ w


@pytest.mark.parametrize("method,second", [("kernel", 205), ("permutation", 215), ("stratified", 215)])
def test_no_recompilation_inside_a_bucket_explain(method, second):
    model = _tiny_model()
    x = jax.random.uniform(jax.random.key(4), (10, 8, 8, 1))
    seg = shapjax.segment.grid(4, 4)
    kw = dict(segments=seg, masker=maskers.constant(0.0), method=method, outputs=[0, 1])
    first = shapjax.explain(model, x[:9], key=KEY, n_evals=200, **kw)
    with CompileLog() as log:
        same_bucket = shapjax.explain(model, x[:10], key=KEY, n_evals=second, **kw)  # 9 -> 10 images, more evals
    assert log.count("_explain_impl") == 0, log.by_name  # (a few tiny eager ops of the new shapes may compile)
    assert same_bucket.values.shape == (10, 16, 2) and first.values.shape == (9, 16, 2)
    assert same_bucket.n_evals > first.n_evals
    again = shapjax.explain(model, x[:10], key=KEY, n_evals=200, **kw)
    np.testing.assert_allclose(again.values[:9], first.values, rtol=1e-5, atol=1e-6)
    # the padded images are skipped, the live ones are the same as explained alone
    np.testing.assert_allclose(first.values.sum(1), first.full_values - first.base_values, atol=1e-4)


def test_plans_at_4096_players():
    for method in ("kernel", "leverage"):
        est = ESTIMATORS[method]
        n = 2 * 4096 + 2 + 1024
        assert est.used_evals(4096, n) <= n
        lay, st = est.layout(4096, n, n_rows=L.bucket(est.used_evals(4096, n) - 2))
        assert st.max_unrank <= 2 and int(lay.n_live) == est.used_evals(4096, n) - 2


def test_draw_sizes_follows_the_distribution_and_does_not_depend_on_the_count():
    p = np.array([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    d = np.asarray(L.draw_sizes(p, 200_000, key=KEY))
    assert set(np.unique(d)) <= {1, 3, 4}  # sizes of zero probability are never drawn
    np.testing.assert_allclose(np.bincount(d, minlength=6) / d.size, p, atol=0.005)
    np.testing.assert_array_equal(np.asarray(L.draw_sizes(p, 1000, key=KEY)), d[:1000])  # a bucket's draws
    one = np.array([0.0, 0.0, 1.0])
    assert (np.asarray(L.draw_sizes(one, 1000, key=KEY)) == 2).all()
