"""No silent wrong answers: each bad or edge input gets a clear error naming the argument, or the right
result — in eager mode and under jit. One case per row of the no-silent-answers issue, plus others."""
from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import shapjax
from shapjax import maskers, segment
from shapjax.baselines import gradients as G
from shapjax.evaluation import metrics as Mx

KEY = jax.random.key(0)
W = jax.random.normal(jax.random.key(1), (8, 8, 1, 3))
MODEL = jax.tree_util.Partial(lambda w, x: jnp.einsum("nhwc,hwck->nk", x, w), W)
IMGS = jax.random.uniform(jax.random.key(2), (2, 8, 8, 1))
EXPLAIN = dict(key=KEY, segments=segment.grid(2, 2), masker=maskers.constant(0.0), n_evals=32)


def _additive(z):
    return z.sum(1).astype(jnp.float32)


# ------------------------------------------------------------------ the silent ones


@pytest.mark.parametrize("method", ["kernel", "leverage"])
@pytest.mark.parametrize("M", [20, 50])
def test_regression_estimators_are_exact_on_additive_games_at_their_minimum_budget(method, M):
    est = shapjax.ESTIMATORS[method]
    n = est.min_evals(M)
    res = shapjax.shapley(_additive, M, key=KEY, method=method, n_evals=n)
    np.testing.assert_allclose(res.values, np.ones(M), atol=1e-3)  # was off by up to 6.4 at M=50, n=100
    with pytest.raises(ValueError, match=rf"n_evals={n - 1} is too small.*at least {n}"):
        shapjax.shapley(_additive, M, key=KEY, method=method, n_evals=n - 1)


@pytest.mark.parametrize("where", ["explain", "gradients", "metrics", "background", "dataset_mean", "compare"])
def test_integer_images_are_rejected_everywhere_images_enter(where):
    u8 = (np.asarray(IMGS) * 255).astype(np.uint8)
    run = {
        "explain": lambda: shapjax.explain(MODEL, u8, **EXPLAIN),
        "gradients": lambda: G.vanilla_gradient(MODEL, u8),
        "metrics": lambda: Mx.deletion(MODEL, u8, jnp.ones((2, 8, 8))),
        "background": lambda: maskers.background(u8),
        "dataset_mean": lambda: maskers.dataset_mean(u8),
        "compare": lambda: shapjax.evaluation.compare.compare(MODEL, u8, key=KEY, methods="gradient",
                                                              segments=segment.grid(2, 2),
                                                              masker=maskers.constant(0.0)),
    }[where]
    with pytest.raises(TypeError, match=r"images.*uint8.*/ 255"):
        run()


def test_float_images_in_0_255_warn():
    with pytest.warns(UserWarning, match=r"expects \[0, 1\]"):
        shapjax.explain(MODEL, np.asarray(IMGS) * 255, **EXPLAIN)


def test_training_with_a_nan_learning_rate_is_refused_and_divergence_writes_nothing(tmp_path):
    from shapjax import data, models
    from shapjax.cli.train import main as train_cli

    ds = data.load("digits", n=120, size=8)
    clf = models.small_cnn(key=KEY, input_shape=(8, 8, 1), widths=(4,), hidden=0)
    with pytest.raises(ValueError, match="learning_rate"):
        models.train.train(clf, ds, key=KEY, learning_rate=float("nan"), progress=False)
    assert train_cli(["--data", "digits", "--n", "120", "--size", "8", "--widths", "4", "--epochs", "1",
                      "--lr", "nan", "--out", str(tmp_path / "ck"), "--no-progress"]) == 2
    assert not list(tmp_path.iterdir())
    # weights that blow up: an optimizer whose updates are NaN (what an exploding step produces)
    import optax

    boom = optax.chain(optax.scale_by_adam(), optax.scale(float("nan")))
    with pytest.raises(FloatingPointError, match="diverged in epoch 1.*nothing was written"):
        models.train.train(clf, ds, key=KEY, optimizer=boom, epochs=1, progress=False, checkpoint=tmp_path / "b")
    assert not list(tmp_path.iterdir())


def _jitted(checks=False):
    def f(x, s, o):
        return shapjax.explain(MODEL, x, key=KEY, segments=s, masker=maskers.constant(0.0), n_evals=32, n_segments=4,
                               outputs=o, checks=checks).values
    return jax.jit(f) if not checks else jax.jit(checkify.checkify(f))


SEG = jnp.asarray(segment.grid(2, 2)(IMGS))


@pytest.mark.parametrize("case", ["outputs", "pixels", "segments"])
def test_under_jit_untestable_inputs_give_nan_or_a_checkify_error(case):
    args = {"outputs": (IMGS, SEG, jnp.array([0, 7])),
            "pixels": (IMGS.at[0, 3, 3, 0].set(jnp.nan), SEG, jnp.array([0, 1])),
            "segments": (IMGS, SEG.at[0, 0, 0].set(9), jnp.array([0, 1]))}[case]
    values = _jitted()(*args)
    assert bool(jnp.all(jnp.isnan(values))), "an unverifiable input must not give plausible numbers"
    err, _ = _jitted(checks=True)(*args)
    assert err.get() is not None and {"outputs": "outputs", "pixels": "images", "segments": "segments"}[case] in err.get()
    ok_err, ok = _jitted(checks=True)(IMGS, SEG, jnp.array([0, 1]))
    assert ok_err.get() is None and bool(jnp.all(jnp.isfinite(ok)))


def test_checks_in_eager_mode_raise_directly():
    exp = shapjax.explain(MODEL, IMGS, **EXPLAIN, checks=True)
    assert bool(jnp.all(jnp.isfinite(exp.values)))


@pytest.mark.parametrize("bad", ["nan_background", "nan_attributions", "nan_pointing", "complex_images",
                                 "complex_outputs", "complex_game"])
def test_nan_and_complex_values_are_refused(bad):
    run, err, match = {
        "nan_background": (lambda: maskers.background(np.full((2, 8, 8, 1), np.nan, np.float32)),
                           ValueError, "background images: NaN"),
        "nan_attributions": (lambda: Mx.complexity(jnp.array([[1.0, jnp.nan, 2.0]])), ValueError, "attributions: NaN"),
        "nan_pointing": (lambda: Mx.pointing_game(jnp.full((1, 4, 4), jnp.nan), jnp.ones((1, 4, 4), bool)),
                         ValueError, "attributions: NaN"),
        "complex_images": (lambda: shapjax.explain(MODEL, IMGS.astype(jnp.complex64), **EXPLAIN), TypeError,
                           "images: expected floating-point"),
        "complex_outputs": (lambda: shapjax.explain(lambda x: MODEL(x) * (1 + 1j), IMGS, **EXPLAIN), TypeError,
                            "model_fn: returned complex"),
        "complex_game": (lambda: shapjax.shapley(lambda z: _additive(z) * 1j, 4, key=KEY), TypeError,
                         "value_fn: returned complex"),
    }[bad]
    with pytest.raises(err, match=match):
        run()


# ------------------------------------------------------------------ the slow or deep ones


def test_a_budget_that_cannot_fit_is_refused_at_once():
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"n_evals: .* needs about .* of memory"):
        shapjax.shapley(_additive, 50, key=KEY, n_evals=10**9)
    with pytest.raises(ValueError, match=r"n_evals: .* needs about .* of memory"):
        shapjax.explain(MODEL, IMGS, **{**EXPLAIN, "segments": segment.grid(8, 8), "n_evals": 10**10})
    assert time.perf_counter() - t < 30


@pytest.mark.parametrize("method", ["polyshap", "regmc"])
def test_a_polynomial_fit_that_cannot_fit_is_refused(method, monkeypatch):
    # the design of 30,000 rows x 64 players is ~2 MB, but the fits' systems are N x N (or N x 43,744 features):
    # once, this budget reached XLA and died with "Out of memory allocating 42649235520 bytes"
    from shapjax._util import checks

    monkeypatch.setattr(checks, "available_memory", lambda: 8 * 2**30)
    with pytest.raises(ValueError, match=rf"n_evals: method='{method}' .* needs about .* of memory"):
        shapjax.shapley(_additive, 64, key=KEY, method=method, n_evals=30_000)
    from shapjax.engine.estimators import ESTIMATORS

    est = ESTIMATORS[method]
    assert est.solve_bytes(64, 30_000) > 4 * 30_000**2 > est.solve_bytes(64, 1_000)
    assert est.solve_bytes(16, 2_048, n_outputs=1) < 10**8  # the budgets people use stay allowed
    if method == "regmc":  # the check sizes the halves in closed form, without building them
        from shapjax.engine.estimators import regmc

        for M, n in [(5, 12), (16, 257), (16, 2_048), (64, 8_192)]:
            assert regmc._max_fit_rows(M, n) == max(len(h.fit_rows) for h in regmc._halves(M, n)[1])


def test_huge_segment_ids_fail_fast_without_allocating():
    seg = np.zeros((8, 8), np.int64)
    seg[0, 0] = 10**12
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"segments.*contiguous.*missing ids: \[1, 2, 3"):
        shapjax.explain(MODEL, IMGS, **{**EXPLAIN, "segments": seg})
    assert time.perf_counter() - t < 10


def test_decompression_bomb_is_a_one_line_cli_error(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from shapjax import cli

    Image.new("L", (400, 400)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 400x400 is then a "bomb"
    assert cli.main(["explain", str(tmp_path / "big.png"), "--out", str(tmp_path / "o"), "--quiet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too large to read safely" in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("make,match", [
    (lambda: segment.slic(0), "slic n_segments"),
    (lambda: segment.slic(10, compactness=0), "slic compactness"),
    (lambda: segment.quickshift(ratio=1.5), "quickshift ratio"),
    (lambda: segment.felzenszwalb(-1), "felzenszwalb scale"),
    (lambda: segment.grid(0), "grid `rows`"),
    (lambda: maskers.blur(0), "sigma"),
    (lambda: maskers.constant(float("nan")), "value"),
])
def test_segmenter_and_masker_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_cli_seed_out_of_range_is_a_usage_error(capsys):
    from shapjax import cli

    assert cli.main(["explain", "samples:mnist:1", "--seed", str(2**70)]) == 2
    assert "--seed" in capsys.readouterr().err


@pytest.mark.parametrize("field,value,match", [
    ("input_shape", "28x28", "input_shape"),
    ("architecture_kwargs", {"num_classes": "ten"}, "num_classes"),
    ("architecture", 7, "architecture"),
    ("class_names", "0123456789", "class_names"),
])
def test_checkpoint_metadata_with_wrong_field_types(tmp_path, field, value, match):
    from shapjax import models

    clf = models.small_cnn(key=KEY, input_shape=(8, 8, 1), widths=(4,), hidden=0)
    models.save_checkpoint(tmp_path / "m", clf)
    meta = json.loads((tmp_path / "m.json").read_text())
    meta[field] = value
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=match):
        models.load_checkpoint(tmp_path / "m")


def test_a_batch_of_keys_is_refused():
    keys = jax.random.split(KEY, 3)
    with pytest.raises(ValueError, match="key: expected a single PRNG key"):
        shapjax.shapley(_additive, 4, key=keys)
    with pytest.raises(ValueError, match="key: expected a single PRNG key"):
        shapjax.explain(MODEL, IMGS, **{**EXPLAIN, "key": keys})
    with pytest.raises(ValueError, match="key: expected a single PRNG key"):
        G.smoothgrad(MODEL, IMGS, key=jax.random.split(KEY, 2), n_samples=2)
    # one key per game under vmap is the way to run many
    vals = jax.vmap(lambda k: shapjax.shapley(_additive, 4, key=k, n_evals=16).values)(keys)
    np.testing.assert_allclose(vals, 1.0, atol=1e-4)


def test_to_shap_with_too_few_class_names():
    pytest.importorskip("shap", reason="the optional dependency shap is not installed")
    exp = shapjax.explain(MODEL, IMGS, **EXPLAIN)
    with pytest.raises(ValueError, match="class_names: 2 names"):
        exp.to_shap(class_names=["a", "b"])


def test_exact_enumeration_stays_exact_in_float32():
    w = np.asarray(jax.random.normal(jax.random.key(3), (18,))) * 10 + 3
    res = shapjax.shapley(lambda z: z.astype(jnp.float32) @ jnp.asarray(w), 18, key=KEY, method="exact")
    np.testing.assert_allclose(res.values, w, rtol=1e-6, atol=1e-6 * np.abs(w).max())  # was 2.4e-2 off
    total = float(res.full_value - res.base_value)
    assert abs(float(res.values.sum()) - total) <= 1e-6 * abs(total)


# ------------------------------------------------------------------ other inputs found on the way


@pytest.mark.parametrize("outputs,match", [
    ([0, 3], "outputs indexes must be in 0..2"),
    ("top-4", "more classes"),
    ("best", "outputs must be"),
    (np.array([[0], [1], [2]]), "B=2 rows"),
    (True, "outputs must be"),
    ([0.5], "int class indexes"),
])
def test_outputs_are_checked_before_tracing(outputs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        shapjax.explain(MODEL, IMGS, **{**EXPLAIN, "outputs": outputs})


def test_single_output_methods_say_why_a_list_of_classes_is_refused():
    with pytest.raises(ValueError, match=r"explains one output per image.*\[B, 1\]"):
        G.vanilla_gradient(MODEL, IMGS, outputs=jnp.array([0, 1]))
    ok = G.vanilla_gradient(MODEL, IMGS, outputs=[2])  # one class for every image, as in explain
    np.testing.assert_array_equal(ok.output_indexes, [2, 2])
