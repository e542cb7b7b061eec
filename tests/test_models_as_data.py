"""Models are data: flax nnx / linen, equinox, Keras-JAX, Partial and plain closures travel as traced
arguments — a changed model is never stale and never recompiles; gradients flow through explain."""
from __future__ import annotations

import functools
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import shapjax
from shapjax import maskers, segment
from shapjax._util.modelfn import join_model, split_model
from shapjax.image.explain import _explain_impl

IMGS = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
KW = dict(key=jax.random.key(0), segments=segment.grid(2, 2), masker=maskers.constant(0.0), method="exact")


def _linear(p, x):
    return jnp.einsum("nhwc,hwck->nk", x, p)


def _check_twice(make_model, update, reference):
    """explain, change the model, explain again: right values both times, one compilation."""
    model = make_model()
    first = shapjax.explain(model, IMGS, **KW)
    np.testing.assert_allclose(first.full_values, reference(model), rtol=1e-5, atol=1e-5)
    n = _explain_impl._cache_size()
    model = update(model)
    second = shapjax.explain(model, IMGS, **KW)
    np.testing.assert_allclose(second.full_values, reference(model), rtol=1e-5, atol=1e-5)
    assert not np.allclose(first.full_values, second.full_values), "the update did not change the model"
    assert _explain_impl._cache_size() == n, "the changed model recompiled explain"
    # exact Shapley values add up to v(all) - v(empty) of the *new* model
    np.testing.assert_allclose(second.values.sum(1), second.full_values - second.base_values, atol=1e-4)


def test_nnx_module_updated_in_place_by_an_optimizer():
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(64, 2, rngs=rngs)

        def __call__(self, x):
            return self.lin(x.reshape(x.shape[0], -1))

    def step(m):
        opt = nnx.Optimizer(m, optax.sgd(0.5), wrt=nnx.Param)
        for _ in range(3):  # in place: the same Python object afterwards
            opt.update(m, nnx.grad(lambda mm: mm(IMGS).sum())(m))
        return m

    _check_twice(lambda: Net(nnx.Rngs(0)), step, lambda m: m(IMGS))


def test_linen_model_with_replaced_variables():
    import flax.linen as nn

    module = nn.Dense(2)
    flat = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731
    v0 = module.init(jax.random.key(1), flat(IMGS))
    state = {"variables": v0}
    # a new closure per call over the current variables: lifted, not compiled in
    make = lambda: (lambda x: module.apply(state["variables"], flat(x)))  # noqa: E731

    def update(_):
        state["variables"] = jax.tree_util.tree_map(lambda a: a * 3 + 1, state["variables"])
        return make()

    _check_twice(make, update, lambda f: module.apply(state["variables"], flat(IMGS)))


def test_equinox_module_replaced():
    eqx = pytest.importorskip("equinox", reason="equinox is an optional dependency")

    class Net(eqx.Module):
        w: jax.Array
        act: callable = eqx.field(static=True, default=jnp.tanh)

        def __call__(self, x):
            return self.act(x.reshape(x.shape[0], -1) @ self.w)

    _check_twice(lambda: Net(jax.random.normal(jax.random.key(2), (64, 2))),
                 lambda m: eqx.tree_at(lambda t: t.w, m, m.w * 2 + 0.5), lambda m: m(IMGS))


def test_keras_jax_model_variables_assigned():
    if os.environ.get("KERAS_BACKEND", "jax") != "jax":
        pytest.skip("KERAS_BACKEND is not jax")
    os.environ["KERAS_BACKEND"] = "jax"
    keras = pytest.importorskip("keras", reason="keras is an optional dependency")
    if keras.backend.backend() != "jax":
        pytest.skip("keras was imported with another backend")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(4, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(2)])

    def update(m):
        m.layers[-1].kernel.assign(m.layers[-1].kernel * 3 + 0.1)  # in place
        return m

    _check_twice(lambda: model, update, lambda m: np.asarray(m(np.asarray(IMGS), training=False)))


def test_partial_functools_partial_and_closures_over_globals():
    _check_twice(lambda: jax.tree_util.Partial(_linear, jax.random.normal(jax.random.key(3), (8, 8, 1, 2))),
                 lambda f: jax.tree_util.Partial(_linear, f.args[0] * 2), lambda f: f(IMGS))
    _check_twice(lambda: functools.partial(_linear, jax.random.normal(jax.random.key(4), (8, 8, 1, 2))),
                 lambda f: functools.partial(_linear, f.args[0] + 1), lambda f: f(IMGS))
    global _WEIGHTS
    _WEIGHTS = jax.random.normal(jax.random.key(5), (8, 8, 1, 2))

    def model(x):
        return _linear(_WEIGHTS, x)  # a module global, reassigned below

    def update(f):
        global _WEIGHTS
        _WEIGHTS = _WEIGHTS * -2
        return f

    _check_twice(lambda: model, update, lambda f: _linear(_WEIGHTS, IMGS))


def test_arrays_reached_only_indirectly_warn_and_are_never_stale():
    holder = type("Holder", (), {})()
    holder.w = jax.random.normal(jax.random.key(6), (8, 8, 1, 2))
    model = lambda x: _linear(holder.w, x)  # noqa: E731 - reaches w through an attribute
    with pytest.warns(UserWarning, match="compiled into the program as constants"):
        a = shapjax.explain(model, IMGS, **KW)
    holder.w = holder.w * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = shapjax.explain(model, IMGS, **KW)
    np.testing.assert_allclose(b.full_values, 2 * a.full_values, rtol=1e-5)  # recompiled, not stale


def test_shapley_game_parameters_are_data():
    from shapjax.engine.shapley import _shapley_impl

    w1 = jnp.arange(5.0)
    game = jax.tree_util.Partial(lambda w, z: z.astype(jnp.float32) @ w, w1)
    r1 = shapjax.shapley(game, 5, key=jax.random.key(0), method="exact")
    n = _shapley_impl._cache_size()
    r2 = shapjax.shapley(jax.tree_util.Partial(game.func, w1 * 3), 5, key=jax.random.key(0), method="exact")
    np.testing.assert_allclose(r1.values, w1, atol=1e-5)
    np.testing.assert_allclose(r2.values, 3 * w1, atol=1e-5)
    # a new closure per call over new weights: one more program (a closure, not a Partial), then no more
    for scale in (1.0, 2.0, 5.0):
        w = w1 * scale + 1
        r = shapjax.shapley(lambda z: z.astype(jnp.float32) @ w, 5, key=jax.random.key(0), method="exact")
        np.testing.assert_allclose(r.values, w, atol=1e-4)
    assert _shapley_impl._cache_size() == n + 1


def test_split_and_join_round_trip_every_kind():
    clf = shapjax.models.small_cnn(key=jax.random.key(0), input_shape=(8, 8, 1), widths=(4,), hidden=0,
                                   num_classes=3)
    for model in (clf, jax.tree_util.Partial(_linear, jnp.ones((8, 8, 1, 2))), functools.partial(_linear, jnp.ones((8, 8, 1, 2)))):
        static, dynamic = split_model(model)
        hash(static)
        np.testing.assert_allclose(join_model(static, dynamic)(IMGS), model(IMGS), rtol=1e-6)
        assert jax.tree_util.tree_leaves(dynamic), "the weights must travel as data"
    with pytest.raises(TypeError, match="model_fn"):
        split_model(3)


def test_jitted_train_step_with_explain_and_grad_traces_once():
    """A training step that explains a batch and differentiates through the explanation."""
    traces = []
    opt = optax.adam(1e-2)

    def loss(p, x):
        traces.append(1)
        exp = shapjax.explain(jax.tree_util.Partial(_linear, p), x, key=jax.random.key(0), segments=segment.grid(2, 2),
                              masker=maskers.constant(0.0), method="kernel", n_evals=16, n_segments=4, outputs=[0])
        # e.g. a right-for-the-right-reasons penalty: attribution mass on segment 0
        return jnp.sum(exp.values[:, 0, 0] ** 2) + 1e-3 * jnp.sum(p ** 2)

    @jax.jit
    def step(p, s, x):
        val, g = jax.value_and_grad(loss)(p, x)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, val

    p = jax.random.normal(jax.random.key(7), (8, 8, 1, 2))
    s = opt.init(p)
    vals = []
    for _ in range(4):
        p, s, v = step(p, s, IMGS)
        vals.append(float(v))
    assert len(traces) == 1, f"the step traced {len(traces)} times"
    assert vals[-1] < vals[0]
    # the gradient through explain equals the analytic one: values[:, 0, 0] = sum over segment 0 of x * w[..., 0]
    x = IMGS
    seg0 = (np.asarray(segment.grid(2, 2)(x))[0] == 0)[..., None]
    g = jax.grad(lambda q: loss(q, x) - 1e-3 * jnp.sum(q ** 2))(p)
    expect = np.zeros(p.shape)
    vals0 = np.asarray(jnp.einsum("nhwc,hwc->n", x * seg0, p[..., 0]))
    expect[..., 0] = 2 * np.einsum("n,nhwc->hwc", vals0, np.asarray(x) * seg0)
    np.testing.assert_allclose(g, expect, rtol=1e-3, atol=1e-4)


_ROWS = jnp.arange(12.0).reshape(3, 4)
_ROW = 0


def test_a_global_index_read_by_a_game_is_never_stale():
    # a game reading a global int (a loop index) must not reuse the program compiled for its old value
    global _ROW
    for i in range(3):
        _ROW = i
        r = shapjax.shapley(lambda z: z.astype(jnp.float32) @ _ROWS[_ROW], 4, key=jax.random.key(0), method="exact")
        np.testing.assert_allclose(np.asarray(r.values), np.asarray(_ROWS[i]), atol=1e-5)
