"""Write ``results/SUMMARY.md`` from the result JSON files (no number is typed by hand)."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import RESULTS_DIR


def why_slower(case: dict, p: dict, batched: bool = False) -> str:
    """One data-driven sentence on why a peer matched or beat shapjax in this case."""
    ours = case["shapjax"][p["shapjax_method"]]
    reasons = []
    if batched and p["shapjax_method"] == "partition":
        reasons.append("shapjax's partition path is adaptive: each image is its own game, refined level by level "
                       "(no design shared across the batch), so explaining B images together adds per-level "
                       "bookkeeping (top-k over the open tasks, their masks) and short model calls instead of "
                       "saving work; at B=1 it is faster than the peer")
    if p["model_images"][0] < ours["evals_per_image"]:
        reasons.append(f"it evaluated fewer images ({p['model_images'][0]} against {ours['evals_per_image']})")
    share = case["model_cost_s"] / max(p["median_s"], 1e-9)
    if share > 0.6 and not batched:
        reasons.append(f"the model evaluations alone (timed on their own) take {case['model_cost_s']:.3g} s per "
                       f"explanation against the peer's {p['median_s']:.3g} s, and every library pays the same model "
                       "cost, so there is little overhead left to remove; the rest is within this shared machine's "
                       "timing noise")
    elif not reasons:
        reasons.append("on a CPU a peer that composes masked images in vectorised NumPy and feeds the same jitted "
                       "model in large batches loses little to shapjax's single compiled program")
    return "Why: " + "; ".join(reasons) + "."


def load_results(out_dir=RESULTS_DIR, *, quick: bool = False) -> dict[str, list[dict]]:
    """``{"throughput": [...], "peers": [...], "accuracy": [...]}`` from ``out_dir`` (quick or full files)."""
    out: dict[str, list[dict]] = {"throughput": [], "peers": [], "accuracy": []}
    for path in sorted(Path(out_dir).glob("*.json")):
        is_quick = path.stem.endswith("_quick")
        if is_quick != quick:
            continue
        kind = path.stem.split("_")[0]
        if kind in out:
            rec = json.loads(path.read_text())
            rec["_file"] = path.name
            out[kind].append(rec)
    return out


def _fmt(v, nd=3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{nd}g}"
    return str(v)


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return out


def machine_lines(rec: dict) -> list[str]:
    m = rec["machine"]
    v = m["versions"]
    libs = ", ".join(f"{k} {v[k]}" for k in ("jax", "jaxlib", "flax", "numpy", "shap", "lime", "captum", "torch")
                     if v.get(k))
    return [f"- `{rec['_file']}`: {m['cpu_model']}, {m['cpu_cores_usable']} cores usable, {m['ram_gib']} GiB RAM, "
            f"JAX backend `{m['jax_backend']}` ({m['device_kind']}); {libs}; {m['date']}, "
            f"load average at the end {', '.join(f'{x:.1f}' for x in m['load_average_end'] or [])}; "
            f"wall time {rec.get('wall_s')} s ({rec.get('mode')} mode)."]


def throughput_section(rec: dict) -> list[str]:
    L = [f"## Throughput against the model's ceiling ({rec['backend']})", "",
         "`shapjax.explain(method=\"kernel\", outputs=\"top-1\")` with a grid of segments and a constant masker, "
         "steady state (compiled ahead of time; compile time in its own column). *Ceiling* = the same number of "
         "images through the plain `jax.jit(clf.apply)` forward at its best batch size, measured right after each "
         "explain repeat; *ratio* = explain time / ceiling time (median over repeats; goal: <= 1.1 for "
         "ResNet-sized models).", ""]
    rows = []
    for m in rec["models"]:
        for r in m["budgets"]:
            rows.append([m["model"], r["budget"], r["B"], r["explain_s_median"], r["explanations_per_s"],
                         r["evals_per_s"], r["ceiling_s_median"], f"**{r['ratio_median']:.2f}**",
                         r["compile_s"], r["explain_batch_size"], m["forward"]["best_batch_size"],
                         r["peak_rss_delta_mib"], r["repeats"]])
    L += _table(["model", "budget", "B", "explain s", "expl/s", "evals/s", "ceiling s", "ratio", "compile s",
                 "explain chunk", "ceiling batch", "peak RSS +MiB", "repeats"], rows)
    L.append("")
    scal = [(m["model"], r) for m in rec["models"] for r in m.get("scaling", [])]
    if scal:
        L += ["### Scaling with the batch of images explained together", ""]
        L += _table(["model", "budget", "B", "explain s", "expl/s", "evals/s", "ratio", "compile s", "peak RSS +MiB"],
                    [[name, r["budget"], r["B"], r["explain_s_median"], r["explanations_per_s"], r["evals_per_s"],
                      r["ratio_median"], r["compile_s"], r["peak_rss_delta_mib"]] for name, r in scal])
        L.append("")
    sweep = [(m["model"], r) for m in rec["models"] for r in m.get("sweep", [])]
    if sweep:
        L += ["### explain's chunk size (`batch_size=`) against the default", ""]
        L += _table(["model", "budget", "batch_size", "chunk used", "explain s", "evals/s", "ratio", "peak RSS +MiB"],
                    [[name, r["budget"], r["batch_size_arg"], r["explain_batch_size"], r["explain_s_median"],
                      r["evals_per_s"], r["ratio_median"], r["peak_rss_delta_mib"]] for name, r in sweep])
        L.append("")
    L += ["Forward-pass rates of the ceiling sweep (images/s by batch size): " + "; ".join(
        f"{m['model']}: " + ", ".join(f"{k}: {v:g}" for k, v in m["forward"]["rates_img_per_s"].items())
        for m in rec["models"]) + ".", ""]
    L += ["Models: " + "; ".join(f"{m['model']} = {m['model_note']}" for m in rec["models"]) + ".", ""]
    return L


def peers_section(rec: dict) -> list[str]:
    L = [f"## Side by side with shap, lime and captum ({rec['backend']})", "",
         "Same classifier through the same host callable (our jitted forward), same grid segments, absent segments "
         "set to 0, same budget of model evaluations, the predicted class's logit explained; each library warmed up "
         "first. *ratio* = peer time / shapjax time for the matching method (> 1: shapjax is faster); "
         "*batched* compares with shapjax explaining a batch of images in one call (time per image).", ""]
    for case in rec["cases"]:
        ours = case["shapjax"]
        L += [f"### {case['case']}: {case['segments']}, budget {case['budget']}, {case['n_images']} image(s) "
              f"({case['images']})", "",
              f"Model cost alone for {case['budget']} images through the host callable: "
              f"{case['model_cost_s']:.3g} s.", ""]
        Bb = next((v.get("batched_B") for v in ours.values() if v.get("batched_B")), None)
        L += _table(["shapjax method", "s / explanation (B=1)"] + ([f"s / explanation (B={Bb} in one call)"] if Bb else [])
                    + ["compile s", "model images", "chunk"],
                    [[f"`{m}`", v["median_s"]] + ([v.get("batched_per_image_s")] if Bb else [])
                     + [v["compile_s"], v["evals_per_image"], v["batch_size"]] for m, v in sorted(ours.items())])
        L.append("")
        rows, slower = [], []
        for p in case["peers"]:
            label = f"{p['library']} {p['explainer']}"
            if p["status"] != "ok":
                rows.append([label, f"`{p['shapjax_method']}`", f"{p['status']}: {p['reason']}"] + ["-"] * 5)
                continue
            ratio, rb = p["ratio_to_shapjax"], p.get("ratio_to_shapjax_batched")
            r_txt = f"**{ratio:.2f}x**" + (" (peer faster)" if ratio < 1 else "")
            if ratio < 1:
                slower.append((label, p["shapjax_method"], f"{ratio:.2f}x", p, False))
            if rb is not None and rb < 1:
                slower.append((label, p["shapjax_method"], f"{rb:.2f}x, shapjax batched B={Bb}", p, True))
            corr = [c for c in p["corr_with_shapjax"] if c is not None]
            rows.append([label, f"`{p['shapjax_method']}`", p["median_s"], ours[p["shapjax_method"]]["median_s"], r_txt,
                         (f"{rb:.2f}x" + (" (peer faster)" if rb < 1 else "") if rb is not None else "-"),
                         p["model_images"][0], (f"{sum(corr) / len(corr):.3f}" if corr else "-")])
        L += _table(["peer", "shapjax method", "peer s / explanation", "shapjax s", "ratio", "ratio vs batched",
                     "model images", "corr. with shapjax"], rows)
        L.append("")
        for label, m, ratio, p, batched in slower:
            L.append(f"Where shapjax is not faster: {label} against `{m}` ({ratio}). " + why_slower(case, p, batched))
        if slower:
            L.append("")
        part = ours.get("partition")
        pp = [p for p in case["peers"] if p["shapjax_method"] == "partition" and p["status"] == "ok"]
        if part and pp and part["evals_per_image"] < 0.9 * pp[0]["model_images"][0]:
            L += [f"shapjax `partition` spends {part['evals_per_image']} evaluations: with {case['segments']} the "
                  "whole Owen tree over the segments is evaluated below this budget, while shap's Image masker "
                  "keeps refining its pixel hierarchy up to the budget.", ""]
    return L


def to1_text(t: dict) -> str:
    """``"4096"`` (measured), ``"~6000"`` (extrapolated) or ``"levels off at 0.18"``."""
    if t["evals"] is None:
        return f"levels off at {t['last_rel_err']:.2g}" if t["how"] == "levels off" and t.get("last_rel_err") else "-"
    if t["how"] == "measured":
        return str(t["evals"])
    return f"~{t['evals']}" + (" (extrapolated)" if t["how"] == "extrapolated" else "")


def accuracy_section(rec: dict) -> list[str]:
    L = ["## Accuracy per budget against exact Shapley values", "",
         f"Game: {rec['game']}. Mean relative L2 error over images and seeds (precision@5 in the second table); "
         f"*to 1%* = smallest budget with mean relative error <= {rec['target_rel_err']:.0%} "
         "(\"~N\" = interpolated log-log between the two budgets around 1%, or, marked \"extrapolated\", from a "
         "log-log fit of the last three budgets, at most 100x beyond them; "
         "\"levels off\" = the error stopped falling).", ""]
    for g in rec["games"]:
        budgets = g["budgets"]
        L += [f"### M = {g['M']} ({g['grid']} grid), {g['n_images']} images x {g['seeds']} seeds "
              f"(exact values from all 2^{g['M']} coalitions)", ""]
        rows_e, rows_p = [], []
        for name, est in g["estimators"].items():
            if est["status"] != "ok":
                rows_e.append([name] + [f"{est['status']}: {est['reason']}"] + ["-"] * len(budgets))
                continue
            by = {r["budget"]: r for r in est["rows"]}
            t1 = est["to_1pct"]
            to1 = to1_text(t1)
            rows_e.append([name] + [(f"{by[b]['rel_err_mean']:.3g}" if b in by else "") for b in budgets] + [to1])
            rows_p.append([name] + [(f"{by[b]['precision_at_5']:.2f}" if b in by else "") for b in budgets])
        L += _table(["estimator"] + [str(b) for b in budgets] + ["to 1%"], rows_e)
        L += ["", "precision@5:", ""]
        L += _table(["estimator"] + [str(b) for b in budgets], rows_p)
        c = g["checks"]
        L += ["", f"Checks: `shapjax.explain(method=\"exact\")` vs the tabulated exact values: relative difference "
                  f"{c['explain_exact_vs_table_rel_diff']:.2g}; `explain(method=\"kernel\")` vs the same estimator on "
                  f"the table with the same key: {c['explain_kernel_vs_table_rel_diff']:.2g}.", ""]
    L += ["Notes: " + " ".join(n.rstrip(".") + "." for n in rec.get("notes", [])), ""]
    return L


def write_summary(out_dir=RESULTS_DIR, *, quick: bool = False) -> Path:
    res = load_results(out_dir, quick=quick)
    L = ["# shapjax benchmark results" + (" (quick mode)" if quick else ""), "",
         "Generated by `python -m benchmarks" + (" --quick" if quick else "") + "` from the JSON files in this folder "
         "(see `benchmarks/README.md` for how to read them). Ratios are measured side by side in one process.", "",
         "Machines:", ""]
    for kind in ("throughput", "peers", "accuracy"):
        for rec in res[kind]:
            L += machine_lines(rec)
    L.append("")
    for rec in res["throughput"]:
        L += throughput_section(rec)
    for rec in res["peers"]:
        L += peers_section(rec)
    for rec in res["accuracy"]:
        L += accuracy_section(rec)
    L += ["## Other results in this folder", "",
          "- [`engine_accuracy.md`](engine_accuracy.md): every estimator against exact enumeration on M = 16 player "
          "games (`python -m benchmarks.engine_accuracy`).",
          "- [`assumptions.md`](assumptions.md): maskers and segmentations compared (`python -m benchmarks.assumptions`); "
          "reading in [`docs/assumptions.md`](../../docs/assumptions.md).", ""]
    path = Path(out_dir) / ("SUMMARY_quick.md" if quick else "SUMMARY.md")
    path.write_text("\n".join(L).rstrip() + "\n")
    return path
