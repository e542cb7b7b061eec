"""Tests for shapjax.train (optax training, CLI) and shapjax.adversarial (PGD)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from shapjax import data, models
from shapjax.cli.train import main as cli_main
from shapjax.models.adversarial import PGDConfig, adversarial_accuracy, pgd_attack
from shapjax.models.train import evaluate, init_state, make_train_step, train


@pytest.fixture(scope="module")
def digits():
    ds = data.load("digits")
    return ds[:1500], ds[1500:]


@pytest.fixture(scope="module")
def tiny():
    """A 4k-parameter CNN for 8x8 digits (initialised once; Classifier is immutable)."""
    return models.small_cnn(key=jax.random.key(0), num_classes=10, input_shape=(8, 8, 1), widths=(16, 32), hidden=0)


def test_few_steps_reduce_the_loss(digits, tiny):
    tr, _ = digits
    opt = optax.adam(2e-2)
    step = make_train_step(tiny, opt)
    state = init_state(tiny, opt)
    x, y = jnp.asarray(tr.images[:128]), jnp.asarray(tr.labels[:128])
    losses = []
    for i in range(20):
        state, m = step(jax.random.key(i), state, x, y)
        losses.append(float(m["loss"]))
    assert losses[-1] < 0.85 * losses[0]
    assert int(state.step) == 20
    # the classifier's own variables were not touched (pure step)
    assert float(tiny.params["params"]["fc_out"]["kernel"].sum()) != float(
        state.params["params"]["fc_out"]["kernel"].sum())


def test_batchnorm_model_trains_and_updates_running_stats():
    ds = data.planted_patch(64, key=jax.random.key(0), size=8, n_classes=2, patch_size=4)
    kw = {"stage_sizes": (1,), "block": "basic", "width": 4}
    clf = models.create("resnet", key=jax.random.key(1), input_shape=(8, 8, 3), num_classes=2, **kw)
    opt = optax.adam(1e-2)
    # BatchNorm + augmentation + adversarial examples (attacked with batch statistics)
    step = make_train_step(clf, opt, shift=1, flip=True, adversarial=PGDConfig(eps=0.02, step_size=0.01, n_steps=2))
    state = init_state(clf, opt)
    x, y = jnp.asarray(ds.images), jnp.asarray(ds.labels)
    losses = []
    for i in range(8):
        state, m = step(jax.random.key(i), state, x, y)
        losses.append(float(m["loss"]))
    assert losses[-1] < losses[0]
    before = jax.tree_util.tree_leaves(clf.params["batch_stats"])
    after = jax.tree_util.tree_leaves(state.params["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(after, before))


def test_train_is_deterministic_and_checkpoints(tmp_path, digits, tiny):
    tr, te = digits
    kw = dict(epochs=2, batch_size=100, learning_rate=2e-2, eval_data=te, progress=False)
    r1 = train(tiny, tr, key=jax.random.key(0), checkpoint=tmp_path / "ck", metadata={"data": "digits"}, **kw)
    r2 = train(tiny, tr, key=jax.random.key(0), **kw)
    for a, b in zip(jax.tree_util.tree_leaves(r1.classifier.params), jax.tree_util.tree_leaves(r2.classifier.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [h["epoch"] for h in r1.history] == [1, 2]
    assert r1.history[-1]["loss"] < r1.history[0]["loss"]
    acc = evaluate(r1.classifier, te.images, te.labels)
    assert acc == pytest.approx(r1.history[-1]["eval_accuracy"])
    assert acc > 0.3  # far above chance (0.1) after 30 steps
    back = models.load_checkpoint(tmp_path / "ck.msgpack")
    np.testing.assert_array_equal(np.asarray(back(te.images[:5])), np.asarray(r1.classifier(te.images[:5])))
    meta = models.read_metadata(tmp_path / "ck")
    assert meta["data"] == "digits" and len(meta["history"]) == 2


def test_train_rejects_bad_input(digits, tiny):
    tr, _ = digits
    wrong = data.Dataset(np.zeros((4, 28, 28, 1)), np.zeros(4), tr.class_names)
    with pytest.raises(ValueError, match=r"do not fit the model's input \[N, 8, 8, 1\]"):
        train(tiny, wrong, key=jax.random.key(0), progress=False)
    bad = data.Dataset(tr.images[:10], np.full(10, 12), tr.class_names)
    with pytest.raises(ValueError, match="labels must lie in"):
        train(tiny, bad, key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train(tiny, tr, key=jax.random.key(0), epochs=0, progress=False)
    with pytest.raises(TypeError, match="classifier"):
        train(tiny.apply, tr, key=jax.random.key(0), progress=False)


# -------------------------------------------------------------------- PGD
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5)])
def test_pgd_stays_in_ball_and_raises_loss(norm, eps, digits, tiny):
    tr, _ = digits
    clf = tiny
    x, y = jnp.asarray(tr.images[:32]), jnp.asarray(tr.labels[:32])
    adv = pgd_attack(clf.apply, clf.params, x, y, key=jax.random.key(0), eps=eps, step_size=eps / 4,
                     n_steps=5, norm=norm)
    assert adv.shape == x.shape
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    d = (adv - x).reshape(32, -1)
    size = jnp.abs(d).max(1) if norm == "linf" else jnp.linalg.norm(d, axis=1)
    assert float(size.max()) <= eps + 1e-5
    assert float(size.max()) > 0.5 * eps  # it actually moved

    def loss(im):
        return float(optax.softmax_cross_entropy_with_integer_labels(clf.apply(clf.params, im), y).mean())

    assert loss(adv) > loss(x)


def test_pgd_bad_arguments(digits, tiny):
    tr, _ = digits
    clf = tiny
    x, y = jnp.asarray(tr.images[:4]), jnp.asarray(tr.labels[:4])
    with pytest.raises(ValueError, match="norm"):
        pgd_attack(clf.apply, clf.params, x, y, key=jax.random.key(0), eps=0.1, step_size=0.1, n_steps=2, norm="l1")
    with pytest.raises(ValueError, match="labels"):
        pgd_attack(clf.apply, clf.params, x, y[:3], key=jax.random.key(0), eps=0.1, step_size=0.1, n_steps=2)
    with pytest.raises(ValueError, match="n_steps"):
        pgd_attack(clf.apply, clf.params, x, y, key=jax.random.key(0), eps=0.1, step_size=0.1, n_steps=0)


def test_adversarial_training_is_more_robust(digits, tiny):
    """Madry et al.: PGD training trades clean accuracy for accuracy under attack."""
    tr, te = digits
    attack = dict(eps=0.15, step_size=0.05, n_steps=5, norm="linf")
    kw = dict(epochs=5, batch_size=100, learning_rate=2e-2, progress=False)
    std = train(tiny, tr, key=jax.random.key(0), **kw).classifier
    rob = train(tiny, tr, key=jax.random.key(0), adversarial=PGDConfig(eps=0.15, step_size=0.05, n_steps=3),
                **kw).classifier
    x, y = te.images[:200], te.labels[:200]
    clean_std, clean_rob = evaluate(std, x, y), evaluate(rob, x, y)
    adv_std = adversarial_accuracy(std, x, y, key=jax.random.key(1), **attack)
    adv_rob = adversarial_accuracy(rob, x, y, key=jax.random.key(1), **attack)
    assert clean_std > 0.6 and clean_rob > 0.4  # both learned the task
    drop_std, drop_rob = clean_std - adv_std, clean_rob - adv_rob
    assert drop_std > drop_rob + 0.15, (clean_std, adv_std, clean_rob, adv_rob)
    assert adv_rob > adv_std + 0.1


# -------------------------------------------------------------------- CLI
def test_cli_trains_and_saves(tmp_path, capsys):
    out = tmp_path / "cli.msgpack"
    rc = cli_main(["--data", "digits", "--n", "600", "--holdout", "100", "--widths", "8,16", "--epochs", "1",
                   "--batch-size", "100", "--out", str(out), "--no-progress"])
    assert rc == 0
    clf = models.load_checkpoint(out)
    assert clf.input_shape == (8, 8, 1) and clf.arch_kwargs["widths"] == (8, 16)
    meta = models.read_metadata(out)
    assert meta["data"]["n_train"] == 500 and meta["data"]["n_eval"] == 100
    assert "shapjax train --data digits" in meta["training_command"]
    assert '"eval_accuracy"' in capsys.readouterr().out


def test_cli_bad_arguments(tmp_path, capsys):
    assert cli_main(["--data", "nosuch", "--out", str(tmp_path / "x")]) == 2
    assert "valid sources" in capsys.readouterr().err
    assert cli_main(["--out", str(tmp_path / "x")]) == 2  # --data missing (argparse error)
    assert cli_main(["--help"]) == 0
