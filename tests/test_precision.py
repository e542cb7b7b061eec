"""precision="float64": full enumeration exact to ~1e-12 (float32 stops at ~1e-5 for the regressions)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapjax
from shapjax import maskers, segment

M = 10


def _params():
    rng = np.random.default_rng(0)
    return rng.normal(size=(M, 16)) / np.sqrt(M), rng.normal(size=16) * 0.5, rng.normal(size=(16, 3)) / 4


def _game():
    """A float64 two-layer network on the coalition vector, its parameters passed as data (float64 leaves)."""
    net = lambda p, z: jnp.tanh(z.astype(jnp.result_type(float)) @ p[0] + p[1]) @ p[2]  # noqa: E731
    return jax.tree_util.Partial(net, _params())


def _reference():
    """Shapley values by the textbook formula in float64 NumPy."""
    W1, b1, W2 = _params()
    r = np.arange(2**M)
    Z = ((r[:, None] >> np.arange(M)[None]) & 1).astype(bool)
    v = np.tanh(Z.astype(np.float64) @ W1 + b1) @ W2
    size = Z.sum(1)
    f = [math.factorial(k) for k in range(M + 1)]
    phi = np.zeros((M, 3))
    for i in range(M):
        wo = r[~Z[:, i]]
        w = np.array([f[s] * f[M - s - 1] / f[M] for s in size[wo]])
        phi[i] = w @ (v[wo | (1 << i)] - v[wo])
    return phi


REF = _reference()


def test_exact_enumeration_in_float64_matches_to_1e12():
    r = shapjax.shapley(_game(), M, key=jax.random.key(0), method="exact", precision="float64")
    assert r.values.dtype == jnp.float64 and r.base_value.dtype == jnp.float64
    assert np.abs(np.asarray(r.values) - REF).max() <= 1e-12 * np.abs(REF).max()


@pytest.mark.parametrize("method", ["kernel", "leverage"])
def test_regressions_at_full_enumeration_in_float64_match_to_1e10(method):
    r64 = shapjax.shapley(_game(), M, key=jax.random.key(0), method=method, n_evals=2**M, precision="float64")
    r32 = shapjax.shapley(_game(), M, key=jax.random.key(0), method=method, n_evals=2**M)
    err64 = np.abs(np.asarray(r64.values) - REF).max() / np.abs(REF).max()
    err32 = np.abs(np.asarray(r32.values) - REF).max() / np.abs(REF).max()
    assert r64.values.dtype == jnp.float64 and r32.values.dtype == jnp.float32
    assert err64 <= 1e-10, err64
    assert err32 > 1e3 * err64  # float32 is what it was (~1e-5)


def test_sampling_estimators_run_in_float64_with_float64_standard_errors():
    for method in ("kernel", "permutation"):
        r = shapjax.shapley(_game(), M, key=jax.random.key(1), method=method, n_evals=300, precision="float64")
        assert r.values.dtype == jnp.float64 and r.std.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(r.values).sum(0), np.asarray(r.full_value - r.base_value), atol=1e-12)


def test_bad_precision_names_the_argument():
    with pytest.raises(ValueError, match="precision='float16'"):
        shapjax.shapley(_game(), M, key=jax.random.key(0), precision="float16")
    with pytest.raises(ValueError, match="precision"):
        shapjax.explain(lambda x: x.reshape(x.shape[0], -1)[:, :2], np.zeros((1, 4, 4, 1), np.float32),
                        key=jax.random.key(0), segments=segment.grid(2, 2), masker=maskers.constant(0.0),
                        precision=64)


def test_explain_in_float64_is_efficient_to_1e12():
    rng = np.random.default_rng(1)
    Wm = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
    model = jax.tree_util.Partial(lambda w, x: jnp.tanh(x.reshape(x.shape[0], -1) @ w), Wm)
    x = rng.uniform(size=(2, 4, 4, 1)).astype(np.float32)
    e = shapjax.explain(model, x, key=jax.random.key(0), segments=segment.grid(2, 2), masker=maskers.constant(0.0),
                        method="exact", precision="float64")
    assert e.values.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(e.values).sum(1), np.asarray(e.full_values - e.base_values), atol=1e-12)
    k = shapjax.explain(model, x, key=jax.random.key(0), segments=segment.grid(2, 2), masker=maskers.constant(0.0),
                        method="kernel", n_evals=16, precision="float64")
    np.testing.assert_allclose(np.asarray(k.values), np.asarray(e.values), atol=1e-12)
