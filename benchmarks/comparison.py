r"""SHAP against the traditional methods and the peer libraries: every method x every metric.

For each shipped model (``mnist-cnn``, ``planted-patch``) the same images are explained, for the
class the model predicts, by shapjax's Shapley estimators (``kernel``, ``partition``,
``antithetic``), LIME and occlusion on the same grid players, the gradient family (gradient,
gradient x input, integrated gradients, SmoothGrad, Grad-CAM) and the peer libraries on the same
model, players, absence and budget (shap Kernel / Permutation / Partition, captum KernelShap /
ShapleyValueSampling / Lime / IntegratedGradients, lime's LimeImageExplainer), and every
explanation is scored by every metric of :data:`shapjax.evaluation.compare.METRICS`
(:func:`shapjax.evaluation.compare.compare`, absence = a black pixel for methods and metrics alike).
Repeated for several seeds; 95 % confidence intervals come from a bootstrap over images (each
image's seeds kept together). Time per explanation is measured after a warm-up run.

Then the masker question (how much of a score is the mask shape): the rank correlation between the
method rankings by deletion (pixels painted black, the masker's own notion of absence) and by ROAD
(pixels imputed from their neighbours, which leaves no black trace), and the Shapley methods re-run
with a second masker (blur) scored by the same ROAD.

Writes ``benchmarks/results/comparison.json`` and ``comparison.md`` (``*_quick`` with ``--quick``)
and the figures ``docs/comparison_*.png``. The reading is ``docs/comparison.md``.

    python -m benchmarks.comparison [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from shapjax import data, models  # noqa: E402
from shapjax.evaluation import compare as C  # noqa: E402
from shapjax.evaluation.peers import peer_available  # noqa: E402
from shapjax.image import maskers, segment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"

OURS = ("kernel", "partition", "antithetic", "lime", "occlusion", "gradient", "gradxinput", "ig", "smoothgrad",
        "gradcam")
PEERS = ("shap:kernel", "shap:permutation", "shap:partition", "captum:kernelshap", "captum:shapleyvaluesampling",
         "captum:lime", "captum:ig", "lime:image")
CONFIGS = {
    "full": dict(models=("mnist-cnn", "planted-patch"), n_images=6, seeds=(0, 1), n_evals=512, methods=OURS + PEERS,
                 metrics="all", sens_samples=2, masker_methods=("kernel", "partition", "lime", "occlusion"),
                 figures=True),
    "quick": dict(models=("mnist-cnn",), n_images=2, seeds=(0,), n_evals=128,
                  methods=("kernel", "partition", "ig", "gradcam", "shap:kernel", "captum:ig", "lime:image"),
                  metrics="all", sens_samples=2, masker_methods=("kernel",), figures=False),
}
GRID = {"mnist-cnn": (7, 7), "planted-patch": (8, 8)}
GROUPS = {
    "Faithfulness": ("deletion", "insertion", "road_morf", "road_lerf", "region_perturbation", "irof", "faithfulness",
                     "infidelity", "monotonicity", "monotonicity_correlation", "completeness_gap"),
    "Robustness and randomisation": ("max_sensitivity", "avg_sensitivity", "random_logit", "model_randomisation"),
    "Complexity and localisation": ("sparseness", "complexity", "pointing_game", "mass"),
}
#: the metrics behind the overall faithfulness rank (removal and imputation both, one of each kind)
RANKED = ("deletion", "insertion", "road_morf", "road_lerf", "region_perturbation", "irof", "faithfulness",
          "infidelity", "monotonicity_correlation")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict:
    from benchmarks.common import machine_info

    return machine_info()


def _images(name: str, n: int):
    ds = data.samples("mnist" if name == "mnist-cnn" else "planted-patch")
    masks = None if ds.masks is None else np.asarray(ds.masks[:n])
    return np.asarray(ds.images[:n], np.float32), masks, np.asarray(ds.labels[:n])


def _ci(per_image: np.ndarray, rng, n_boot: int = 2000) -> tuple[float, float]:
    """95 % bootstrap CI of the mean over images (``per_image``: the mean over seeds of each image)."""
    v = per_image[np.isfinite(per_image)]
    if v.size < 2:
        return float("nan"), float("nan")
    idx = rng.integers(0, v.size, (n_boot, v.size))
    means = v[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise(rows: list, methods, metrics, seed: int = 0) -> dict:
    """``{method: {metric: {mean, lo, hi, n}}}`` with image-bootstrap CIs, plus rankings."""
    rng = np.random.default_rng(seed)
    out = {}
    for m in methods:
        out[m] = {}
        for k in list(metrics) + ["seconds", "model_evals"]:
            by_img = {}
            for r in rows:
                if r["method"] == m and r.get(k) is not None:
                    by_img.setdefault(r["image"], []).append(float(r[k]))
            per = np.array([np.mean(v) for v in by_img.values()]) if by_img else np.array([np.nan])
            lo, hi = _ci(per, rng)
            out[m][k] = {"mean": float(np.nanmean(per)), "lo": lo, "hi": hi, "n": int(sum(map(len, by_img.values())))}
    ranks = {}
    for k in metrics:
        better = C.METRICS[k].better
        if not better:
            continue
        order = sorted(methods, key=lambda m: out[m][k]["mean"], reverse=better == "higher")
        best = out[order[0]][k]
        tied = [m for m in order if (out[m][k]["hi"] >= best["lo"] if better == "higher" else out[m][k]["lo"] <= best["hi"])]
        ranks[k] = {"order": order, "tied_with_best": tied}
    mean_rank = {m: float(np.mean([ranks[k]["order"].index(m) + 1 for k in RANKED if k in ranks])) for m in methods}
    return {"stats": out, "rankings": ranks, "mean_faithfulness_rank": mean_rank}


def _spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def run_model(name: str, cfg: dict) -> dict:
    clf = models.pretrained(name)
    x, masks, labels = _images(name, cfg["n_images"])
    seg = segment.grid(*GRID[name])
    methods = [m for m in cfg["methods"] if C.METHODS[m].library == "shapjax" or peer_available(m)]
    skipped = [m for m in cfg["methods"] if m not in methods]
    rows, results, t0 = [], {}, time.perf_counter()
    opts = {"sensitivity": {"n_samples": cfg["sens_samples"]}}
    for s in cfg["seeds"]:
        log(f"{name}: seed {s}, {len(methods)} methods, {x.shape[0]} images, budget {cfg['n_evals']}")
        res = C.compare(clf, x, key=jax.random.key(s), methods=methods, segments=seg, masker=maskers.constant(0.0),
                        n_evals=cfg["n_evals"], metrics=cfg["metrics"], masks=masks, labels=labels, warmup=True,
                        metric_options=opts, progress=False)
        rows += [dict(r, seed=s) for r in res.to_dict()["rows"]]
        results[s] = res
        log(f"{name}: seed {s} done in {time.perf_counter() - t0:.0f} s")
    metrics = results[cfg["seeds"][0]].metrics
    summ = summarise(rows, methods, metrics)
    st = summ["stats"]
    confound = {"spearman_deletion_vs_road_morf": _spearman([st[m]["deletion"]["mean"] for m in methods],
                                                            [st[m]["road_morf"]["mean"] for m in methods]),
                "spearman_insertion_vs_road_lerf": _spearman([st[m]["insertion"]["mean"] for m in methods],
                                                             [st[m]["road_lerf"]["mean"] for m in methods]),
                "rank_deletion": summ["rankings"]["deletion"]["order"],
                "rank_road_morf": summ["rankings"]["road_morf"]["order"]}
    # the masker: the same Shapley methods with a second notion of absence, scored by the masker-free ROAD
    mk = {}
    for label, masker in (("constant 0", maskers.constant(0.0)), ("blur", maskers.blur(3.0))):
        r = C.compare(clf, x, key=jax.random.key(cfg["seeds"][0]), methods=cfg["masker_methods"], segments=seg,
                      masker=masker, n_evals=cfg["n_evals"], metrics="deletion,road_morf,road_lerf,insertion",
                      masks=masks, progress=False)
        mk[label] = {m: {k: r.summary[m][k]["mean"] for k in r.metrics} for m in r.methods}
    log(f"{name}: masker runs done")
    fig_dir = DOCS
    fig_dir.mkdir(exist_ok=True)
    figs = {}
    if cfg["figures"]:
        from shapjax.plot import save_figure

        suffix = ""
        path = fig_dir / f"comparison_maps_{name}{suffix}.png"
        save_figure(results[cfg["seeds"][0]].figure(max_images=3), str(path), dpi=80)
        figs["maps"] = str(path.relative_to(ROOT))
        figs["metrics"] = plot_metrics(name, summ, methods, metrics, fig_dir / f"comparison_metrics_{name}{suffix}.png")
    return {"model": name, "images": int(x.shape[0]), "seeds": list(cfg["seeds"]), "segments": seg.describe(),
            "masker": "constant(0)", "n_evals": cfg["n_evals"], "methods": methods, "skipped_peers": skipped,
            "metrics": list(metrics), "families": {m: C.METHODS[m].family for m in methods},
            "libraries": {m: C.METHODS[m].library for m in methods}, "summary": summ, "mask_confound": confound,
            "maskers": mk, "rows": rows, "figures": figs, "wall_s": round(time.perf_counter() - t0, 1)}


def plot_metrics(name, summ, methods, metrics, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in metrics if C.METRICS[k].better] + ["seconds"]
    cols = 4
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 0.22 * len(methods) * rows + 1.2 * rows), squeeze=False)
    colour = {"shapjax": "tab:blue", "shap": "tab:red", "captum": "tab:green", "lime": "tab:purple"}
    st = summ["stats"]
    for ax, k in zip(axes.flat, keys):
        y = np.arange(len(methods))
        mean = np.array([st[m][k]["mean"] for m in methods])
        lo = np.array([st[m][k]["lo"] for m in methods])
        hi = np.array([st[m][k]["hi"] for m in methods])
        err = np.stack([np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)])
        for i, m in enumerate(methods):
            ax.errorbar(mean[i], y[i], xerr=err[:, i:i + 1], fmt="o", ms=3, color=colour[C.METHODS[m].library])
        ax.set_yticks(y, methods, fontsize=6)
        ax.invert_yaxis()
        title = C.column_title(k)
        ax.set_title(title if len(title) < 48 else title.replace(", ", ",\n", 1), fontsize=7)
        ax.tick_params(axis="x", labelsize=6)
        if k == "seconds":
            ax.set_xscale("log")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"{name}: mean and 95% CI over images (bootstrap); blue shapjax, red shap, green captum, purple lime",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(Path(path).relative_to(ROOT))


def _fmt(s: dict) -> str:
    if not np.isfinite(s["mean"]):
        return "–"
    ci = f" [{s['lo']:.3g}, {s['hi']:.3g}]" if np.isfinite(s["lo"]) else ""
    return f"{s['mean']:.3g}{ci}"


def write_md(payload: dict, path: Path) -> None:
    m = payload["machine"]
    lines = [f"# Comparison study: every method x every metric ({payload['mode']})", "",
             f"Generated by `python -m benchmarks.comparison{' --quick' if payload['mode'] == 'quick' else ''}` in "
             f"{payload['wall_s']:.0f} s on {m['cpu_model']} ({m['cpu_cores_usable']} cores), JAX "
             f"{m['versions'].get('jax')} `{m['jax_backend']}`, {m['date'][:10]}. Reading: "
             "[`docs/comparison.md`](../../docs/comparison.md).", "",
             "Each cell: mean over images and seeds, and its 95% bootstrap confidence interval over images. "
             "Column names give the direction (higher / lower is better). Bold: the best mean; * : the CI "
             "overlaps the best one's (not separable from the best on these images).", ""]
    for case in payload["cases"]:
        st, rk = case["summary"]["stats"], case["summary"]["rankings"]
        meths = case["methods"]
        lines += [f"## {case['model']}", "",
                  f"{case['images']} images x seeds {case['seeds']}, players {case['segments']}, absence "
                  f"{case['masker']} (methods and metrics), budget {case['n_evals']} model evaluations per "
                  f"explanation. Study time {case['wall_s']:.0f} s."
                  + (f" Skipped (not installed): {', '.join(case['skipped_peers'])}." if case["skipped_peers"] else ""),
                  ""]
        for group, keys in list(GROUPS.items()) + [("Time", ("seconds", "model_evals"))]:
            keys = [k for k in keys if k in st[meths[0]]]
            if not keys:
                continue
            lines += [f"### {group}", "", "| method | library | " + " | ".join(C.column_title(k) for k in keys) + " |",
                      "|---|---|" + "---|" * len(keys)]
            for me in meths:
                cells = []
                for k in keys:
                    c = _fmt(st[me][k])
                    if k in rk:
                        c = f"**{c}**" if rk[k]["order"][0] == me else (c + " *" if me in rk[k]["tied_with_best"] else c)
                    cells.append(c)
                lines.append(f"| `{me}` | {C.METHODS[me].library} | " + " | ".join(cells) + " |")
            lines.append("")
        mr = case["summary"]["mean_faithfulness_rank"]
        lines += ["### Rankings", "", "Mean rank over the faithfulness metrics " + ", ".join(f"`{k}`" for k in RANKED)
                  + " (1 = best):", "", "| rank | method | library | family | mean rank |", "|---|---|---|---|---|"]
        for i, me in enumerate(sorted(meths, key=lambda k: mr[k]), 1):
            lines.append(f"| {i} | `{me}` | {C.METHODS[me].library} | {C.METHODS[me].family} | {mr[me]:.1f} |")
        cf = case["mask_confound"]
        lines += ["", "### How much is the mask shape", "",
                  f"Spearman correlation of the method rankings: deletion (to black) vs ROAD MoRF (imputed) "
                  f"**{cf['spearman_deletion_vs_road_morf']:.2f}**, insertion vs ROAD LeRF "
                  f"**{cf['spearman_insertion_vs_road_lerf']:.2f}**.", "",
                  "| rank | by deletion (lower is better) | by ROAD MoRF (lower is better) |", "|---|---|---|"]
        for i, (a, b) in enumerate(zip(cf["rank_deletion"], cf["rank_road_morf"]), 1):
            lines.append(f"| {i} | `{a}` | `{b}` |")
        lines += ["", "The same methods explained with two maskers (the metric keeps each masker's own absence for "
                  "deletion; ROAD is the same for both):", "",
                  "| method | masker | " + " | ".join(C.column_title(k) for k in ("deletion", "road_morf", "road_lerf",
                                                                                     "insertion")) + " |",
                  "|---|---|---|---|---|---|"]
        for label, d in case["maskers"].items():
            for me, v in d.items():
                lines.append(f"| `{me}` | {label} | " + " | ".join(f"{v[k]:.3g}" for k in ("deletion", "road_morf",
                                                                                          "road_lerf", "insertion"))
                             + " |")
        for kind, p in case["figures"].items():
            lines += ["", f"![{case['model']} {kind}](../../{p})"]
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.comparison", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 images, 1 seed, 7 methods, mnist-cnn only (about 2 minutes)")
    ap.add_argument("--models", nargs="*", default=None, help="restrict to these models")
    a = ap.parse_args(argv)
    mode = "quick" if a.quick else "full"
    cfg = dict(CONFIGS[mode])
    if a.models:
        cfg["models"] = tuple(a.models)
    t0 = time.perf_counter()
    cases = []
    name = "comparison" + ("_quick" if a.quick else "")
    for mdl in cfg["models"]:
        cases.append(run_model(mdl, cfg))
        payload = {"benchmark": name, "mode": mode, "machine": machine(), "wall_s": time.perf_counter() - t0,
                   "config": {k: v for k, v in cfg.items()}, "cases": cases}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1, default=float, allow_nan=True) + "\n")
        write_md(payload, RESULTS / f"{name}.md")  # after every model: a killed run keeps what it finished
    log(f"comparison: wrote {RESULTS / (name + '.json')} and .md in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
