"""Side by side with shap, lime and captum: same model, same segments, same masking, same budget.

Every library explains the same scalar output (the logit of the class the
model predicts on the unmasked image) of the same classifier, through one
host callable (:class:`shapjax.evaluation.peers.HostModel`: our jitted JAX forward,
fed NumPy NHWC or torch NCHW, compiled for every chunk shape beforehand), so
all of them pay the same model cost per image. Absent segments become 0 (a
constant masker) everywhere; the players are the same grid segments, except
for shap's PartitionExplainer, which uses its own Image masker (pixel
hierarchy, constant 0).

Peer <-> shapjax method it is compared with:

=========================  ==============  =================================
peer                       shapjax method  budget mapping
=========================  ==============  =================================
shap KernelExplainer       kernel          nsamples = budget - 2, l1_reg=False
shap PermutationExplainer  antithetic      max_evals = budget
shap PartitionExplainer    partition       max_evals = budget (Image masker)
lime LimeImageExplainer    lime            num_samples = budget
captum KernelShap          kernel          n_samples = budget - 2
captum ShapleyValueSampling permutation    n_samples = (budget - 2) // M orderings
captum Lime                lime            n_samples = budget
=========================  ==============  =================================

Each library is warmed up once (excluded from timing, like shapjax's compile,
which is reported separately). Then, on every image and in every round, the
matching shapjax method is timed right before each peer, and the ratio is the
median of those back-to-back pairs (the machine's load changes less within a
pair than across a whole run); median wall times per explanation are reported
with the model images each explanation actually used.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import jax
import numpy as np

from benchmarks.common import (
    HostModel,
    backend,
    compile_explain,
    log,
    median,
    timed,
    write_result,
)

PEERS = [
    # (library, explainer, shapjax method)
    ("shap", "KernelExplainer", "kernel"),
    ("shap", "PermutationExplainer", "antithetic"),
    ("shap", "PartitionExplainer", "partition"),
    ("lime", "LimeImageExplainer", "lime"),
    ("captum", "KernelShap", "kernel"),
    ("captum", "ShapleyValueSampling", "permutation"),
    ("captum", "Lime", "lime"),
]

FULL = {"cases": [
    {"name": "mnist-cnn", "model": "mnist-cnn", "data": "mnist", "grid": 7, "budget": 2048, "n_images": 3,
     "host_batch": 256, "batched_B": 8, "rounds": 3},
    {"name": "resnet18-32", "model": "resnet18", "data": "skimage32", "grid": 4, "budget": 256, "n_images": 1,
     "host_batch": 64, "batched_B": None, "rounds": 2},
]}
QUICK = {"cases": [
    {"name": "mnist-cnn", "model": "mnist-cnn", "data": "mnist", "grid": 7, "budget": 512, "n_images": 2,
     "host_batch": 256, "batched_B": 8, "rounds": 2},
]}


def _import_error(lib: str) -> str | None:
    try:
        if lib == "captum":
            import captum.attr  # noqa: F401
            import torch  # noqa: F401
        elif lib == "shap":
            import shap  # noqa: F401
        elif lib == "lime":
            import lime.lime_image  # noqa: F401
        return None
    except Exception as e:  # noqa: BLE001 - any import failure means "skip, with the reason"
        return f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------- peer runners
# The runners are the library's (shapjax.evaluation.peers, also behind `shapjax compare`), with a constant 0
# baseline. Each: (host, image [H,W,C] float32, seg [H,W] int, M, target, budget, seed) -> values [M].


def _runner(name):
    from shapjax.evaluation.peers import PEERS

    def run(host, img, seg, M, t, budget, seed):
        out = PEERS[name].run(host, img, seg, M, t, budget, seed, np.zeros_like(img))
        if out.values is not None:
            return out.values
        return np.bincount(seg.reshape(-1), weights=out.heatmap.reshape(-1), minlength=M)  # pixels -> segment sums

    return run


RUNNERS: dict[tuple[str, str], Callable] = {
    ("shap", "KernelExplainer"): _runner("shap:kernel"),
    ("shap", "PermutationExplainer"): _runner("shap:permutation"),
    ("shap", "PartitionExplainer"): _runner("shap:partition"),
    ("lime", "LimeImageExplainer"): _runner("lime:image"),
    ("captum", "KernelShap"): _runner("captum:kernelshap"),
    ("captum", "ShapleyValueSampling"): _runner("captum:shapleyvaluesampling"),
    ("captum", "Lime"): _runner("captum:lime"),
}


# --------------------------------------------------------------------------- case setup


def _case_model_and_images(case):
    import shapjax
    from shapjax import models

    if case["model"] == "mnist-cnn":
        clf = models.pretrained("mnist-cnn")
    else:
        clf = getattr(models, case["model"])(jax.random.key(0))
    if case["data"] == "mnist":
        images = shapjax.data.samples("mnist").images
        source = "shapjax.data.samples('mnist')"
    else:
        images = shapjax.data.load("skimage:astronaut,chelsea,coffee,rocket", size=(32, 32)).images
        source = "scikit-image photos resized to 32x32"
    return clf, np.asarray(images, np.float32), source


def _corr(a, b) -> float | None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() == 0 or b.std() == 0:
        return None
    return round(float(np.corrcoef(a, b)[0, 1]), 4)


def run_case(case: dict, *, seed: int = 0) -> dict:
    import shapjax
    from shapjax.image import maskers, segment

    clf, images, source = _case_model_and_images(case)
    n = case["n_images"]
    budget, G = case["budget"], case["grid"]
    M = G * G
    warm_img, imgs = images[-1], images[:n]
    seg = np.asarray(segment.grid(G, G)(imgs[:1]))[0]
    host = HostModel(clf.apply, clf.params, clf.input_shape, batch_size=case["host_batch"])
    host.warmup()
    targets = np.asarray(host.numpy(imgs)).argmax(1)
    warm_t = int(np.asarray(host.numpy(warm_img[None])).argmax(1)[0])

    log(f"peers[{case['name']}]: M={M}, budget={budget}, {n} image(s), {case.get('rounds', 1)} round(s)")

    # ---- warm up / compile everything first (excluded from the timings; shapjax's compile is reported).
    methods = sorted({p[2] for p in PEERS})
    mkw = {m: dict(key=jax.random.key(seed), segments=seg, masker=maskers.constant(0.0), method=m, n_evals=budget)
           for m in methods}
    Bb = case.get("batched_B")
    xb = images[:Bb] if Bb else None
    tb_out = np.asarray(host.numpy(xb)).argmax(1)[:, None] if Bb else None
    ours: dict[str, Any] = {}
    for m in methods:
        comp = compile_explain(clf, imgs[:1], outputs=[int(targets[0])], **mkw[m])
        if Bb:
            compile_explain(clf, xb, outputs=tb_out, **mkw[m])
        ours[m] = {"compile_s": round(comp["total_compile_s"], 3), "batch_size": comp["batch_size"],
                   "times_s": [], "batched_s": [], "values": [None] * n}
    rows = {}
    for lib, name, method in PEERS:
        row = {"library": lib, "explainer": name, "shapjax_method": method}
        err = _import_error(lib)
        if err:
            row.update(status="skipped", reason=f"{lib} not installed ({err})")
            log(f"  {lib}.{name}: skipped ({err})")
        else:
            try:
                RUNNERS[(lib, name)](host, warm_img, seg, M, warm_t, min(budget, 128), seed)  # first-call costs
                row.update(status="ok", times_s=[], paired=[], model_images=[], corr_with_shapjax=[])
            except Exception as e:  # noqa: BLE001 - a broken peer is recorded, not fatal
                row.update(status="error", reason=f"{type(e).__name__}: {e}")
                log(f"  {lib}.{name}: error {type(e).__name__}: {e}")
        rows[(lib, name)] = row

    # ---- rounds: on every image, each shapjax method is timed right before each of its peers, and the
    # paired ratio uses those two back-to-back timings, so both see the same machine load.
    model_s = []
    for r in range(case.get("rounds", 1)):
        model_s.append(timed(lambda: host.numpy(np.repeat(imgs[:1], budget, 0)))[0])
        for i in range(n):
            t_i = int(targets[i])
            for m in methods:
                peers_m = [(k, row) for k, row in rows.items() if row["shapjax_method"] == m and row["status"] == "ok"]
                for k, row in peers_m or [(None, None)]:
                    t, e = timed(lambda: shapjax.explain(clf, imgs[i:i + 1], outputs=[t_i], **mkw[m]))
                    ours[m]["times_s"].append(t)
                    ours[m]["values"][i] = np.asarray(e.values)[0, :, 0]
                    ours[m]["evals_per_image"] = int(e.n_evals)
                    if row is None:
                        continue
                    host.n_images = 0
                    try:
                        tp, vals = timed(lambda: RUNNERS[k](host, imgs[i], seg, M, t_i, budget, seed + r))
                    except Exception as e:  # noqa: BLE001
                        row.update(status="error", reason=f"{type(e).__name__}: {e}")
                        continue
                    row["times_s"].append(tp)
                    row["paired"].append(tp / t)
                    row["model_images"].append(host.n_images)
                    if r == 0:
                        row["corr_with_shapjax"].append(_corr(vals, ours[m]["values"][i]))
        if Bb and r == 0:  # once: B images in one call per method
            for m in methods:
                tb, _ = timed(lambda: shapjax.explain(clf, xb, outputs=tb_out, **mkw[m]).values)
                ours[m]["batched_s"].append(tb / Bb)
    for m, v in ours.items():
        v["median_s"] = round(median(v["times_s"]), 4)
        v["times_s"] = [round(x, 4) for x in v["times_s"]]
        if Bb:
            v["batched_B"] = Bb
            v["batched_per_image_s"] = round(median(v.pop("batched_s")), 4)
        else:
            v.pop("batched_s")
        log(f"  shapjax {m}: {v['median_s']:.3f}s/expl (compile {v['compile_s']:.1f}s)"
            + (f", batched {v['batched_per_image_s']:.3f}s/expl" if Bb else ""))
    for row in rows.values():
        if row["status"] != "ok":
            continue
        ref = ours[row["shapjax_method"]]
        med = median(row["times_s"])
        row.update(median_s=round(med, 4), times_s=[round(x, 4) for x in row["times_s"]],
                   ratio_to_shapjax=round(median(row.pop("paired")), 2),
                   ratio_to_shapjax_batched=(round(med / ref["batched_per_image_s"], 2)
                                             if "batched_per_image_s" in ref else None))
        log(f"  {row['library']}.{row['explainer']}: {med:.3f}s/expl, {row['model_images'][0]} model images, "
            f"x{row['ratio_to_shapjax']} vs shapjax {row['shapjax_method']}, corr {row['corr_with_shapjax'][0]}")
    rows = list(rows.values())
    t_model = median(model_s)
    for v in ours.values():
        v.pop("values")
    return {"case": case["name"], "model": case["model"], "images": source, "segments": f"grid {G}x{G} (M={M})",
            "masker": "constant 0", "budget": budget, "explained_output": "logit of the predicted class",
            "host_batch_size": host.batch_size, "model_cost_s": round(t_model, 4), "n_images": n,
            "rounds": case.get("rounds", 1),
            "shapjax": ours, "peers": rows}


def run(*, quick: bool = False, out_dir=None) -> dict:
    """Run the peer comparison; writes ``peers_<backend>[_quick].json``."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # lime's per-sample progress bar
    cfg = QUICK if quick else FULL
    t0 = time.perf_counter()
    cases = [run_case(c) for c in cfg["cases"]]
    payload = {"mode": "quick" if quick else "full", "backend": backend(), "wall_s": round(time.perf_counter() - t0, 1),
               "notes": [
                   "median wall time per explanation, each library warmed up first; shapjax compile reported apart",
                   "ratio_to_shapjax = peer time / time of the matching shapjax method at B=1 (>1: shapjax faster)",
                   "ratio_to_shapjax_batched: against shapjax explaining batched_B images in one call, per image",
                   "model_images: images the peer actually sent through the model for one explanation",
                   "corr_with_shapjax: Pearson correlation of the peer's segment values with shapjax's "
                   "(shap PartitionExplainer: its pixel values summed per segment; a different game)",
                   "shap KernelExplainer runs with l1_reg=False (plain KernelSHAP, no feature selection)",
               ], "cases": cases}
    name = f"peers_{backend()}" + ("_quick" if quick else "")
    kw = {"out_dir": out_dir} if out_dir else {}
    path = write_result(name, payload, **kw)
    log(f"peers: wrote {path} in {payload['wall_s']} s")
    return payload
