"""Tests for the `shapjax` command line: real commands on small inputs.

The explain runs share one configuration (64 evaluations, grid 4x4, top-2,
batches of 2 images), so after the first run jax's compilation cache makes
the others fast.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import shapjax.cli.app  # noqa: F401  (cli.app is patched below)
from shapjax import cli
from shapjax.cli import jobs

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--n-evals", "64", "--segments", "grid:4x4", "--top-k", "2", "--batch-size", "2", "--quiet"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of 3 digit PNGs, a lone digit PNG, an RGB JPEG of another size, a non-image .png."""
    from shapjax import data

    d = tmp_path_factory.mktemp("inputs")
    digits = data.samples("mnist").images
    folder = d / "digits"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((digits[i, ..., 0] * 255).astype(np.uint8)).save(folder / f"d{i}.png")
    Image.fromarray((digits[3, ..., 0] * 255).astype(np.uint8)).save(d / "lone.png")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 36, 3)) * 255).astype(np.uint8)).save(d / "photo.jpg")
    (d / "bad.png").write_text("this is not an image")
    return d


@pytest.fixture(scope="module")
def explained(inputs, tmp_path_factory):
    """One real `shapjax explain` run on a folder and a file (4 images, 2 batches)."""
    out = tmp_path_factory.mktemp("out")
    rc = cli.main(["explain", str(inputs / "digits"), str(inputs / "lone.png"), "--out", str(out), *FAST])
    return rc, out


def _one_line_error(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("shapjax: error: "), err
    return lines[0]


# ---------------------------------------------------------------- explain


def test_explain_writes_figures_results_and_summary(explained, capsys):
    import jax

    import shapjax

    rc, out = explained
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 4 and summary["evaluations"] == 4 * 64 and summary["explained"] == 4
    assert [f["file"] for f in summary["figures"]] == ["figure.png"]  # the first --figures (8) images, 8 a figure
    assert sum(f["panels"] for f in summary["figures"]) == 4 * (1 + 2)
    for f in summary["figures"]:
        with Image.open(out / f["file"]) as im:
            assert im.size[0] > 200 and im.size[1] > 100
    names = [e["name"] for e in summary["images"]]
    assert names == ["d0.png", "d1.png", "d2.png", "lone.png"]
    first = summary["images"][0]
    assert len(first["top_classes"]) == 3 and len(first["explained"]) == 2
    assert first["top_classes"][0]["name"] == "0"  # the shipped model reads the first sample digit as a 0
    assert len(first["explained"][0]["top_segments"]) == 5
    assert not list(out.glob(".tmp-*"))

    res = shapjax.load_results(out / "results.zarr")
    assert res.complete and len(res) == 4
    assert res.values.shape == (4, 16, 2) and res.std.shape == (4, 16, 2)
    assert res.base_values.shape == (4, 2) and res.full_values.shape == (4, 2)
    assert res.segments.shape == (28, 28) and res.output_indexes.shape == (4, 2)  # a grid: stored once
    assert res.images.shape == (4, 28, 28, 1) and res.model_outputs.shape == (4, 10)
    probs = np.asarray(jax.nn.softmax(res.model_outputs[...], axis=-1))
    values, v0, v1 = res.values[...], res.base_values[...], res.full_values[...]
    # kernel SHAP is efficient: the values add up to v(all) - v(empty)
    np.testing.assert_allclose(values.sum(1), v1 - v0, atol=1e-3)
    np.testing.assert_array_equal(res.output_indexes[...][:, 0], probs.argmax(1))
    assert [Path(str(i)).name for i in res.ids[...]] == names
    meta = res.settings
    assert meta["method"] == "kernel" and meta["model"]["name"] == "mnist-cnn" and meta["n_evals"] == 64
    assert meta["segments"] == "grid(4x4)" and meta["score"] == "logit"

    # the figure rebuilt from the store through the same function: 4 rows x (image + 2 classes)
    exp = res[:4]
    fig = jobs.build_figure(exp, class_names=summary["class_names"], probs=probs, names=["a", "b", "c", "d"])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == summary["figures"][0]["panels"] == 12
    assert panels[1].get_title().startswith(summary["class_names"][int(exp.output_indexes[0, 0])] + " (p=")


def test_explain_resumes_and_refuses_other_settings(inputs, explained, capsys):
    rc, out = explained
    before = (out / "results.zarr" / "values" / "zarr.json").stat().st_mtime_ns
    args = ["explain", str(inputs / "digits"), str(inputs / "lone.png"), "--out", str(out), *FAST]
    assert cli.main(args) == 0  # the same command again: nothing left to do
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("shapjax: 4 images (4 already done), 0 evaluations in "), line
    assert json.loads((out / "summary.json").read_text())["already_done"] == 4
    assert (out / "results.zarr" / "values" / "zarr.json").stat().st_mtime_ns == before
    assert cli.main([*args, "--method", "lime"]) == 2
    err = _one_line_error(capsys)
    assert f"--out {out}" in err and "method: 'kernel' in the store, 'lime' in this run" in err
    assert "--overwrite" in err
    assert (out / "summary.json").is_file()  # a refused run changes nothing


def test_explain_warns_about_conversions_and_clamps_top_k(inputs, tmp_path, capsys):
    rc = cli.main(["explain", str(inputs / "photo.jpg"), "--out", str(tmp_path), "--n-evals", "64", "--segments",
                   "grid:4x4", "--top-k", "12", "--figures", "0"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "shapjax: note: --top-k 12 is more than the model's 10 classes: explaining all 10 (clamped)" in err
    assert "shapjax: warning: 1 colour image(s) converted to grey for a 1-channel model (e.g. photo.jpg)" in err
    assert "squashed to the model's 28x28 aspect ratio" not in err  # 40x36 is within 1.2x of square


def test_explain_prints_one_summary_line(inputs, tmp_path, capsys):
    rc = cli.main(["explain", str(inputs / "lone.png"), str(inputs / "digits" / "d0.png"), "--out", str(tmp_path),
                   *FAST])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("shapjax: 2 images, 128 evaluations in ") and "evaluations/s" in lines[0]
    assert ": compile " in lines[0] and "steady state " in lines[0], lines[0]  # compile and steady time apart
    summary = json.loads((tmp_path / "summary.json").read_text())
    # (compilations may be 0: an earlier test in the same process may have compiled the same programs)
    assert 0 <= summary["compile_seconds"] <= summary["seconds"] and summary["compilations"] >= 0


def test_explain_tfds_source_under_mock_data(tmp_path):
    import shapjax

    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=3):
        rc = cli.main(["explain", "tfds:mnist:test:2", "--out", str(tmp_path), *FAST])
    assert rc == 0
    res = shapjax.load_results(tmp_path / "results.zarr")
    assert res.values.shape == (2, 16, 2)
    assert list(res.ids[...]) == ["tfds:mnist:test#0", "tfds:mnist:test#1"]
    assert set(res.labels[...].tolist()) <= set(range(10))  # class names match the model's: labels kept


def test_explain_tfds_not_prepared_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("tensorflow_datasets")
    rc = cli.main(["explain", "tfds:mnist:test:4", "--out", str(tmp_path / "o"), "--quiet"])
    if rc == 0:  # pragma: no cover - a machine with a prepared mnist
        pytest.skip("mnist is prepared here")
    assert rc == 2
    err = _one_line_error(capsys)
    assert "tfds dataset 'mnist' (split 'test') is not prepared" in err and "importlib_resources" not in err.split(
        "not prepared")[0]


def test_explain_superpixels_share_one_segment_count(tmp_path):
    import shapjax

    rc = cli.main(["explain", "samples:planted-patch:3", "--model", "planted-patch", "--out", str(tmp_path), *FAST,
                   "--segments", "slic:12"])  # the later --segments wins
    assert rc == 0
    res = shapjax.load_results(tmp_path / "results.zarr")
    n_seg, values, seg = res.n_segments[...], res.values[...], res.segments[...]
    M = res.settings["n_segments"]
    assert values.shape == (3, M, 2) and seg.shape == (3, 32, 32) and M > n_seg.max()
    for b in range(3):
        assert n_seg[b] == seg[b].max() + 1 and n_seg[b] >= 4
        assert np.all(values[b, n_seg[b]:] == 0)  # ids an image does not use carry nothing
    np.testing.assert_allclose(values.sum(1), res.full_values[...] - res.base_values[...], atol=1e-3)


def test_interrupted_run_leaves_no_complete_looking_result(inputs, tmp_path, monkeypatch, capsys):
    (tmp_path / "summary.json").write_text("{}")  # from an earlier run: must not survive beside new files
    import shapjax.plot

    def interrupt(fig, path, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(shapjax.plot, "save_figure", interrupt)
    rc = cli.main(["explain", str(inputs / "digits"), str(inputs / "lone.png"), "--out", str(tmp_path), *FAST])
    assert rc == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob("*.png"))
    import shapjax

    assert shapjax.load_results(tmp_path / "results.zarr").complete  # the explained batches are kept


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("case, args, expect", [
    ("missing file", ["{d}/nope.png"], "image file not found"),
    ("unreadable", ["{d}/bad.png"], "cannot read image"),
    ("unknown model", ["{d}/lone.png", "--model", "resnet-9000"], "unknown model 'resnet-9000'"),
    ("unknown method", ["{d}/lone.png", "--method", "magic"], "--method"),
    ("unknown masker", ["{d}/lone.png", "--masker", "paint:3"], "--masker"),
    ("unknown segmenter", ["{d}/lone.png", "--segments", "voronoi:9"], "--segments"),
    ("shape mismatch", ["{d}/photo.jpg", "--no-resize"], "shape mismatch"),
    ("model channels", ["{d}/lone.png", "--model", "planted-patch", "--no-resize"], "shape mismatch"),
    ("bad dataset spec", ["tfds:"], "tfds:NAME:SPLIT"),
    ("unknown class", ["{d}/lone.png", "--classes", "seven"], "--classes"),
    ("too few evaluations", ["{d}/lone.png", "--n-evals", "5", "--segments", "grid:4x4"], "n_evals=5 is too small"),
    ("empty folder", ["{d}/empty"], "no image files"),
    ("bad option value", ["{d}/lone.png", "--n-evals", "many"], "invalid int value"),
])
def test_bad_input_is_one_line_error(inputs, tmp_path, capsys, case, args, expect):
    (inputs / "empty").mkdir(exist_ok=True)
    argv = ["explain", *[a.format(d=inputs) for a in args], "--out", str(tmp_path / "out"), "--quiet"]
    rc = cli.main(argv)
    assert rc == 2, case  # every usage error exits 2
    assert expect in _one_line_error(capsys), case


def test_unexpected_errors_are_one_line_too_and_debug_shows_them(inputs, monkeypatch, capsys):
    def boom(*a, **k):
        raise RuntimeError("kaput")

    import shapjax.cli.explain_job

    monkeypatch.setattr(shapjax.cli.explain_job, "open_inputs", boom)
    assert cli.main(["explain", str(inputs / "lone.png")]) == 1
    assert "internal error: RuntimeError: kaput" in _one_line_error(capsys)
    with pytest.raises(RuntimeError, match="kaput"):
        cli.main(["--debug", "explain", str(inputs / "lone.png")])


# ---------------------------------------------------------------- inputs


def test_read_image_converts_to_the_model_input(inputs):
    x = jobs.read_image(inputs / "photo.jpg", (28, 28, 1))
    assert x.shape == (28, 28, 1) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    y = jobs.read_image(inputs / "lone.png", (32, 32, 3))
    assert y.shape == (32, 32, 3)
    np.testing.assert_allclose(y[..., 0], y[..., 2])
    z = jobs.read_image(inputs / "lone.png", (28, 28, 1), resize=False)
    from shapjax import data

    np.testing.assert_allclose(z, data.samples("mnist").images[3], atol=1 / 255 + 1e-6)


def test_model_from_checkpoint_path():
    clf = jobs.resolve_model(str(ROOT / "shapjax" / "models" / "weights" / "mnist-cnn.msgpack"))
    assert clf.input_shape == (28, 28, 1) and len(clf.class_names) == 10


def test_positive_fraction_in_mask():
    seg = np.array([[[0, 0, 1, 1]]])  # 1 x 1 x 4 pixels, two segments
    values = np.array([[[3.0], [1.0]]])  # segment 0 carries 3, segment 1 carries 1
    mask = np.array([[[True, False, False, False]]])  # half of segment 0
    np.testing.assert_allclose(jobs.positive_fraction_in_mask(values, seg, mask), [1.5 / 4.0])
    np.testing.assert_allclose(jobs.positive_fraction_in_mask(-values, seg, mask), [0.0])


# ---------------------------------------------------------------- other commands


@pytest.mark.parametrize("command", [[], ["explain"], ["demo"], ["models"], ["methods"], ["train"]])
def test_help_exits_zero(command, capsys):
    assert cli.main([*command, "--help"]) == 0
    assert "usage:" in capsys.readouterr().out


def test_compare_is_delegated_or_a_clean_error(capsys):
    import importlib.util

    rc = cli.main(["compare", "--help"])
    have = importlib.util.find_spec("shapjax.cli.compare") is not None
    if have:
        assert rc == 0
    else:
        assert rc != 0 and "shapjax compare" in _one_line_error(capsys)


def test_models_and_methods_one_line_each(capsys):
    from shapjax import models
    from shapjax.engine.estimators import ESTIMATORS

    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    for name in models.available():
        line = next(ln for ln in out if ln.startswith(name + " "))
        meta = models.metadata(name)
        assert "x".join(map(str, meta["input_shape"])) in line and f"{len(meta['class_names'])} classes" in line
        assert "accuracy" in line and "%" in line
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(ESTIMATORS)
    for name, line in zip(ESTIMATORS, out):
        assert line.split()[0] == name and line.split()[1] == ESTIMATORS[name].estimates
        assert any(c.isdigit() for c in line.rsplit("[", 1)[1]), line  # a reference with its year
    assert "Lundberg & Lee 2017" in next(ln for ln in out if ln.startswith("kernel"))


def test_demo_runs_and_lands_on_the_patch(tmp_path, capsys):
    rc = cli.main(["demo", "--out", str(tmp_path), "--n-evals", "256", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert str(tmp_path.resolve()) in out.splitlines()[0]
    assert (tmp_path / "demo_mnist.png").is_file() and (tmp_path / "demo_planted_patch.png").is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    mnist, patch = summary["jobs"]
    assert mnist["top1_correct"] >= 7
    assert patch["mean_positive_fraction_in_mask"] > 3 * patch["mask_area_fraction"]
    assert "inside the planted patch" in out


# ---------------------------------------------------------------- subprocess


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)


def test_subprocess_error_is_one_line(tmp_path):
    r = _run("-m", "shapjax.cli", "explain", str(tmp_path / "missing.png"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"shapjax: error: image file not found: {tmp_path / 'missing.png'}"]


def test_subprocess_python_m_shapjax_methods():
    r = _run("-m", "shapjax", "methods")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("exact ")


# ---------------------------------------------------------------- README


def _readme():
    return (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands_ci_runs():
    lines = _readme().splitlines()
    assert lines[0] == "# shapjax"
    fence = lines.index("```")
    block = lines[fence + 1: lines.index("```", fence + 1)]
    assert block == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && shapjax demo",
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && python -m pytest -q',
    ]
    assert all(not ln.strip() or not ln.startswith(("#", "`")) for ln in lines[1:fence])  # one description line
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci.replace("pip install -q ", "pip install ") == block[1]


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    text = _readme()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "(4, 49, 2)"
    assert (tmp_path / "explanation.png").stat().st_size > 10_000


def test_readme_lists_every_method_and_keeps_the_benchmark_markers():
    from shapjax.engine.estimators import ESTIMATORS

    text = _readme()
    for name in ESTIMATORS:
        assert f"| `{name}` |" in text, name
    assert text.count("<!-- BENCH:START -->") == 1 and text.count("<!-- BENCH:END -->") == 1
    assert text.index("<!-- BENCH:START -->") < text.index("<!-- BENCH:END -->")
    for png in ("docs/demo_mnist.png", "docs/demo_planted_patch.png"):
        assert f"]({png})" in text and 0 < (ROOT / png).stat().st_size < 300_000


def test_readme_game_example_runs(tmp_path, monkeypatch):
    text = _readme()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    game = [b for b in blocks if "shapjax.shapley" in b]
    assert game, "README has a shapjax.shapley example"
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile(game[0], "README.md", "exec"), ns)
    res = ns["res"]
    import numpy as np

    np.testing.assert_allclose(float(res.values.sum()), float(res.full_value - res.base_value), atol=1e-5)
