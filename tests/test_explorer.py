"""The explorer's store and JSON API (starlette's TestClient): verdicts persist, bad requests are 4xx JSON."""
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from shapjax.explorer import Explorer, FeedbackStore

pytest.importorskip("starlette", reason="the explorer's web layer needs starlette: pip install 'shapjax[explore]'")
pytest.importorskip("httpx2", reason="starlette's TestClient needs httpx2 (in the test extra)")

from starlette.testclient import TestClient  # noqa: E402

from shapjax.explorer import create_app  # noqa: E402

SETTINGS = ["kernel|grid:4x4|constant:0", "gradcam"]


@pytest.fixture(scope="module")
def planted():
    from shapjax import data, models

    return models.pretrained("planted-patch"), data.samples("planted-patch")


@pytest.fixture(scope="module")
def explainer(planted):
    from shapjax.explorer.compute import Explainer

    clf, ds = planted
    return Explainer(clf, ds.images, n_evals=64)  # shared: every Explorer of this module reuses its cache


def _explorer(planted, explainer, store):
    clf, ds = planted
    return Explorer(clf, ds.images, model_name="planted-patch", store=store, labels=ds.labels, settings=SETTINGS,
                    explainer=explainer)


@pytest.fixture()
def client(planted, explainer, tmp_path):
    ex = _explorer(planted, explainer, tmp_path / "store")
    with TestClient(create_app(ex), raise_server_exceptions=False) as c:
        c.explorer = ex
        yield c


def test_health_and_page(client):
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["n_images"] == 8 and h["n_feedback"] == 0
    assert [s["name"] for s in h["settings"]] == SETTINGS
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_next_shows_an_image_its_classes_and_the_chosen_explanation(client, planted):
    clf, ds = planted
    r = client.get("/api/next", params={"wait": 60})
    assert r.status_code == 200
    v = r.json()
    assert v["image_id"] == "image-0" and v["n_images"] == 8
    probs = [c["probability"] for c in v["classes"]]
    assert len(v["classes"]) == 4 and probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-4)
    assert v["class"]["index"] == v["predicted"]["index"] == v["classes"][0]["index"]
    assert v["setting"]["name"] == v["choice"]["setting"] in SETTINGS and "Thompson" in v["choice"]["reason"]
    e = v["explanation"]
    assert e["status"] == "ready"
    assert np.asarray(e["pixels"]).shape == (32, 32)
    png = client.get(e["png_url"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    img = client.get(v["image_url"])
    assert img.status_code == 200 and img.content[:4] == b"\x89PNG"
    assert client.get("/api/next", params={"maps": 0}).json()["image_id"] == "image-1"  # in order
    # another class and another method of the same image, side by side
    other = client.get("/api/next", params={"image_id": "image-0", "class": v["classes"][1]["name"],
                                            "setting": "gradcam", "wait": 60}).json()
    assert other["class"]["index"] == v["classes"][1]["index"] and other["setting"]["name"] == "gradcam"
    assert other["choice"]["policy"] == "user" and other["explanation"]["segments"] is None


def test_feedback_is_stored_exported_and_a_down_offers_the_next_class(client):
    v = client.get("/api/next", params={"wait": 60, "maps": 0}).json()
    body = {"image_id": v["image_id"], "class": v["class"]["index"], "setting": v["setting"]["name"],
            "verdict": "down"}
    r = client.post("/api/feedback", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stored"] and out["n_feedback"] == 1
    assert out["next"]["class"] == v["classes"][1]["index"]  # as in the seed: 👎 shows the next class
    assert out["alternative"]["setting"] in SETTINGS and out["alternative"]["setting"] != v["setting"]["name"]
    r = client.post("/api/feedback", json={**body, "class": out["next"]["class"], "verdict": "up"})
    assert r.status_code == 200 and "next" not in r.json()
    rows = client.get("/api/feedback").json()["feedback"]
    assert [(x["verdict"], x["class"]) for x in rows] == [("down", body["class"]), ("up", out["next"]["class"])]
    assert rows[0]["image_id"] == v["image_id"] and rows[0]["setting"] == v["setting"]["name"]
    csv_text = client.get("/api/feedback", params={"format": "csv", "download": 1})
    assert csv_text.headers["content-disposition"].endswith("feedback.csv")
    lines = csv_text.text.strip().splitlines()
    assert lines[0].startswith("id,created,model,image_id,class") and len(lines) == 3


def test_feedback_survives_a_restart_and_steers_the_bandit(planted, explainer, tmp_path):
    store = tmp_path / "s"
    ex = _explorer(planted, explainer, store)
    c = ex.predicted(0)
    for _ in range(6):
        ex.feedback({"image_id": "image-0", "class": c, "setting": "gradcam", "verdict": "up"})
        ex.feedback({"image_id": "image-0", "class": c, "setting": SETTINGS[0], "verdict": "down"})
    ex.store.close()
    again = _explorer(planted, explainer, store)  # a new process would see the same
    assert len(again.store) == 12
    post = {p.arm: p for p in again.posteriors(c)}
    assert post["gradcam"].mean > 0.8 > 0.2 > post[SETTINGS[0]].mean
    picks = [again.choose(0).arm for _ in range(20)]
    assert picks.count("gradcam") >= 18
    # another class of the same model learns from the pooled prior
    other = next(k for k in range(4) if k != c)
    pooled = {p.arm: p for p in again.posteriors(other)}
    assert pooled["gradcam"].mean > pooled[SETTINGS[0]].mean


def test_region_marks_score_every_setting(client, planted):
    clf, ds = planted
    ex = client.explorer
    ys, xs = np.nonzero(ds.masks[2])  # the planted patch of image 2: the truth
    box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    c = ex.predicted(2)
    r = client.post("/api/feedback", json={"image_id": "image-2", "class": c, "setting": "gradcam",
                                           "verdict": "down", "regions": [{"box": box}, {"x": 1.5, "y": 1.5, "r": 1}]})
    assert r.status_code == 200 and r.json()["marked_pixels"] >= 64
    ex.wait_idle(120)
    row = ex.store.rows()[-1]
    assert set(row["region_scores"]) == set(SETTINGS)
    assert all(0 <= s <= 1 for s in row["region_scores"].values())
    assert row["region_scores"][SETTINGS[0]] > 0.3  # KernelSHAP puts its positive mass on the patch
    counts = ex.store.counts("planted-patch")
    u, d = counts[(c, SETTINGS[0])]
    assert u == pytest.approx(row["region_scores"][SETTINGS[0]]) and u + d == pytest.approx(1)
    # segment ids of a segment setting are regions too
    r = client.post("/api/feedback", json={"image_id": "image-2", "class": c, "setting": SETTINGS[0],
                                           "verdict": "up", "regions": [0, 5]})
    assert r.status_code == 200 and r.json()["marked_pixels"] == 128


GOOD = {"image_id": "image-0", "class": 0, "setting": "gradcam", "verdict": "up"}


@pytest.mark.parametrize("method,url,payload,status,match", [
    ("get", "/api/next?image_id=nope", None, 404, "unknown image"),
    ("get", "/api/next?class=7", None, 400, "class"),
    ("get", "/api/next?class=1.5", None, 400, "class"),
    ("get", "/api/next?setting=shap", None, 400, "unknown setting"),
    ("get", "/api/next?wait=abc", None, 400, "wait"),
    ("get", "/api/next?wait=1e9", None, 400, "wait"),
    ("get", "/api/next?bogus=1", None, 400, "unknown query parameter"),
    ("get", "/api/next?maps=maybe", None, 400, "maps"),
    ("get", "/api/explanation?image_id=image-0", None, 400, "class: required"),
    ("get", "/api/explanation?class=0&setting=gradcam", None, 400, "image_id: required"),
    ("get", "/api/overlay.png?image_id=image-0&class=0", None, 400, "setting: required"),
    ("get", "/api/image.png?image_id=x", None, 404, "unknown image"),
    ("get", "/api/feedback?format=xml", None, 400, "format"),
    ("get", "/api/nothing", None, 404, "Not Found"),
    ("put", "/api/feedback", None, 405, ""),
    ("post", "/api/feedback", b"{not json", 400, "JSON"),
    ("post", "/api/feedback", [1, 2], 400, "JSON object"),
    ("post", "/api/feedback", {k: v for k, v in GOOD.items() if k != "verdict"}, 400, "verdict: required"),
    ("post", "/api/feedback", {**GOOD, "verdict": "meh"}, 400, "verdict"),
    ("post", "/api/feedback", {**GOOD, "class": True}, 400, "class"),
    ("post", "/api/feedback", {**GOOD, "class": 99}, 400, "class"),
    ("post", "/api/feedback", {**GOOD, "image_id": 3}, 404, "unknown image"),
    ("post", "/api/feedback", {**GOOD, "setting": "lime"}, 400, "setting"),
    ("post", "/api/feedback", {**GOOD, "extra": 1}, 400, "unknown field"),
    ("post", "/api/feedback", {**GOOD, "regions": "all"}, 400, "regions"),
    ("post", "/api/feedback", {**GOOD, "regions": [3]}, 400, "segment setting"),
    ("post", "/api/feedback", {**GOOD, "regions": [{"x": 99, "y": 0}]}, 400, "outside"),
    ("post", "/api/feedback", {**GOOD, "regions": [{"x": "a", "y": 0}]}, 400, "number"),
    ("post", "/api/feedback", {**GOOD, "regions": [{"box": [5, 5, 2, 2]}]}, 400, "box"),
    ("post", "/api/feedback", {**GOOD, "regions": [{"what": 1}]}, 400, "regions"),
    ("post", "/api/feedback", {**GOOD, "setting": SETTINGS[0], "regions": [99]}, 400, "segment id"),
])
def test_bad_requests_are_4xx_json_and_store_nothing(client, method, url, payload, status, match):
    kw = {"content": payload} if isinstance(payload, bytes) else ({"json": payload} if payload is not None else {})
    r = getattr(client, method)(url, **kw)
    assert r.status_code == status, r.text
    assert match in r.json()["error"]
    assert len(client.explorer.store) == 0


def test_confirmed_feedback_survives_a_killed_process(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal
        from shapjax.explorer.store import FeedbackStore
        s = FeedbackStore({str(tmp_path)!r})
        s.add(model="m", image_id="a", cls=1, class_name="one", predicted=1, setting="gradcam", verdict="up")
        print("confirmed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert "confirmed" in p.stdout and p.returncode == -9
    rows = FeedbackStore(tmp_path).rows()
    assert [(r["image_id"], r["verdict"]) for r in rows] == [("a", "up")]
    with sqlite3.connect(tmp_path / "feedback.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert json.loads(FeedbackStore(tmp_path).export_json())[0]["class_name"] == "one"


def test_explore_command_names_the_extra_when_starlette_is_missing(monkeypatch, tmp_path, capsys):
    from shapjax.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    assert main(["explore", "samples:planted-patch", "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "shapjax[explore]" in err and "uvicorn" in err


def test_explore_command_rejects_bad_options(tmp_path, capsys):
    from shapjax.cli import main

    assert main(["explore", "samples:planted-patch", "--store", str(tmp_path), "--settings", "kernel|grid:2x2"]) == 2
    assert "--settings" in capsys.readouterr().err
    assert main(["explore", "samples:planted-patch"]) == 2
    assert "--store" in capsys.readouterr().err


def test_superpixel_settings_pad_the_players_to_few_compiled_sizes(planted, explainer):
    from shapjax.explorer.settings import parse_setting

    clf, ds = planted
    r = explainer.submit(1, 0, parse_setting("lime|slic:12|segment_mean")).result(timeout=300)
    M = int(r.segments.max()) + 1
    assert r.values.shape[0] % 16 == 0 and r.values.shape[0] >= M + 1  # padded players are empty ...
    np.testing.assert_allclose(r.values[M:], 0.0)  # ... and worth nothing
    assert r.pixels.shape == (32, 32) and 0 <= r.positive_share(ds.masks[1]) <= 1


def test_explanations_are_cached_on_disk_for_a_restarted_server(planted, tmp_path, monkeypatch):
    from shapjax.explorer.compute import Explainer
    from shapjax.explorer.settings import parse_setting

    clf, ds = planted
    s = parse_setting("gradcam")
    first = Explainer(clf, ds.images, cache_dir=tmp_path).submit(3, 1, s).result(timeout=120)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = Explainer(clf, ds.images, cache_dir=tmp_path)
    monkeypatch.setattr(again, "_explain", lambda *a: (_ for _ in ()).throw(AssertionError("recomputed")))
    r = again.submit(3, 1, s).result(timeout=120)
    np.testing.assert_array_equal(r.pixels, first.pixels)
    assert r.segments is None and r.method == first.method
    changed = Explainer(clf, ds.images[::-1].copy(), cache_dir=tmp_path)  # other pixels at index 3: no stale read
    assert changed._disk_path(3, 1, s) != again._disk_path(3, 1, s)
