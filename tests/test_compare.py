"""shapjax.compare: the runner, its table and figure, the CLI, LIME against `lime`, localisation."""
import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapjax import data, models
from shapjax.cli.compare import main as compare_cli
from shapjax.evaluation import compare as C
from shapjax.evaluation import metrics
from shapjax.image import maskers, segment
from shapjax.image.explain import explain

H = W = 12


@pytest.fixture(scope="module")
def tiny():
    clf = models.small_cnn(key=jax.random.key(0), num_classes=3, input_shape=(H, W, 1), widths=(4, 8), hidden=0)
    x = jax.random.uniform(jax.random.key(1), (3, H, W, 1))
    return clf, x


@pytest.fixture(scope="module")
def result(tiny):
    clf, x = tiny
    masks = np.zeros((3, H, W), bool)
    masks[:, :6, :6] = True
    return C.compare(clf, x, key=jax.random.key(0), methods=["kernel", "occlusion", "integrated_gradients", "gradcam"],
                     segments=segment.grid(3, 3), masker=maskers.constant(0.0), n_evals=64, masks=masks,
                     labels=np.array([0, 1, 2]), progress=False,
                     metrics="deletion,insertion,road_morf,faithfulness,sparseness,complexity,pointing_game,mass")


def test_table_rows_columns_and_summary(tiny, result):
    clf, x = tiny
    assert result.methods == ("kernel", "occlusion", "ig", "gradcam")
    assert len(result.rows) == 3 * 4
    assert [(r["image"], r["method"]) for r in result.rows[:4]] == [(0, "kernel"), (1, "kernel"), (2, "kernel"),
                                                                   (0, "occlusion")]
    for col in ("image", "method", "family", "predicted", "prob", "deletion", "insertion", "faithfulness",
                "sparseness", "complexity", "pointing_game", "mass", "seconds", "model_evals"):
        assert col in result.columns
    pred = np.asarray(jnp.argmax(clf(x), -1))
    assert (result.column("predicted", "ig") == pred).all()
    assert result.column("model_evals", "occlusion").tolist() == [9 + 2] * 3  # M + 2
    assert result.column("model_evals", "ig").tolist() == [33] * 3
    for r in result.rows:
        assert 0 <= r["deletion"] <= 1 and 0 <= r["insertion"] <= 1 and -1 <= r["faithfulness"] <= 1
        assert r["pointing_game"] in (0.0, 1.0) and 0 <= r["mass"] <= 1 and r["seconds"] > 0
    k = result.column("sparseness", "gradcam")
    s = result.summary["gradcam"]["sparseness"]
    np.testing.assert_allclose(s["mean"], k.mean(), rtol=1e-6)
    np.testing.assert_allclose(s["std"], k.std(ddof=1), rtol=1e-6)
    # every method sees the same players: pixel maps [B, H, W] and segment vectors [B, M]
    for m in result.methods:
        assert result.maps[m].shape == (3, H, W) and result.segment_values[m].shape == (3, 9)
    # segment values of a pixel method are its pixel map summed per segment
    seg = result.segments[0]
    np.testing.assert_allclose(result.segment_values["ig"][0, 4], result.maps["ig"][0][seg == 4].sum(), rtol=1e-4)
    # the occlusion (leave-one-out) values are v(N) - v(N \ {i}) of the predicted class
    i, b, k0 = 4, 1, int(pred[1])
    xi = np.asarray(x[b]).copy()
    xi[seg == i] = 0.0
    drop = float(clf(x[b:b + 1])[0, k0] - clf(jnp.asarray(xi)[None])[0, k0])
    np.testing.assert_allclose(result.segment_values["occlusion"][b, i], drop, rtol=1e-4, atol=1e-5)


def test_figure_panels(result):
    fig = result.figure(max_images=2)
    with_images = [ax for ax in fig.axes if ax.images]
    assert len(with_images) == 2 * (1 + 4)  # rows x (image + one overlay per method)
    titles = [ax.get_title() for ax in with_images]
    assert any(t.startswith("Integrated grad.") for t in titles) and any("Grad-CAM" in t for t in titles)
    # overlays are scaled to a symmetric range [-1, 1]
    arr = with_images[1].images[-1].get_array()
    assert float(np.max(np.abs(arr))) <= 1.0 + 1e-9
    lo, hi = with_images[1].images[-1].get_clim()
    assert lo == -hi == -1.0


def test_save_writes_csv_json_png(result, tmp_path):
    paths = result.save(tmp_path / "out")
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    # full column names with their direction
    assert len(rows) == 12 and rows[0]["Method"] == "kernel" and float(rows[0]["Deletion AUC (Petsiuk 2018), lower is better"]) >= 0
    assert "ROAD AUC, most relevant first (Rong 2022), lower is better" in rows[0]
    assert "Sparseness (Gini), descriptive (neither better)" in rows[0]
    js = json.loads(open(paths["json"]).read())
    assert set(js) == {"meta", "columns", "rows", "summary", "rankings"}
    cols = {c["key"]: c for c in js["columns"]}
    assert cols["deletion"]["better"] == "lower" and cols["insertion"]["better"] == "higher"
    assert cols["road_morf"]["name"] == "ROAD AUC, most relevant first (Rong 2022), lower is better"
    assert js["rankings"]["deletion"] == sorted(js["summary"], key=lambda m: js["summary"][m]["deletion"]["mean"])
    assert set(js["summary"]) == {"kernel", "occlusion", "ig", "gradcam"}
    assert set(js["summary"]["ig"]["insertion"]) == {"mean", "std", "n"}
    assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "out").glob(".tmp-*"))


def test_csv_quotes_round_trip(result, tmp_path):
    import dataclasses

    odd = 'a"b, "c"\nd'
    path = dataclasses.replace(result, rows=[dict(result.rows[0], label=odd)]).to_csv(tmp_path / "odd.csv",
                                                                                     header="keys")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["label"] == odd and rows[0]["method"] == result.rows[0]["method"]


def test_compare_bad_inputs(tiny):
    clf, x = tiny
    kw = dict(key=jax.random.key(0), segments=segment.grid(3, 3), masker=maskers.constant(0.0), progress=False)
    with pytest.raises(ValueError, match="methods"):
        C.compare(clf, x, methods="kernal", **kw)
    with pytest.raises(ValueError, match="metrics"):
        C.compare(clf, x, methods="kernel", metrics="auc", **kw)
    with pytest.raises(ValueError, match="exact"):
        C.compare(clf, x, methods="exact", **{**kw, "segments": segment.grid(4, 4)})
    with pytest.raises(ValueError, match="gradcam"):
        C.compare(lambda im: clf(im), x, methods="gradcam", **kw)
    with pytest.raises(ValueError, match="masks"):
        C.compare(clf, x, methods="kernel", masks=np.ones((H, W + 1), bool), **kw)
    with pytest.raises(TypeError, match="key"):
        C.compare(clf, x, methods="kernel", **{**kw, "key": 0})
    assert C.resolve_methods("KernelSHAP, gxi,sliding-occlusion,grad_cam") == (
        "kernel", "gradxinput", "window-occlusion", "gradcam")
    assert "exact" in C.resolve_methods("all", n_segments=9) and "exact" not in C.resolve_methods("all")


# ----------------------------------------------------------------------------- CLI

@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory, tiny):
    from PIL import Image

    root = tmp_path_factory.mktemp("cli")
    clf, _ = tiny
    models.save_checkpoint(root / "tiny", clf)
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / "imgs" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (H, W), dtype=np.uint8)).save(root / "imgs" / c / f"{i}.png")
    return root


def test_cli_writes_files(cli_inputs, capsys):
    root = cli_inputs
    out = root / "out"
    rc = compare_cli(["--model", str(root / "tiny"), "--data", str(root / "imgs"), "--n", "2",
                     "--methods", "occlusion,gradient", "--segments", "grid:2x2", "--masker", "constant:0",
                     "--metrics", "deletion,insertion", "--n-evals", "16", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["compare.png", "results.csv", "results.json"]
    js = json.loads((out / "results.json").read_text())
    assert len(js["rows"]) == 4 and js["meta"]["masker"] == "constant(0)"
    assert set(js["summary"]) == {"occlusion", "gradient"}


@pytest.mark.parametrize("args, what", [
    (["--model", "no-such-model"], "--model"),
    (["--n", "0"], "--n"),
    (["--methods", "kernal"], "methods"),
    (["--segments", "hexagons"], "--segments"),
    (["--masker", "blurr"], "--masker"),
    (["--data", "/no/such/folder"], "--data"),
    (["--n-evals", "many"], "--n-evals"),
])
def test_cli_one_line_errors(cli_inputs, capsys, args, what):
    root = cli_inputs
    base = {"--model": str(root / "tiny"), "--data": str(root / "imgs"), "--out": str(root / "bad")}
    for a, v in zip(args[::2], args[1::2]):
        base[a] = v
    rc = compare_cli([t for kv in base.items() for t in kv] + ["--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc in (1, 2)
    assert len(err.splitlines()) == 1 and "Traceback" not in err and what in err, err
    assert not (root / "bad").exists()


def test_cli_prints_rankings_with_directions(cli_inputs, capsys):
    root = cli_inputs
    rc = compare_cli(["--model", str(root / "tiny"), "--data", str(root / "imgs"), "--n", "2",
                      "--methods", "occlusion,gradient", "--metrics", "deletion,road_lerf,sparseness",
                      "--segments", "grid:2x2", "--n-evals", "16", "--out", str(root / "out2")])
    out = capsys.readouterr().out
    assert rc == 0
    for line in ("Deletion AUC (Petsiuk 2018), lower is better:", "ROAD AUC, least relevant first (Rong 2022), "
                 "higher is better:", "Sparseness (Gini), descriptive (neither better):",
                 "Seconds per explanation, lower is better:"):
        assert line in out, out


def test_missing_peer_names_the_extra(cli_inputs, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "captum" else real(n, *a))
    with pytest.raises(ValueError, match=r"captum:ig.*pip install \"shapjax\[peers\]\""):
        C.compare(*_tiny_args(), key=jax.random.key(0), methods="ig,captum:ig", segments=segment.grid(2, 2),
                  masker=maskers.constant(0.0), progress=False)
    root = cli_inputs
    rc = compare_cli(["--model", str(root / "tiny"), "--data", str(root / "imgs"), "--methods", "kernel,captum:ig",
                      "--out", str(root / "nope"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc in (1, 2) and len(err.splitlines()) == 1 and "shapjax[peers]" in err, err


def _tiny_args():
    clf = models.small_cnn(key=jax.random.key(0), num_classes=3, input_shape=(H, W, 1), widths=(4, 8), hidden=0)
    return clf, jax.random.uniform(jax.random.key(1), (2, H, W, 1))


def test_method_names_and_aliases():
    assert C.resolve_methods("shap-kernel, captum_ig,lime:image,Shap:Partition") == (
        "shap:kernel", "captum:ig", "lime:image", "shap:partition")
    assert C.resolve_methods("peers") == C.PEER_METHODS and len(C.PEER_METHODS) == 8
    with pytest.raises(ValueError, match="methods"):
        C.resolve_methods("shap:deep")
    assert C.resolve_metrics("all") == tuple(C.METRICS) and C.resolve_metrics("mprt,road") == (
        "model_randomisation", "road_morf")
    for m, spec in C.METRICS.items():
        assert spec.better in ("higher", "lower", "") and spec.name, m


def test_peers_in_compare_on_the_same_game(tiny):
    pytest.importorskip("shap", reason="peer methods need shap (pip install 'shapjax[peers]')")
    pytest.importorskip("lime", reason="peer methods need lime (pip install 'shapjax[peers]')")
    pytest.importorskip("captum", reason="peer methods need captum (pip install 'shapjax[peers]')")
    clf, x = tiny
    res = C.compare(clf, x[:2], key=jax.random.key(0), methods="kernel,shap:kernel,captum:kernelshap,lime:image,ig,"
                    "captum:ig", segments=segment.grid(3, 3), masker=maskers.constant(0.25), n_evals=256,
                    metrics="deletion,road_morf,completeness_gap,max_sensitivity,random_logit,model_randomisation",
                    metric_options={"sensitivity": {"n_samples": 2}}, progress=False)
    assert res.column("library", "shap:kernel").tolist() == ["shap", "shap"]
    assert res.meta["peers"]["captum:ig"]["library"] == "captum"
    for m in res.methods:
        for k in res.metrics:
            assert np.all(np.isfinite(res.column(k, m))), (m, k)
    sv = res.segment_values
    # the same segment game: KernelSHAP agrees with KernelSHAP (captum samples with replacement: noisier)
    for peer, floor in (("shap:kernel", 0.95), ("captum:kernelshap", 0.75)):
        for b in range(2):
            assert np.corrcoef(sv[peer][b], sv["kernel"][b])[0, 1] > floor, (peer, b)
        np.testing.assert_allclose(res.column("completeness_gap", peer), 0.0, atol=1e-3)  # efficiency
    for b in range(2):  # captum's IG (Gauss-Legendre) on our model through jax.vjp ~ our IG (trapezoid)
        assert np.corrcoef(res.maps["captum:ig"][b].ravel(), res.maps["ig"][b].ravel())[0, 1] > 0.99
    assert np.corrcoef(sv["lime:image"].ravel(), sv["kernel"].ravel())[0, 1] > 0.5


def test_cli_missing_out_is_a_usage_error(capsys):
    assert compare_cli(["--model", "mnist-cnn"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--out" in err


# ----------------------------------------------------------------------------- LIME against `lime`

def test_lime_surrogate_matches_lime_package():
    lime_image = pytest.importorskip("lime.lime_image")
    S = 16
    img = np.asarray(jax.random.uniform(jax.random.key(5), (S, S, 3)), np.float64)
    seg = np.asarray(segment.grid(4, 4)(img[None].astype(np.float32))[0])
    onehot = jax.nn.one_hot(jnp.asarray(seg), 16).reshape(S * S, 16) / (S * S / 16)
    wts = jax.random.normal(jax.random.key(6), (16, 2))

    def model(x):  # a saturating linear model of the segment means: the kernel weighting matters
        m = jnp.einsum("nhwc,hwm->nm", x, onehot.reshape(S, S, 16)) / 3.0
        return 3.0 * jnp.tanh(m @ wts)

    n = 2000
    ours = explain(model, img[None].astype(np.float32), key=jax.random.key(0), segments=seg,
                   masker=maskers.constant(0.0), method="lime", n_evals=n + 1, outputs=[0, 1])
    exp = lime_image.LimeImageExplainer(random_state=0).explain_instance(
        img, lambda ims: np.asarray(model(jnp.asarray(ims, jnp.float32))), labels=(0, 1), top_labels=None,
        hide_color=0, num_samples=n, segmentation_fn=lambda im: seg)
    for k in (0, 1):
        theirs = np.zeros(16)
        for j, c in exp.local_exp[k]:
            theirs[j] = c
        mine = np.asarray(ours.values[0, :, k])
        # deterministic seeds; a kernel width of 1.0 instead of LIME's 0.25 breaks the rtol below
        assert np.corrcoef(mine, theirs)[0, 1] > 0.99
        top = np.argsort(-np.abs(theirs))[:4]
        np.testing.assert_allclose(mine[top], theirs[top], rtol=0.1, atol=0.02 * np.abs(theirs).max())


# ----------------------------------------------------------------------------- localisation

@pytest.mark.skipif("planted-patch" not in models.available(), reason="planted-patch weights not shipped")
def test_pointing_game_hits_planted_patch():
    clf = models.pretrained("planted-patch")
    ds = data.planted_patch(6, key=jax.random.key(2024))  # fresh images from the generator (not the training seeds)
    k = jnp.argmax(clf(ds.images), -1)
    assert float(jnp.mean(k == ds.labels)) >= 5 / 6  # the model uses the patch
    exp = explain(clf, ds.images, key=jax.random.key(0), segments=segment.grid(8, 8), masker=maskers.blur(4.0),
                  method="kernel", n_evals=512, outputs=np.asarray(k)[:, None])
    hits = metrics.pointing_game(exp, ds.masks)
    assert float(hits.mean()) >= 5 / 6
    mass = metrics.attribution_mass(exp, ds.masks)
    assert float(mass.mean()) > 3 * ds.masks.mean()  # far more than the patch's share of the image
