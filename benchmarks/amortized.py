"""Amortized explanations (FastSHAP) against KernelSHAP / leverage SHAP on held-out images.

    python benchmarks/amortized.py                # the committed run
    python benchmarks/amortized.py --quick        # a smoke run (a few images)

For the shipped explainers of ``mnist-cnn`` (``constant(0)`` masker, all 10 classes), on MNIST
t10k images 8000+ (never seen by the classifier nor by the explainers):

- accuracy: relative L2 error ``||phi - phi_ref|| / ||phi_ref||`` over the ``[M, 10]`` values of each
  image (mean and median over images); the reference is the exact Shapley value (grid 4x4, 2^16
  coalitions) or a converged KernelSHAP (grid 7x7, two independent runs of REF_EVALS each averaged;
  the table gives the two runs' error against each other, the reference's own noise); side by side
  with ``kernel`` and ``leverage`` at 128, 512 and 2,048 evaluations per image;
- efficiency gap ``|sum_i phi_i - (v(all) - v(empty))| / |v(all) - v(empty)|``;
- insertion / deletion AUC (``shapjax.evaluation.metrics``) of the top-1 class;
- throughput: explanations per second of the explainer and of ``explain(method="kernel",
  n_evals=2048)`` on the same images in the same run (warm, compile excluded);
- training cost (from the shipped files' metadata) and the break-even number of images.

Writes ``benchmarks/results/amortized.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS_DIR, log, machine_info, write_result  # noqa: E402
from shapjax import amortized, explain, maskers, models, segment  # noqa: E402
from shapjax import data as data_lib  # noqa: E402
from shapjax.evaluation.metrics import deletion, insertion  # noqa: E402

MNIST_DIR = Path("/work/shared/data/mnist")
BUDGETS = (128, 512, 2048)
METHODS = ("kernel", "leverage")


def heldout_images(n: int) -> np.ndarray:
    ds = data_lib.load(f"idx:{MNIST_DIR / 't10k-images-idx3-ubyte.gz'},{MNIST_DIR / 't10k-labels-idx1-ubyte.gz'}")
    return ds.images[8000:8000 + n]


def rel_err(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm((a - b).reshape(len(a), -1), axis=1) / np.linalg.norm(b.reshape(len(b), -1), axis=1)


def eff_gap(exp) -> np.ndarray:
    d = np.asarray(exp.full_values - exp.base_values, np.float64)
    return np.abs(np.asarray(exp.values, np.float64).sum(1) - d) / np.maximum(np.abs(d), 1e-9)


def stats(x) -> dict:
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "median": float(np.median(x)), "max": float(x.max())}


def chunks(fn, x, bs):
    return [fn(x[i:i + bs]) for i in range(0, len(x), bs)]


def cat(exps, field="values"):
    return np.concatenate([np.asarray(getattr(e, field)) for e in exps])


def accuracy(clf, x, grid, ref_evals, seed, bs):
    seg, mask = segment.grid(*grid), maskers.constant(0.0)
    name = f"mnist-cnn-grid{grid[0]}x{grid[1]}-constant0"
    rows = {}
    t0 = time.perf_counter()
    if ref_evals is None:
        ref = chunks(lambda b: explain(clf, b, key=jax.random.key(seed), segments=seg, masker=mask, method="exact"),
                     x, bs)
        ref_vals, ref_desc, ref_noise = cat(ref), "exact Shapley values (2^16 coalitions)", None
    else:
        r1 = chunks(lambda b: explain(clf, b, key=jax.random.key(seed + 101), segments=seg, masker=mask,
                                      method="kernel", n_evals=ref_evals), x, bs)
        r2 = chunks(lambda b: explain(clf, b, key=jax.random.key(seed + 202), segments=seg, masker=mask,
                                      method="kernel", n_evals=ref_evals), x, bs)
        a, b = cat(r1), cat(r2)
        ref_vals = 0.5 * (a + b)
        ref_noise = stats(rel_err(a, b) / np.sqrt(2) / 2)  # one run's error ~ d/sqrt(2); the mean's ~ half of it
        ref_desc = f"KernelSHAP, mean of 2 runs of {ref_evals:,} evaluations"
    log(f"grid {grid}: reference ({ref_desc}) in {time.perf_counter() - t0:.0f} s")
    e = _wait_for(name, clf)(x)
    rows["amortized"] = {"n_evals": 2, "rel_l2": stats(rel_err(e.values, ref_vals)), "efficiency_gap": stats(eff_gap(e))}
    for m in METHODS:
        for n in BUDGETS:
            es = chunks(lambda b: explain(clf, b, key=jax.random.key(seed + n), segments=seg, masker=mask, method=m,
                                          n_evals=n), x, bs)
            vals = cat(es)
            gaps = np.concatenate([eff_gap(q) for q in es])
            rows[f"{m}@{n}"] = {"n_evals": n, "rel_l2": stats(rel_err(vals, ref_vals)), "efficiency_gap": stats(gaps)}
    log(f"grid {grid}: " + ", ".join(f"{k} {v['rel_l2']['mean']:.3f}" for k, v in rows.items()))
    return {"grid": f"{grid[0]}x{grid[1]}", "n_images": len(x), "reference": ref_desc, "reference_noise": ref_noise,
            "rows": rows, "explainer": name}


def _wait_for(name, clf):
    """The shipped explainer ``name`` (waits while benchmarks/train_amortized.py is still writing it)."""
    for _ in range(120):
        if name in [e["name"] for e in amortized.available()]:
            try:
                return amortized.pretrained(name, model=clf)
            except ValueError:
                pass
        time.sleep(15)
    return amortized.pretrained(name, model=clf)


def faithfulness(clf, x, grid, seed, bs):
    seg, mask = segment.grid(*grid), maskers.constant(0.0)
    ex = amortized.pretrained(f"mnist-cnn-grid{grid[0]}x{grid[1]}-constant0", model=clf)
    out = {}
    cands = {"amortized": lambda b: ex(b, outputs="top-1"),
             "kernel@512": lambda b: explain(clf, b, key=jax.random.key(seed), segments=seg, masker=mask,
                                             method="kernel", n_evals=512, outputs="top-1"),
             "kernel@2048": lambda b: explain(clf, b, key=jax.random.key(seed), segments=seg, masker=mask,
                                              method="kernel", n_evals=2048, outputs="top-1")}
    for name, fn in cands.items():
        ins, dele = [], []
        for i in range(0, len(x), bs):
            e = fn(x[i:i + bs])
            ins.append(np.asarray(insertion(clf, x[i:i + bs], e).auc))
            dele.append(np.asarray(deletion(clf, x[i:i + bs], e).auc))
        out[name] = {"insertion_auc": float(np.concatenate(ins).mean()),
                     "deletion_auc": float(np.concatenate(dele).mean())}
    log(f"faithfulness grid {grid}: {out}")
    return {"grid": f"{grid[0]}x{grid[1]}", "n_images": len(x), "rows": out}


def throughput(clf, x_amort, x_kernel, grid, seed):
    seg, mask = segment.grid(*grid), maskers.constant(0.0)
    ex = amortized.pretrained(f"mnist-cnn-grid{grid[0]}x{grid[1]}-constant0", model=clf)
    f = jax.jit(lambda e, b: e(b).values)
    xa = jax.numpy.asarray(x_amort)
    f(ex, xa).block_until_ready()
    ta = min(_time(lambda: f(ex, xa)) for _ in range(3))
    kw = dict(key=jax.random.key(seed), segments=seg, masker=mask, method="kernel", n_evals=2048)
    explain(clf, x_kernel, **kw).values.block_until_ready()
    tk = _time(lambda: explain(clf, x_kernel, **kw).values)
    ra, rk = len(x_amort) / ta, len(x_kernel) / tk
    log(f"throughput grid {grid}: amortized {ra:,.0f}/s, kernel@2048 {rk:,.2f}/s, ratio {ra / rk:,.0f}x")
    return {"grid": f"{grid[0]}x{grid[1]}", "amortized_images": len(x_amort), "kernel_images": len(x_kernel),
            "amortized_per_second": ra, "kernel2048_per_second": rk, "speedup": ra / rk,
            "amortized_seconds": ta, "kernel2048_seconds": tk}


def planted(seed, n=16, ref_evals=8192):
    """The shipped planted-patch explainer (grid 8x8, blur(3)) on held-out planted images: error against a
    KernelSHAP reference and the share of positive attribution inside the planted patch (top-1 class)."""
    from shapjax.cli.jobs import positive_fraction_in_mask

    clf = models.pretrained("planted-patch")
    ds = data_lib.planted_patch(n, key=jax.random.fold_in(jax.random.key(0), 1), size=32, n_classes=4, patch_size=8,
                                channels=3)
    seg, mask = segment.grid(8, 8), maskers.blur(3.0)
    ex = amortized.pretrained("planted-patch-grid8x8-blur3", model=clf)
    ref = explain(clf, ds.images, key=jax.random.key(seed + 7), segments=seg, masker=mask, method="kernel",
                  n_evals=ref_evals, outputs="top-1")
    rows = {}
    cands = {"amortized": (2, lambda: ex(ds.images, outputs="top-1"))}
    for nn in (256, 512, 2048):  # M = 64 players: KernelSHAP needs more than 129 evaluations
        cands[f"kernel@{nn}"] = (nn, lambda nn=nn: explain(clf, ds.images, key=jax.random.key(seed + nn), segments=seg,
                                                           masker=mask, method="kernel", n_evals=nn, outputs="top-1"))
    for name, (ne, fn) in cands.items():
        e = fn()
        frac = positive_fraction_in_mask(np.asarray(e.values), np.asarray(e.segments), ds.masks)
        rows[name] = {"n_evals": ne, "rel_l2": stats(rel_err(e.values, ref.values)),
                      "positive_fraction_in_patch": float(np.mean(frac))}
    log("planted: " + ", ".join(f"{k} {v['rel_l2']['mean']:.3f} / {v['positive_fraction_in_patch']:.2f}"
                                  for k, v in rows.items()))
    return {"n_images": n, "reference": f"KernelSHAP at {ref_evals:,} evaluations (top-1 class)",
            "patch_area_fraction": float(np.mean(ds.masks)), "rows": rows}


def _time(fn) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def training_cost(grid, thr, acc):
    name = f"mnist-cnn-grid{grid[0]}x{grid[1]}-constant0"
    meta = amortized.read_metadata(ROOT / "shapjax" / "amortized" / "weights" / name)
    secs, evals = float(meta["wall_seconds"]), int(meta["training_model_evals"])
    per_k = 1.0 / thr["kernel2048_per_second"]
    per_a = 1.0 / thr["amortized_per_second"]
    # KernelSHAP at n evaluations costs about n/2048 of the measured kernel@2048 time per image
    be = {}
    for n in BUDGETS:
        cost = per_k * n / 2048
        be[f"kernel@{n}"] = {"seconds_per_image": cost, "break_even_images": secs / max(cost - per_a, 1e-12),
                             "break_even_images_by_evals": evals / (n - 2)}
    return {"explainer": name, "training_seconds": secs, "training_model_evals": evals,
            "epochs": len(meta.get("history", [])), "break_even": be}


def markdown(res) -> str:
    m = res["machine"]
    L = ["# Amortized explanations (FastSHAP) vs KernelSHAP / leverage SHAP",
         "",
         f"Machine: {m['cpu_model']}, {m['cpu_cores_usable']} cores, JAX {m['versions']['jax']} "
         f"({m['jax_backend']}), {m['date']}, load average at the end {m.get('load_average_end')}. Model `mnist-cnn`, masker "
         "`constant(0)`, all 10 classes, held-out MNIST t10k images 8000+ (seen by neither the classifier nor the "
         "explainers). `python benchmarks/amortized.py`.", ""]
    for a in res["accuracy"]:
        noise = "" if a["reference_noise"] is None else \
            f" (its own estimated error: {a['reference_noise']['mean']:.3f})"
        L += [f"## Grid {a['grid']}: relative L2 error against {a['reference']}{noise}, {a['n_images']} images", "",
              "| method | evaluations / image | rel. L2 error (mean) | (median) | efficiency gap (mean) |",
              "|---|---:|---:|---:|---:|"]
        for k, v in a["rows"].items():
            L.append(f"| {k} | {v['n_evals']:,} | {v['rel_l2']['mean']:.3f} | {v['rel_l2']['median']:.3f} | "
                     f"{v['efficiency_gap']['mean']:.1e} |")
        L.append("")
    for f in res["faithfulness"]:
        L += [f"## Grid {f['grid']}: insertion / deletion AUC of the top-1 class, {f['n_images']} images", "",
              "| method | insertion AUC (higher is better) | deletion AUC (lower is better) |", "|---|---:|---:|"]
        for k, v in f["rows"].items():
            L.append(f"| {k} | {v['insertion_auc']:.3f} | {v['deletion_auc']:.3f} |")
        L.append("")
    tm = res.get("throughput_machine")
    rerun = "" if tm is None else (f" Rerun with `--only-throughput` on {tm['date']}, load average "
                                   f"{[round(v, 1) for v in tm['load_average']]} (a busy machine: the ratios, not the "
                                   "absolute rates, are the figures to quote).")
    L += ["## Throughput (same images, same run, warm)", "",
          "512 images through the jitted explainer (the explainer network, the model on the 512 images, the "
          "model once on the all-black image), against `explain(method=\"kernel\", n_evals=2048)` on 8 of them; "
          "best of 3 / one warm call." + rerun, "",
          "| grid | amortized explanations / s | kernel@2048 explanations / s | speedup | goal >= 1,000x |",
          "|---|---:|---:|---:|---|"]
    for t in res["throughput"]:
        ok = "met" if t["speedup"] >= 1000 else f"missed by {1000 / t['speedup']:.2f}x"
        L.append(f"| {t['grid']} | {t['amortized_per_second']:,.0f} | {t['kernel2048_per_second']:,.2f} | "
                 f"{t['speedup']:,.0f}x | {ok} |")
    pl = res.get("planted")
    if pl:
        L += ["", f"## planted-patch (grid 8x8, blur(3)), {pl['n_images']} held-out images, top-1 class", "",
              f"Error against {pl['reference']}; the planted patch covers {100 * pl['patch_area_fraction']:.0f}% of "
              "the image.", "", "| method | evaluations / image | rel. L2 error (mean) | positive attribution inside "
              "the patch |", "|---|---:|---:|---:|"]
        for k, v in pl["rows"].items():
            L.append(f"| {k} | {v['n_evals']:,} | {v['rel_l2']['mean']:.3f} | {100 * v['positive_fraction_in_patch']:.0f}% |")
    L += ["", "## Training cost and break-even", "",
          "| explainer | training wall time | model evaluations | break-even images vs kernel@128 / @512 / @2048 "
          "(wall time) |", "|---|---:|---:|---:|"]
    for c in res["training"]:
        be = c["break_even"]
        L.append(f"| {c['explainer']} | {c['training_seconds']:.0f} s | {c['training_model_evals']:,} | "
                 + " / ".join(f"{be[f'kernel@{n}']['break_even_images']:,.0f}" for n in BUDGETS) + " |")
    L += ["", "Break-even: the number of images after which training once and explaining with the explainer "
          "costs less wall time than KernelSHAP at that budget (kernel time per image scaled from the measured "
          "kernel@2048 rate)."]
    for a in res["accuracy"]:
        am = a["rows"]["amortized"]["rel_l2"]["mean"]
        k512 = a["rows"]["kernel@512"]["rel_l2"]["mean"]
        verdict = "met" if am <= k512 else f"missed: {am:.3f} vs {k512:.3f} ({am / k512:.2f}x the error)"
        L.append(f"- grid {a['grid']}: amortized error no worse than kernel@512: {verdict}")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n-exact", type=int, default=8, help="images for the 4x4 exact reference")
    p.add_argument("--n-ref", type=int, default=8, help="images for the 7x7 KernelSHAP reference")
    p.add_argument("--ref-evals", type=int, default=16384)
    p.add_argument("--n-faith", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only-planted", action="store_true", help="add the planted-patch check to the JSON")
    p.add_argument("--only-throughput", action="store_true", help="rerun throughput + break-even into the JSON")
    p.add_argument("--markdown-only", action="store_true", help="re-render the .md from the committed .json")
    args = p.parse_args(argv)
    if args.only_planted:
        res = json.loads((RESULTS_DIR / "amortized.json").read_text())
        res["planted"] = planted(args.seed)
        res["planted_machine"] = machine_info()
        (RESULTS_DIR / "amortized.json").write_text(json.dumps(res, indent=1) + "\n")
        args.markdown_only = True
    if args.only_throughput:  # rerun the throughput and break-even parts into the committed JSON
        clf = models.pretrained("mnist-cnn")
        x = heldout_images(512)
        res = json.loads((RESULTS_DIR / "amortized.json").read_text())
        res["throughput"], res["training"] = [], []
        for g in ((4, 4), (7, 7)):
            res["throughput"].append(throughput(clf, x[:512], x[:8], g, args.seed))
            res["training"].append(training_cost(g, res["throughput"][-1], res["accuracy"]))
        res["throughput_machine"] = machine_info()
        (RESULTS_DIR / "amortized.json").write_text(json.dumps(res, indent=1) + "\n")
        args.markdown_only = True
    if args.markdown_only:
        name = "amortized_quick" if args.quick else "amortized"
        md = markdown(json.loads((RESULTS_DIR / f"{name}.json").read_text()))
        (RESULTS_DIR / f"{name}.md").write_text(md)
        print(md)
        return 0
    if args.quick:
        args.n_exact, args.n_ref, args.ref_evals, args.n_faith = 2, 2, 2048, 8
    clf = models.pretrained("mnist-cnn")
    x = heldout_images(max(512, args.n_faith))
    res = {"settings": vars(args), "accuracy": [], "faithfulness": [], "throughput": [], "training": []}
    res["accuracy"].append(accuracy(clf, x[:args.n_exact], (4, 4), None, args.seed, 2))
    res["accuracy"].append(accuracy(clf, x[:args.n_ref], (7, 7), args.ref_evals, args.seed, 5))
    for g in ((4, 4), (7, 7)):
        res["faithfulness"].append(faithfulness(clf, x[:args.n_faith], g, args.seed, 32))
        res["throughput"].append(throughput(clf, x[:512], x[:8 if not args.quick else 4], g, args.seed))
        res["training"].append(training_cost(g, res["throughput"][-1], res["accuracy"]))
    res["planted"] = planted(args.seed, n=4 if args.quick else 16, ref_evals=2048 if args.quick else 8192)
    name = "amortized_quick" if args.quick else "amortized"
    path = write_result(name, res)
    res = json.loads(path.read_text())
    md = markdown(res)
    (RESULTS_DIR / f"{name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
