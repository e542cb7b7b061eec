"""ControlSHAP: a control variate from the model's gradient and Hessian (shapjax.image.controlshap)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapjax
from shapjax import maskers, segment
from shapjax.engine.games import brute_force_shapley
from shapjax.image import controlshap

RNG = np.random.default_rng(1)
PARAMS = tuple(jnp.asarray(RNG.normal(size=s), jnp.float32) for s in [(64, 2), (64,), (64,)])
X = RNG.uniform(size=(2, 8, 8, 1)).astype(np.float32)


def _near_quadratic(p, x):
    """Linear in the pixels plus a quadratic term and a small non-polynomial wiggle: a game close to
    quadratic (and, without the square, close to linear) in the segment mask."""
    f = x.reshape(x.shape[0], -1) / 8
    return f @ p[0] + 0.3 * ((f @ p[1]) ** 2)[:, None] + 0.03 * jnp.sin(3 * f @ p[2])[:, None]


MODEL = jax.tree_util.Partial(_near_quadratic, PARAMS)
KW = dict(segments=segment.grid(3, 4), masker=maskers.constant(0.0), outputs=None)


@pytest.fixture(scope="module")
def exact():
    return np.asarray(shapjax.explain(MODEL, X, key=jax.random.key(0), method="exact", **KW).values)


def _errors(method, exact, n_evals=200, seeds=range(4)):
    f = jax.jit(lambda k: shapjax.explain(MODEL, X, key=k, method=method, n_evals=n_evals, **KW))
    out = [f(jax.random.key(s)) for s in seeds]
    return np.asarray([np.linalg.norm(np.asarray(e.values) - exact) / np.linalg.norm(exact) for e in out]), out


def test_error_far_below_plain_permutation_sampling_at_the_same_budget(exact):
    plain, _ = _errors("permutation", exact)
    cv, out = _errors("controlshap", exact)
    assert out[0].method == "controlshap"
    assert cv.mean() < 0.25 * plain.mean(), (cv.mean(), plain.mean())  # measured 0.004 vs 0.045
    e = out[0]
    np.testing.assert_allclose(np.asarray(e.values).sum(1), np.asarray(e.full_values - e.base_values), atol=1e-5)


def test_closed_form_values_of_the_surrogate_are_its_shapley_values():
    x = jnp.asarray(X[:1])
    seg = jnp.asarray(segment.grid(3, 4)(x))
    repl = maskers.constant(0.0).replacement(x, seg, 12)
    h0, G, H = controlshap.taylor(lambda im: MODEL(im), x, repl, seg, jnp.arange(2)[None], n_segments=12)
    game = lambda z: controlshap.surrogate_values(z, h0, G, H)[0]  # noqa: E731
    np.testing.assert_allclose(brute_force_shapley(game, 12), np.asarray(G[0]), atol=1e-6)


def test_unbiased_calibrated_and_efficient_on_small_m():
    """6 segments (one unused by the second image), a non-quadratic model, 20 permutations: over 24 keys the mean
    estimate is within its standard error of exact enumeration, and the reported intervals cover it."""
    model = jax.tree_util.Partial(lambda p, x: jnp.tanh(2 * x.reshape(x.shape[0], -1) @ p / 8), PARAMS[0])
    seg = np.stack([np.repeat(np.arange(6), 64 // 6 + 1)[:64].reshape(8, 8)] * 2)
    seg[1][seg[1] == 5] = 4  # image 1 has no segment 5
    kw = dict(segments=seg, masker=maskers.constant(0.0), outputs=None, n_segments=6)
    exact = np.asarray(shapjax.explain(model, X, key=jax.random.key(0), method="exact", **kw).values)
    f = jax.jit(lambda k: shapjax.explain(model, X, key=k, method="controlshap", n_evals=101, **kw))
    runs = [f(jax.random.key(s)) for s in range(24)]
    vals = np.stack([np.asarray(r.values) for r in runs])
    std = np.stack([np.asarray(r.std) for r in runs])
    assert np.all(vals[:, 1, 5] == 0.0)  # the unused segment
    se = np.sqrt(np.mean(std**2, 0) / len(runs)) + 1e-6
    assert np.all(np.abs(vals.mean(0) - exact) <= 4 * se), np.abs(vals.mean(0) - exact) / se
    live = std > 0
    assert np.mean((np.abs(vals - exact[None]) <= 1.96 * std + 1e-6)[live]) >= 0.8
    for r in runs[:3]:
        np.testing.assert_allclose(np.asarray(r.values).sum(1), np.asarray(r.full_values - r.base_values), atol=1e-5)


def test_bad_combinations_are_clear_errors():
    with pytest.raises(ValueError, match="does not combine with tol"):
        shapjax.explain(MODEL, X, key=jax.random.key(0), method="controlshap", tol=0.1, **KW)
    with pytest.raises(ValueError, match="valid methods: .*controlshap"):
        shapjax.explain(MODEL, X, key=jax.random.key(0), method="controlshap-kernel", **KW)
