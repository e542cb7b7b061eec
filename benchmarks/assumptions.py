r"""The assumptions behind a SHAP image explanation: what "absent" means, and what the players are.

The same model, images and budget are explained (KernelSHAP, the predicted
class) with each masker — constant 0, the dataset mean colour, a Gaussian
blur, the segment's own mean colour, and a background set of training-like
images (the interventional expectation) — and each segmentation (grids,
SLIC, quickshift where it gives enough segments on these small images), for
both shipped models (``mnist-cnn`` and ``planted-patch``). Measured:

* **how much the attributions move**: Spearman rank correlation of the
  segment values between every pair of maskers on the same segments, and the
  share of the top-3 segments two maskers agree on; the *noise floor* is the
  same masker re-run with another key (what sampling alone changes);
* **how far the masked images sit from the data**: for random coalitions
  (size uniform in 1..M-1) the model's confidence (max softmax), entropy and
  probability of the originally predicted class, and the RMS pixel distance
  to the nearest real image of a reference set (training-like images), next
  to the same numbers for the real images and for the fully masked image;
* **how the faithfulness scores move**: deletion AUC (to 0, and to the
  masker's own replacement) and insertion AUC (from a blur, RISE);
* **localisation** (planted-patch, where the truth is known): the share of
  positive attribution inside the planted patch and the pointing game.

Writes ``benchmarks/results/assumptions.json`` and ``assumptions.md``
(``assumptions_quick.*`` with ``--quick``). The written reading is
``docs/assumptions.md``.

    python -m benchmarks.assumptions [--quick]

References:
  Sturmfels, Lundberg & Lee (2020), Visualizing the impact of feature attribution
  baselines, Distill. Hooker et al. (2019), A benchmark for interpretability
  methods in deep neural networks (ROAR), NeurIPS. Janzing, Minorics & Bloebaum
  (2020), Feature relevance quantification in explainable AI: a causal problem,
  AISTATS. Petsiuk, Das & Saenko (2018), RISE, BMVC.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from shapjax import data, models, segment  # noqa: E402
from shapjax.evaluation import metrics
from shapjax.evaluation.sanity import spearman  # noqa: E402
from shapjax.image import maskers
from shapjax.image.explain import explain  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MNIST_DIR = Path("/work/shared/data/mnist")  # the mnist-cnn training images, when this machine has them

CONFIGS = {
    "full": dict(n_images=6, n_evals=512, n_background=16, n_coalitions=32, n_reference=4000, full=True),
    "quick": dict(n_images=2, n_evals=256, n_background=8, n_coalitions=16, n_reference=1000, full=False),
}
MASKERS = ("constant 0", "dataset mean", "blur", "segment mean", "background")
MIN_SEGMENTS = 8  # a superpixel segmentation with fewer segments on some image is skipped


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict:
    try:
        from benchmarks.common import machine_info

        return machine_info()
    except Exception:  # noqa: BLE001 - the study does not need the bench helpers
        import platform

        return {"platform": platform.platform(), "cpu_cores": os.cpu_count(), "jax": jax.__version__,
                "backend": jax.default_backend()}


# ----------------------------------------------------------------------------- data

def reference_images(model: str, n: int, key) -> tuple[np.ndarray, str]:
    """Training-like real images: the reference set for distances, the background pool and the mean colour."""
    if model == "mnist-cnn":
        imgs = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
        if imgs.is_file():  # images 0-7999 of this file trained mnist-cnn
            x = data.load(f"idx:{imgs}", n=8000).images
            idx = np.random.default_rng(0).choice(len(x), size=min(n, len(x)), replace=False)
            return x[np.sort(idx)], f"{len(idx)} of the mnist-cnn training images (MNIST t10k 0-7999)"
        z = np.load(ROOT / "tests" / "data" / "mnist_heldout.npz")
        x = z["images"].astype(np.float32) / 255.0
        return x[:n], f"{min(n, len(x))} held-out MNIST digits (tests/data/mnist_heldout.npz)"
    ds = data.planted_patch(n, key=key)
    return ds.images, f"{n} freshly generated planted-patch images (the training distribution)"


def explained_images(model: str, n: int):
    ds = data.samples("mnist" if model == "mnist-cnn" else "planted-patch")
    return ds[:n]


def make_maskers(ref: np.ndarray, pool: np.ndarray) -> dict:
    """The five maskers; the background set is ``pool`` (kept out of the distance reference ``ref``)."""
    sigma = ref.shape[1] / 8.0
    return {"constant 0": maskers.constant(0.0), "dataset mean": maskers.dataset_mean(ref),
            "blur": maskers.blur(sigma), "segment mean": maskers.segment_mean(),
            "background": maskers.background(pool)}


def make_segmenters(model: str, full: bool) -> dict:
    """Grids, then (full run) a finer grid, SLIC and quickshift with settings for these small images."""
    out = {"grid 4x4": segment.grid(4, 4)}
    if full:
        fine = (7, 7) if model == "mnist-cnn" else (8, 8)
        out[f"grid {fine[0]}x{fine[1]}"] = segment.grid(*fine)
        out["slic 32" if model == "mnist-cnn" else "slic 50"] = segment.slic(32 if model == "mnist-cnn" else 50)
        out["quickshift"] = segment.quickshift(kernel_size=2, max_dist=10)
    return out


# ----------------------------------------------------------------------------- measurements

def _probs(clf, x, bs=512):
    out = [np.asarray(jax.nn.softmax(clf(jnp.asarray(x[i:i + bs])), -1)) for i in range(0, len(x), bs)]
    return np.concatenate(out)


def _nn_rms(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """RMS pixel distance from each image of ``a`` to its nearest image of ``ref``."""
    A = jnp.asarray(a.reshape(len(a), -1))
    R = jnp.asarray(ref.reshape(len(ref), -1))
    d2 = (A * A).sum(1)[:, None] + (R * R).sum(1)[None] - 2.0 * A @ R.T
    return np.sqrt(np.maximum(np.asarray(d2.min(1)), 0.0) / A.shape[1])


def _prob_stats(p: np.ndarray, k: np.ndarray, names=None) -> dict:
    ent = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(-1)
    out = {"confidence": float(p.max(-1).mean()), "entropy": float(ent.mean()),
           "p_predicted_class": float(p[np.arange(len(p)), k].mean()),
           "same_prediction": float((p.argmax(-1) == k).mean())}
    if names is not None:
        out["predicted"] = [names[i] for i in p.argmax(-1)]
    return out


def masked_images(x, seg, M, masker, n_coal, rng):
    """Random coalitions (size uniform in 1..M_b-1) composed with the masker: ``[B * n_coal, H, W, C]`` and
    the fully masked images ``[B, H, W, C]`` (a random background image each for the background masker)."""
    B = len(x)
    repl = np.asarray(masker.replacement(jnp.asarray(x), jnp.asarray(seg), M))  # [B, R, H, W, C]
    comps, empty = [], []
    for b in range(B):
        mb = int(seg[b].max()) + 1
        for _ in range(n_coal):
            size = rng.integers(1, mb)
            z = np.zeros(mb, bool)
            z[rng.choice(mb, size=size, replace=False)] = True
            r = rng.integers(repl.shape[1])
            comps.append(np.where(z[seg[b]][..., None], x[b], repl[b, r]))
        empty.append(repl[b, rng.integers(repl.shape[1])])
    return np.stack(comps), np.stack(empty)


def _spearman_active(a: np.ndarray, b: np.ndarray, seg: np.ndarray) -> float:
    """Mean over images of Spearman(a_b, b_b) on the segments image b actually has."""
    return float(np.mean([float(spearman(a[i, :int(seg[i].max()) + 1], b[i, :int(seg[i].max()) + 1]))
                          for i in range(len(a))]))


def _pearson_active(a: np.ndarray, b: np.ndarray, seg: np.ndarray) -> float:
    out = []
    for i in range(len(a)):
        m = int(seg[i].max()) + 1
        out.append(float(np.corrcoef(a[i, :m], b[i, :m])[0, 1]) if a[i, :m].std() > 0 and b[i, :m].std() > 0 else 0.0)
    return float(np.mean(out))


def _top3(a: np.ndarray, b: np.ndarray, seg: np.ndarray) -> float:
    out = []
    for i in range(len(a)):
        m = int(seg[i].max()) + 1
        ta, tb = set(np.argsort(-a[i, :m])[:3]), set(np.argsort(-b[i, :m])[:3])
        out.append(len(ta & tb) / 3.0)
    return float(np.mean(out))


def study_segmentation(clf, ds, seg, M, maskers_, cfg, ref, key, rng) -> dict:
    x, k = ds.images, np.asarray(jnp.argmax(clf(jnp.asarray(ds.images)), -1))
    kk = jnp.asarray(k, jnp.int32)
    phis, per_masker = {}, {}
    for j, (name, mk) in enumerate(maskers_.items()):
        t0 = time.perf_counter()
        e = explain(clf, x, key=jax.random.fold_in(key, j), segments=seg, masker=mk, method="kernel",
                    n_evals=cfg["n_evals"], outputs=k[:, None], n_segments=M)
        phi = np.asarray(e.values[..., 0])
        seconds = time.perf_counter() - t0
        phis[name] = phi
        comps, empty = masked_images(x, seg, M, mk, cfg["n_coalitions"], rng)
        kc = np.repeat(k, cfg["n_coalitions"])
        repl = mk.replacement(jnp.asarray(x), jnp.asarray(seg), M).mean(1)
        row = {
            "seconds": round(seconds, 2),
            "masked": {**_prob_stats(_probs(clf, comps), kc), "rms_to_nearest_real": float(_nn_rms(comps, ref).mean())},
            "fully_masked": {**_prob_stats(_probs(clf, empty), k, clf.class_names), "rms_to_nearest_real": float(_nn_rms(empty, ref).mean())},
            "base_value": float(np.asarray(e.base_values).mean()), "full_value": float(np.asarray(e.full_values).mean()),
            "deletion_to_0": float(metrics.deletion(clf, x, phi, segments=seg, outputs=kk).auc.mean()),
            "deletion_to_own": float(metrics.deletion(clf, x, phi, segments=seg, outputs=kk, baseline=repl).auc.mean()),
            "insertion_from_blur": float(metrics.insertion(clf, x, phi, segments=seg, outputs=kk).auc.mean()),
        }
        if ds.masks is not None:
            px = np.asarray(e.to_pixels()[..., 0])
            row["mass_in_patch"] = float(metrics.attribution_mass(px, ds.masks).mean())
            row["pointing_game"] = float(metrics.pointing_game(px, ds.masks).mean())
        per_masker[name] = row
        if name == "constant 0":  # the noise floor: the same masker, another key
            e2 = explain(clf, x, key=jax.random.fold_in(key, 99), segments=seg, masker=mk, method="kernel",
                         n_evals=cfg["n_evals"], outputs=k[:, None], n_segments=M)
            phis["constant 0 (rerun)"] = np.asarray(e2.values[..., 0])
    names = list(maskers_)
    rho = {a: {b: round(_spearman_active(phis[a], phis[b], seg), 4) for b in names} for a in names}
    pearson = {a: {b: round(_pearson_active(phis[a], phis[b], seg), 4) for b in names} for a in names}
    top3 = {a: {b: round(_top3(phis[a], phis[b], seg), 4) for b in names} for a in names}
    c0, c1 = phis["constant 0"], phis["constant 0 (rerun)"]
    noise = {"spearman": round(_spearman_active(c0, c1, seg), 4), "pearson": round(_pearson_active(c0, c1, seg), 4),
             "top3": round(_top3(c0, c1, seg), 4)}
    off = [rho[a][b] for i, a in enumerate(names) for b in names[i + 1:]]
    off_p = [pearson[a][b] for i, a in enumerate(names) for b in names[i + 1:]]
    return {"n_segments": [int(s.max()) + 1 for s in seg], "maskers": per_masker, "spearman": rho, "pearson": pearson, "top3": top3,
            "noise_floor": noise, "mean_spearman_between_maskers": round(float(np.mean(off)), 4),
            "min_spearman_between_maskers": round(float(np.min(off)), 4),
            "mean_pearson_between_maskers": round(float(np.mean(off_p)), 4)}


def study_model(model: str, cfg: dict, key) -> dict:
    clf = models.pretrained(model)
    ds = explained_images(model, cfg["n_images"])
    ref, ref_desc = reference_images(model, cfg["n_reference"] + cfg["n_background"], jax.random.fold_in(key, 1))
    perm = np.random.default_rng(1).permutation(len(ref))
    pool, ref = ref[perm[:cfg["n_background"]]], ref[np.sort(perm[cfg["n_background"]:])]
    ref_desc += f"; {len(pool)} of them form the background set, the other {len(ref)} the reference"
    ms = make_maskers(ref, pool)
    k = np.asarray(jnp.argmax(clf(jnp.asarray(ds.images)), -1))
    pr = _probs(clf, ref[:512])
    real = {"explained": {**_prob_stats(_probs(clf, ds.images), k),
                          "rms_to_nearest_real": float(_nn_rms(ds.images, ref).mean())},
            "reference": _prob_stats(pr, pr.argmax(-1))}
    out = {"model": model, "images": f"shapjax.data.samples({'mnist' if model == 'mnist-cnn' else 'planted-patch'!r})"
           f"[:{len(ds)}]", "reference": ref_desc, "real_images": real,
           "maskers": {n: m.describe() for n, m in ms.items()}, "segmentations": {}, "skipped": {}}
    rng = np.random.default_rng(2)
    for i, (sname, sg) in enumerate(make_segmenters(model, cfg["full"]).items()):
        seg = sg(ds.images)
        counts = [int(s.max()) + 1 for s in seg]
        if min(counts) < MIN_SEGMENTS:
            out["skipped"][sname] = f"{sg.describe()} gives {min(counts)}-{max(counts)} segments on these images"
            log(f"  {model} / {sname}: skipped ({out['skipped'][sname]})")
            continue
        seg, M = segment.check_segments(seg, ds.images)
        t0 = time.perf_counter()
        out["segmentations"][sname] = {"segmenter": sg.describe(), **study_segmentation(
            clf, ds, seg, M, ms, cfg, ref, jax.random.fold_in(key, 100 + i), rng)}
        log(f"  {model} / {sname} (M={M}): {time.perf_counter() - t0:.0f} s")
    return out


# ----------------------------------------------------------------------------- report

def _f(v, d=2):
    return "–" if v is None else f"{v:.{d}f}"


def _mode(stats: dict) -> str:
    names, counts = np.unique(stats.get("predicted", ["?"]), return_counts=True)
    i = int(np.argmax(counts))
    return f"{names[i]}" + (f" {counts[i]}/{counts.sum()}" if counts.sum() > 1 else "")


def glance(res: dict) -> list:
    """Per model and masker, means over the segmentations."""
    L = ["## At a glance (means over the segmentations)", "",
         "Agreement = mean Pearson / top-3 share with the four other maskers (the noise floor is in each "
         "segmentation's table). Real images: see each model's section.", ""]
    for m in res["models"]:
        segs = list(m["segmentations"].values())
        if not segs:
            continue
        names = list(segs[0]["maskers"])
        loc = "mass_in_patch" in segs[0]["maskers"][names[0]]
        L += [f"**{m['model']}** ({', '.join(m['segmentations'])}; real images: confidence "
              f"{_f(m['real_images']['explained']['confidence'])}, RMS to nearest real "
              f"{_f(m['real_images']['explained']['rms_to_nearest_real'], 3)})", "",
              "| masker | masked conf. | masked p(pred.) | fully masked conf. | masked RMS | agreement | "
              "deletion→0 | insertion" + (" | mass in patch |" if loc else " |"),
              "|---" * (8 + loc) + "|"]
        for n in names:
            avg = lambda f: float(np.mean([f(s) for s in segs]))  # noqa: E731
            agree_p = avg(lambda s: np.mean([s["pearson"][n][o] for o in names if o != n]))
            agree_t = avg(lambda s: np.mean([s["top3"][n][o] for o in names if o != n]))
            row = (f"| {n} | {_f(avg(lambda s: s['maskers'][n]['masked']['confidence']))} | "
                   f"{_f(avg(lambda s: s['maskers'][n]['masked']['p_predicted_class']))} | "
                   f"{_f(avg(lambda s: s['maskers'][n]['fully_masked']['confidence']))} | "
                   f"{_f(avg(lambda s: s['maskers'][n]['masked']['rms_to_nearest_real']), 3)} | "
                   f"{_f(agree_p)} / {_f(agree_t)} | {_f(avg(lambda s: s['maskers'][n]['deletion_to_0']), 3)} | "
                   f"{_f(avg(lambda s: s['maskers'][n]['insertion_from_blur']), 3)} |")
            if loc:
                row += f" {_f(avg(lambda s: s['maskers'][n]['mass_in_patch']))} |"
            L.append(row)
        L.append("")
    return L


def markdown(res: dict) -> str:
    cfg = res["config"]
    L = [f"# Assumptions study: maskers and segmentations{' (quick)' if res['quick'] else ''}", "",
         f"KernelSHAP, {cfg['n_evals']} coalitions per image, the predicted class, {cfg['n_images']} images per model; "
         f"background masker: {cfg['n_background']} training-like images; off-distribution statistics on "
         f"{cfg['n_coalitions']} random coalitions per image (size uniform in 1..M-1). Generated by "
         f"`python -m benchmarks.assumptions{' --quick' if res['quick'] else ''}` in {res['seconds']:.0f} s "
         f"({res['machine'].get('cpu_model', res['machine'].get('platform', ''))}, "
         f"{res['machine'].get('cpu_cores_usable', res['machine'].get('cpu_cores', '?'))} cores, "
         f"{res['machine'].get('jax_backend', res['machine'].get('backend', ''))}). Reading: `docs/assumptions.md`.", ""]
    L += glance(res)
    for m in res["models"]:
        r = m["real_images"]
        L += [f"## {m['model']}", "", f"Reference (real) images: {m['reference']}. Explained: `{m['images']}`.", "",
              f"Real images: confidence {_f(r['explained']['confidence'], 3)}, entropy "
              f"{_f(r['explained']['entropy'], 3)} nats, RMS distance to the nearest reference image "
              f"{_f(r['explained']['rms_to_nearest_real'], 3)} (reference images themselves: confidence "
              f"{_f(r['reference']['confidence'], 3)}, entropy {_f(r['reference']['entropy'], 3)}).", ""]
        for sname, s in m["segmentations"].items():
            names = list(s["maskers"])
            L += [f"### {sname} (M = {min(s['n_segments'])}–{max(s['n_segments'])})", "",
                  "| masker | masked: confidence | entropy | p(pred. class) | same pred. | RMS to nearest real "
                  "| fully masked: conf. (class) | RMS | deletion→0 | deletion→own | insertion"
                  + (" | mass in patch | pointing |" if "mass_in_patch" in s["maskers"][names[0]] else " |"),
                  "|---" * (11 + (2 if "mass_in_patch" in s["maskers"][names[0]] else 0)) + "|"]
            for n in names:
                q = s["maskers"][n]
                a, e = q["masked"], q["fully_masked"]
                row = (f"| {n} | {_f(a['confidence'])} | {_f(a['entropy'])} | {_f(a['p_predicted_class'])} | "
                       f"{_f(a['same_prediction'])} | {_f(a['rms_to_nearest_real'], 3)} | {_f(e['confidence'])} ({_mode(e)}) | "
                       f"{_f(e['rms_to_nearest_real'], 3)} | {_f(q['deletion_to_0'], 3)} | {_f(q['deletion_to_own'], 3)} | "
                       f"{_f(q['insertion_from_blur'], 3)} |")
                if "mass_in_patch" in q:
                    row += f" {_f(q['mass_in_patch'])} | {_f(q['pointing_game'])} |"
                L.append(row)
            nf = s["noise_floor"]
            L += ["", "Agreement of the segment values between maskers, mean over images, as Spearman / Pearson / "
                      "share of the top-3 segments in common. Noise floor (constant 0 re-run with another key): "
                      f"**{_f(nf['spearman'])} / {_f(nf['pearson'])} / {_f(nf['top3'])}**.", "",
                  "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
            for a in names:
                L.append(f"| {a} | " + " | ".join(
                    "–" if a == b else f"{_f(s['spearman'][a][b])} / {_f(s['pearson'][a][b])} / {_f(s['top3'][a][b])}"
                    for b in names) + " |")
            L.append("")
        for sname, why in m["skipped"].items():
            L += [f"Skipped {sname}: {why}.", ""]
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.assumptions", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small configuration (< 2 min on 2 CPU cores)")
    ap.add_argument("--out", default=str(RESULTS), help="results folder (default benchmarks/results)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md from the existing .json")
    a = ap.parse_args(argv)
    stem = Path(a.out) / ("assumptions_quick" if a.quick else "assumptions")
    if a.report_only:
        _write(stem.with_suffix(".md"), markdown(json.loads(stem.with_suffix(".json").read_text())))
        return 0
    cfg = CONFIGS["quick" if a.quick else "full"]
    t0 = time.perf_counter()
    key = jax.random.key(0)
    res = {"benchmark": "assumptions", "quick": a.quick, "config": cfg, "method": "kernel", "models": []}
    for i, model in enumerate(("mnist-cnn", "planted-patch")):
        if model not in models.available():
            log(f"{model}: not shipped, skipped")
            continue
        log(f"{model}")
        res["models"].append(study_model(model, cfg, jax.random.fold_in(key, i)))
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["machine"] = machine()
    stem.parent.mkdir(parents=True, exist_ok=True)
    _write(stem.with_suffix(".json"), json.dumps(res, indent=1) + "\n")
    _write(stem.with_suffix(".md"), markdown(res))
    log(f"wrote {stem}.json and .md in {res['seconds']:.0f} s")
    return 0


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())
