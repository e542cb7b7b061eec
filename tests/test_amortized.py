"""shapjax.amortized: the FastSHAP explainer learns Shapley values of a game with a known answer,
keeps efficiency exactly, runs under jit, round-trips through its checkpoint and refuses what it was
not trained for."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import shapjax
from shapjax import amortized, maskers, segment

H = W = 8
K = 3
GRID = segment.grid(2, 2)


def _linear_model(seed=0):
    w = jax.random.normal(jax.random.key(seed), (H * W, K)) * 0.5
    return jax.tree_util.Partial(lambda w, x: x.reshape(x.shape[0], -1) @ w, w)


def _exact(model, x):
    # constant(0) masker + a linear model: v(S) = sum of the contributions of the segments in S
    seg = np.asarray(GRID(x))[0]
    w = np.asarray(model.args[0])
    flat = np.asarray(x).reshape(len(x), -1)
    onehot = np.eye(4)[seg.reshape(-1)]  # [HW, M]
    return np.einsum("bp,pk,pm->bmk", flat, w, onehot)


def _blocks(key, n):
    """Images whose 2x2 grid cells are flat grey levels (plus a little noise): the explainer has 4 numbers
    to read per image, so a tiny network learns the game in a few hundred steps."""
    a = jnp.repeat(jnp.repeat(jax.random.uniform(key, (n, 2, 2, 1)), 4, 1), 4, 2)
    noise = 0.02 * jax.random.normal(jax.random.fold_in(key, 1), a.shape)
    return np.asarray(jnp.clip(a + noise, 0.0, 1.0))


@pytest.fixture(scope="module")
def trained():
    model = _linear_model()
    res = amortized.train(model, _blocks(jax.random.key(1), 400), key=jax.random.key(2), segments=GRID,
                          masker=maskers.constant(0.0), epochs=15, batch_size=20, n_pairs=4, learning_rate=1e-2,
                          widths=(16,), hidden=64, patience=15)
    return model, res, _blocks(jax.random.key(3), 16)


def test_learns_the_shapley_values_of_a_known_game(trained):
    model, res, test = trained
    exp = res.explainer(test)
    exact = _exact(model, test)
    err = np.linalg.norm(np.asarray(exp.values) - exact) / np.linalg.norm(exact)
    assert err < 0.1, err
    assert res.history[-1]["heldout_loss"] < res.history[0]["heldout_loss"]
    assert exp.method == "amortized" and exp.values.shape == (16, 4, K) and exp.std is None


def test_efficiency_holds_exactly(trained):
    _, res, test = trained
    exp = res.explainer(test, outputs="top-2")
    np.testing.assert_allclose(np.asarray(exp.values.sum(1)), np.asarray(exp.full_values - exp.base_values),
                               rtol=1e-5, atol=1e-5)


def test_jittable_and_batched(trained):
    _, res, test = trained
    e = res.explainer
    eager = np.asarray(e(test, outputs=[2, 0]).values)
    jitted = jax.jit(lambda e, x: e(x, outputs=[2, 0]).values)(e, jnp.asarray(test))
    np.testing.assert_allclose(np.asarray(jitted), eager, rtol=1e-5, atol=1e-6)
    one = e(test[0]).values  # a single [H, W, C] image
    np.testing.assert_allclose(np.asarray(one[0]), np.asarray(e(test).values[0]), rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip_and_model_identity(trained, tmp_path):
    model, res, test = trained
    path = amortized.save(tmp_path / "exp", res.explainer, metadata=res.metadata)
    back = amortized.load(path, model)
    np.testing.assert_array_equal(np.asarray(back(test).values), np.asarray(res.explainer(test).values))
    meta = amortized.read_metadata(path)
    assert meta["segments"] == "grid(2x2)" and meta["masker"] == "constant(0)" and "history" in meta
    with pytest.raises(ValueError, match="fingerprint"):
        amortized.load(path, _linear_model(seed=5))
    with pytest.raises(ValueError, match="masker"):
        amortized.load(path, model, masker=maskers.constant(0.5))


def test_explain_facade_method_amortized(trained, tmp_path):
    model, res, test = trained
    exp = shapjax.explain(model, test, method="amortized", segments=GRID, masker=maskers.constant(0.0),
                          outputs=1, explainer=res.explainer)
    assert exp.values.shape == (16, 4, 1) and exp.method == "amortized"
    path = amortized.save(tmp_path / "e", res.explainer)
    exp2 = shapjax.explain(model, test, method="amortized", segments=GRID, masker=maskers.constant(0.0),
                           outputs=1, explainer=str(path))
    np.testing.assert_allclose(np.asarray(exp2.values), np.asarray(exp.values), rtol=1e-6)
    with pytest.raises(ValueError, match="no shipped explainer matches"):
        shapjax.explain(model, test, method="amortized", segments=GRID, masker=maskers.constant(0.0))
    with pytest.raises(ValueError, match="segments"):
        shapjax.explain(model, test, method="amortized", segments=segment.grid(4, 4), masker=maskers.constant(0.0),
                        explainer=res.explainer)
    with pytest.raises(ValueError, match="fingerprint"):
        shapjax.explain(_linear_model(seed=7), test, method="amortized", segments=GRID,
                        masker=maskers.constant(0.0), explainer=res.explainer)
    with pytest.raises(TypeError, match="explainer"):
        shapjax.explain(model, test, key=jax.random.key(0), method="kernel", segments=GRID,
                        masker=maskers.constant(0.0), explainer=res.explainer)


def test_bad_inputs(trained):
    model, res, test = trained
    x = test
    kw = dict(key=jax.random.key(0), masker=maskers.constant(0.0))
    with pytest.raises(ValueError, match="segments"):
        amortized.train(model, x, segments=segment.slic(4), **kw)
    with pytest.raises(ValueError, match="outputs"):
        amortized.train(model, x, segments=GRID, outputs="top-1", **kw)
    with pytest.raises(ValueError, match="outputs"):
        amortized.train(model, x, segments=GRID, outputs=[0, 9], **kw)
    with pytest.raises(TypeError, match="masker"):
        amortized.train(model, x, segments=GRID, key=jax.random.key(0), masker="constant")
    with pytest.raises(ValueError, match="heldout"):
        amortized.train(model, x, segments=GRID, heldout=1.5, **kw)
    with pytest.raises(TypeError, match="floating-point"):
        amortized.train(model, (x * 255).astype(np.uint8), segments=GRID, **kw)
    with pytest.raises(ValueError, match="shape"):
        res.explainer(np.zeros((2, 9, 9, 1), np.float32))
    with pytest.raises(ValueError, match="outputs"):
        res.explainer(x, outputs=7)
    with pytest.raises(ValueError, match="name"):
        amortized.pretrained("no-such-explainer")


def test_one_coalition_table_reused_every_epoch():
    """resample=False: the model is evaluated once per image (a fixed table), epochs reuse it."""
    model = _linear_model()
    x = _blocks(jax.random.key(1), 400)
    res = amortized.train(model, x, key=jax.random.key(2), segments=GRID, masker=maskers.constant(0.0), epochs=15,
                          batch_size=20, n_pairs=4, learning_rate=1e-2, widths=(16,), hidden=64, patience=15,
                          resample=False)
    assert 400 * (2 * 4 + 1) < res.metadata["training_model_evals"] <= 400 * (2 * 4 + 2)
    test = _blocks(jax.random.key(3), 16)
    exact = _exact(model, test)
    err = np.linalg.norm(np.asarray(res.explainer(test).values) - exact) / np.linalg.norm(exact)
    assert err < 0.1, err


def test_partial_outputs_are_refused_where_not_trained():
    model = _linear_model()
    x = np.asarray(jax.random.uniform(jax.random.key(1), (40, H, W, 1)))
    res = amortized.train(model, x, key=jax.random.key(2), segments=GRID, masker=maskers.constant(0.0), epochs=1,
                          batch_size=20, n_pairs=2, outputs=[1], widths=(4,), hidden=8)
    assert res.explainer(x[:2], outputs=1).values.shape == (2, 4, 1)
    with pytest.raises(ValueError, match="trained for outputs"):
        res.explainer(x[:2], outputs=0)


def test_paired_coalitions_follow_the_shapley_kernel():
    Z = np.asarray(amortized.sample_coalitions(50, 6, 40, key=jax.random.key(0)))
    assert Z.shape == (50, 80, 6)
    np.testing.assert_array_equal(Z[:, 1::2], ~Z[:, 0::2])
    sizes = Z[:, 0::2].sum(-1).ravel()
    assert sizes.min() >= 1 and sizes.max() <= 5
    from shapjax.kernels.weights import shapley_kernel_size_mass

    freq = np.bincount(sizes, minlength=7) / sizes.size
    np.testing.assert_allclose(freq[1:6], shapley_kernel_size_mass(6)[1:6], atol=0.03)


def test_side_by_side_with_the_classifier_in_one_jitted_step():
    """The docs example: classifier and explainer trained together, one jitted optax step."""
    clf_w = jnp.zeros((H * W, K))
    x = jax.random.uniform(jax.random.key(0), (32, H, W, 1))
    y = jax.random.randint(jax.random.key(1), (32,), 0, K)
    seg = jnp.asarray(GRID(x))[0]
    net = amortized.ExplainerNet(n_players=4, n_outputs=K, widths=(4,), hidden=16)
    exp_p = amortized.init_params(net, (H, W, 1), key=jax.random.key(2))
    opt = optax.adam(1e-2)
    params = (clf_w, exp_p)
    state = opt.init(params)
    masker = maskers.constant(0.0)

    def loss(params, x, y, key):
        w, p = params
        logits = x.reshape(len(x), -1) @ w
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        model_fn = lambda z: z.reshape(len(z), -1) @ jax.lax.stop_gradient(w)  # noqa: E731
        shap_loss, _ = amortized.fastshap_loss(net.apply, p, model_fn, x, key=key, segments=seg, masker=masker,
                                               n_players=4, n_pairs=2)
        return ce + shap_loss

    @jax.jit
    def step(params, state, x, y, key):
        val, g = jax.value_and_grad(loss)(params, x, y, key)
        upd, state = opt.update(g, state, params)
        return optax.apply_updates(params, upd), state, val

    first = None
    for i in range(30):
        params, state, val = step(params, state, x, y, jax.random.key(i))
        first = float(val) if first is None else first
    assert float(val) < first


def test_cli_amortize_then_explain(tmp_path, capsys):
    from shapjax.cli.app import main

    ck = tmp_path / "exp"
    assert main(["--no-cache", "amortize", "--model", "mnist-cnn", "--data", "samples:mnist", "--n", "8",
                 "--segments", "grid:2x2", "--epochs", "1", "--batch-size", "4", "--n-pairs", "1",
                 "--out", str(ck), "--no-progress"]) == 0
    assert (tmp_path / "exp.json").is_file()
    out = tmp_path / "out"
    assert main(["--no-cache", "-q", "explain", "samples:mnist:4", "--method", "amortized", "--explainer",
                 str(ck) + ".msgpack", "--segments", "grid:2x2", "--masker", "constant:0", "--top-k", "1",
                 "--out", str(out), "--figures", "0"]) == 0
    r = np.load(out / "results.npz")
    assert r["values"].shape == (4, 4, 1)
    np.testing.assert_allclose(r["values"].sum(1), r["full_values"] - r["base_values"], rtol=1e-4, atol=1e-4)
    capsys.readouterr()
    assert main(["--no-cache", "-q", "explain", "samples:mnist:2", "--method", "amortized", "--segments", "grid:5x5",
                 "--masker", "constant:0", "--out", str(tmp_path / "o2")]) == 2
    assert "no shipped explainer matches" in capsys.readouterr().err


def test_shipped_explainers_match_the_shipped_models():
    names = [e["name"] for e in amortized.available()]
    assert {"mnist-cnn-grid4x4-constant0", "mnist-cnn-grid7x7-constant0", "planted-patch-grid8x8-blur3"} <= set(names)
    planted = amortized.pretrained("planted-patch-grid8x8-blur3")  # binds the shipped planted-patch model
    assert planted(shapjax.data.samples("planted-patch").images[:2], outputs="top-1").values.shape == (2, 64, 1)
    clf = shapjax.models.pretrained("mnist-cnn")
    x = shapjax.data.samples("mnist").images[:4]
    for g in (4, 7):
        exp = shapjax.explain(clf, x, method="amortized", segments=segment.grid(g, g), masker=maskers.constant(0.0),
                              outputs="top-1")
        assert exp.values.shape == (4, g * g, 1) and exp.method == "amortized"
        np.testing.assert_allclose(np.asarray(exp.values.sum(1)), np.asarray(exp.full_values - exp.base_values),
                                   rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="no shipped explainer matches"):  # same weights, another masker
        shapjax.explain(clf, x, method="amortized", segments=segment.grid(4, 4), masker=maskers.constant(0.5))
    with pytest.raises(ValueError, match="no shipped explainer matches"):  # another model, same settings
        shapjax.explain(shapjax.models.pretrained("mnist-cnn-robust"), x, method="amortized",
                        segments=segment.grid(4, 4), masker=maskers.constant(0.0))
