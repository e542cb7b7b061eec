"""Fast checks of the benchmark machinery (no peers, no real timing): ``pytest benchmarks/test_benchmarks.py``."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import accuracy, common, readme_table, summary


def _linear_apply(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"]


def test_host_model_pieces_cover_any_n_without_padding():
    host = common.HostModel(_linear_apply, {"w": jnp.ones((4, 3))}, (2, 2, 1), batch_size=8)
    for n in [0, 1, 5, 8, 13, 37]:
        pieces = list(host._pieces(n))
        assert sum(s for _, s in pieces) == n
        assert all(s & (s - 1) == 0 and s <= 8 for _, s in pieces)  # powers of two: few compiled shapes
        assert [i for i, _ in pieces] == list(np.cumsum([0] + [s for _, s in pieces])[:-1])


def test_host_model_numpy_and_torch_agree_with_the_jax_model():
    host = common.HostModel(_linear_apply, {"w": jnp.arange(12.0).reshape(4, 3)}, (2, 2, 1), batch_size=4)
    x = np.random.default_rng(0).random((7, 2, 2, 1), np.float32)
    want = np.asarray(_linear_apply({"w": jnp.arange(12.0).reshape(4, 3)}, jnp.asarray(x)))
    np.testing.assert_allclose(host.numpy(x), want, rtol=1e-6)
    assert host.n_images == 7
    torch = pytest.importorskip("torch")
    out = host.torch(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)


def test_compose_numpy_sets_absent_segments_to_fill():
    img = np.ones((2, 2, 1), np.float32)
    seg = np.array([[0, 1], [1, 2]])
    out = common.compose_numpy(img, seg, np.array([[1, 0, 1], [0, 0, 0]]), fill=0.5)
    np.testing.assert_array_equal(out[0, ..., 0], [[1, 0.5], [0.5, 1]])
    np.testing.assert_array_equal(out[1], np.full((2, 2, 1), 0.5))


def test_compile_explain_reports_the_chunk_and_fills_the_cache():
    import shapjax
    from shapjax.image import maskers, segment

    model = lambda x: x.reshape(x.shape[0], -1)[:, :3] * 2.0  # noqa: E731
    x = jnp.ones((1, 4, 4, 1))
    kw = dict(key=jax.random.key(0), segments=segment.grid(2, 2), masker=maskers.constant(0.0), method="kernel",
              n_evals=10)  # the kernel minimum for 4 players (2M + 2)
    info = common.compile_explain(model, x, **kw)
    assert info["batch_size"] >= 1 and info["total_compile_s"] > 0
    exp = shapjax.explain(model, x, **kw)  # runs after the ahead-of-time compile
    assert exp.values.shape == (1, 4, 3)


def test_budget_to_target_measured_extrapolated_and_levelling_off():
    rows = lambda errs: [{"budget": b, "evals_used": b, "rel_err_mean": e} for b, e in errs]  # noqa: E731
    assert accuracy.budget_to_target(rows([(64, 0.009)]))["how"] == "measured"
    it = accuracy.budget_to_target(rows([(100, 0.04), (1600, 0.0025)]))  # slope -1: 1% at 400
    assert it["how"] == "interpolated" and abs(it["evals"] - 400) <= 2
    ex = accuracy.budget_to_target(rows([(100, 0.1), (400, 0.05), (1600, 0.025)]))  # slope -1/2
    assert ex["how"] == "extrapolated" and abs(ex["evals"] - 10000) <= 100
    assert accuracy.budget_to_target(rows([(64, 0.3), (128, 0.2), (256, 0.2)]))["how"] == "levels off"


def test_exact_values_from_a_table_match_an_additive_game():
    M = 4
    w = np.array([1.0, -2.0, 0.5, 3.0])
    r = np.arange(2**M)
    table = (((r[:, None] >> np.arange(M)) & 1) * w).sum(1)
    np.testing.assert_allclose(accuracy.exact_values(table, M), w, atol=1e-9)
    assert accuracy.prec_at_k(w, w, k=2) == 1.0 and accuracy.rel_err(w, w) == 0.0


def _fake_results(tmp_path):
    machine = common.machine_info()
    machine["load_average_end"] = machine.pop("load_average")
    peers = {"benchmark": "peers_cpu", "machine": machine, "mode": "full", "backend": "cpu", "wall_s": 1.0, "cases": [{
        "case": "mnist-cnn", "model": "mnist-cnn", "images": "x", "segments": "grid 7x7 (M=49)", "budget": 2048,
        "n_images": 1, "rounds": 1, "model_cost_s": 0.4,
        "shapjax": {"kernel": {"median_s": 0.5, "compile_s": 1.0, "evals_per_image": 2048, "batch_size": 256}},
        "peers": [{"library": "shap", "explainer": "KernelExplainer", "shapjax_method": "kernel", "status": "ok",
                   "median_s": 0.45, "ratio_to_shapjax": 0.9, "ratio_to_shapjax_batched": None,
                   "model_images": [2048], "corr_with_shapjax": [0.99]},
                  {"library": "captum", "explainer": "Lime", "shapjax_method": "kernel", "status": "skipped",
                   "reason": "captum not installed"}]}]}
    (tmp_path / "peers_cpu.json").write_text(json.dumps(peers))
    return tmp_path


def test_summary_says_where_a_peer_is_faster_and_why(tmp_path):
    path = summary.write_summary(_fake_results(tmp_path))
    text = path.read_text()
    assert "0.90x** (peer faster)" in text
    assert "Where shapjax is not faster: shap KernelExplainer" in text and "Why:" in text
    assert "skipped: captum not installed" in text


def test_readme_table_replaces_only_the_text_between_the_markers(tmp_path):
    res = _fake_results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{readme_table.START}\nold\n{readme_table.END}\nafter\n")
    assert readme_table.update_readme(readme, res)
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith(f"{readme_table.END}\nafter\n") and "old" not in text
    assert "shap KernelExplainer" in text and "1.1x faster" in text
    readme.write_text("no markers\n")
    assert not readme_table.update_readme(readme, res)
    assert readme.read_text() == "no markers\n"
