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
    rc, out = explained
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 4 and summary["evaluations"] == 4 * 64
    assert [f["file"] for f in summary["figures"]] == ["figure_000.png", "figure_001.png"]
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

    with np.load(out / "explanations.npz") as z:
        assert z["values"].shape == (4, 16, 2) and z["std"].shape == (4, 16, 2)
        assert z["base_values"].shape == (4, 2) and z["full_values"].shape == (4, 2)
        assert z["segments"].shape == (4, 28, 28) and z["output_indexes"].shape == (4, 2)
        assert z["images"].shape == (4, 28, 28, 1) and z["probs"].shape == (4, 10)
        np.testing.assert_allclose(z["probs"].sum(1), 1.0, rtol=1e-5)
        # kernel SHAP is efficient: the values add up to v(all) - v(empty)
        np.testing.assert_allclose(z["values"].sum(1), z["full_values"] - z["base_values"], atol=1e-3)
        np.testing.assert_array_equal(z["output_indexes"][:, 0], z["probs"].argmax(1))
        meta = json.loads(str(z["metadata"]))
        assert meta["method"] == "kernel" and meta["model"] == "mnist-cnn" and meta["n_evals"] == 64
        assert meta["segments"] == "grid(4x4)"
        arrays = {k: z[k] for k in z.files}

    # the figure of batch 0 rebuilt through the same function: 2 rows x (image + 2 classes)
    from shapjax.image.explain import Explanation

    exp = Explanation(values=arrays["values"][:2], base_values=arrays["base_values"][:2],
                      full_values=arrays["full_values"][:2], std=None, segments=arrays["segments"][:2],
                      images=arrays["images"][:2], output_indexes=arrays["output_indexes"][:2], method="kernel")
    fig = jobs.build_figure(exp, class_names=meta["class_names"], probs=arrays["probs"][:2], names=["a", "b"])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == summary["figures"][0]["panels"] == 6
    assert panels[1].get_title().startswith(meta["class_names"][arrays["output_indexes"][0, 0]] + " (p=")


def test_explain_prints_one_summary_line(inputs, tmp_path, capsys):
    rc = cli.main(["explain", str(inputs / "lone.png"), str(inputs / "digits" / "d0.png"), "--out", str(tmp_path),
                   *FAST])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("shapjax: 2 images, 128 evaluations in ") and "evaluations/s" in lines[0]


def test_explain_tfds_source_under_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=3):
        rc = cli.main(["explain", "tfds:mnist:test:2", "--out", str(tmp_path), *FAST])
    assert rc == 0
    with np.load(tmp_path / "explanations.npz") as z:
        assert z["values"].shape == (2, 16, 2)
        assert list(z["names"]) == ["tfds:mnist:test:2#0", "tfds:mnist:test:2#1"]
        assert set(z["labels"].tolist()) <= set(range(10))  # class names match the model's: labels kept


def test_explain_superpixels_share_one_segment_count(tmp_path, monkeypatch):
    import shapjax

    real, seen = shapjax.explain, []

    def spy(*args, **kw):
        seen.append((np.shape(kw["segments"]), kw["n_segments"]))
        return real(*args, **kw)

    monkeypatch.setattr(shapjax, "explain", spy)
    rc = cli.main(["explain", "samples:planted-patch:3", "--model", "planted-patch", "--out", str(tmp_path), *FAST,
                   "--segments", "slic:12"])  # the later --segments wins
    assert rc == 0
    with np.load(tmp_path / "explanations.npz") as z:
        n_seg, values, seg = z["n_segments"], z["values"], z["segments"]
        assert values.shape == (3, n_seg.max(), 2)
        for b in range(3):
            assert n_seg[b] == seg[b].max() + 1 and n_seg[b] >= 4
            assert np.all(values[b, n_seg[b]:] == 0)  # ids an image does not use carry nothing
        np.testing.assert_allclose(values.sum(1), z["full_values"] - z["base_values"], atol=1e-3)
    # both batches (the last padded to 2 images) were explained with the same shapes and segment count
    assert seen[0] == seen[1] and seen[0][0] == (2, 32, 32) and seen[0][1] > n_seg.max()


def test_interrupted_run_leaves_no_complete_looking_result(inputs, tmp_path, monkeypatch, capsys):
    (tmp_path / "summary.json").write_text("{}")  # from an earlier run: must not survive beside new files
    import shapjax.plot

    real, calls = shapjax.plot.save_figure, []

    def flaky(fig, path, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(fig, path, **kw)

    monkeypatch.setattr(shapjax.plot, "save_figure", flaky)
    rc = cli.main(["explain", str(inputs / "digits"), str(inputs / "lone.png"), "--out", str(tmp_path), *FAST])
    assert rc == 130
    assert "interrupted" in capsys.readouterr().err
    assert (tmp_path / "figure_000.png").is_file()
    assert not (tmp_path / "summary.json").exists()
    assert not (tmp_path / "explanations.npz").exists()
    assert not list(tmp_path.glob(".tmp-*"))


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
    assert rc != 0, case
    assert expect in _one_line_error(capsys), case


def test_unexpected_errors_are_one_line_too_and_debug_shows_them(inputs, monkeypatch, capsys):
    def boom(*a, **k):
        raise RuntimeError("kaput")

    monkeypatch.setattr(cli.app, "read_inputs", boom)
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
    assert r.returncode != 0
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
