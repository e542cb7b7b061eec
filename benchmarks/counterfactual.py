r"""Sparse counterfactuals on standard and robust models: the two studies of Roberts & Tsiligkaridis (2021).

    python -m benchmarks.counterfactual            # full run (results/counterfactual.{json,md}, docs/*.png)
    python -m benchmarks.counterfactual --quick    # smoke test (results/counterfactual_quick.*, no figures)

(a) **Explaining predictions and errors.** Held-out MNIST images (the
    mnist-cnn split: test images 8,000-9,999, read from /work/shared/data/mnist
    by this script only) are pushed to a target class -- the predicted class + 1
    (``target="next"``), and, for the misclassified ones, their true class -- by
    FW-L1-q (a curve over q), PGD with the exact L1-ball projection (a curve
    over eps, its only sparsity knob) and dense L2 PGD, on ``mnist-cnn`` and
    ``mnist-cnn-robust``. Every method returns its first successful iterate
    (``stop_on_success=True``), so L0/L1 are those of the counterfactual
    actually handed out. Measured: success rate, success within an L0 budget
    (changed pixels, |delta| > half a grey level), L0, L1, steps to success,
    seconds per counterfactual (steady state, one compiled batch), and on the
    planted-patch models the share of |delta| inside the planted patch (the
    only place the class lives).
(b) **Concept probing from noise.** The same noise images pushed to every
    class by FW-L1-q on the standard and the robust model: a figure grid
    (classes x {standard, robust}) and how often one model's drawing is read
    as the target class by the *other* model (transfer: a drawing that only
    fools its own model is an adversarial pattern, not a concept).
(c) **Counterfactual vs SHAP.** For the same images and class pair
    (predicted -> target), KernelSHAP (7x7 grid, black masker, 1,024
    evaluations) of the logit margin z_pred - z_target against the
    counterfactual's changes per grid cell: rank correlation, the share of the
    removed ink in SHAP's top cells against the share of all ink there, and how
    much of the change is *added* ink, which a masking explainer cannot see.

Writes ``benchmarks/results/counterfactual.json`` and ``counterfactual.md``
(``_quick`` with ``--quick``) and the figures ``docs/counterfactual_concepts.png``,
``docs/counterfactual_concepts_planted.png``, ``docs/counterfactual_errors.png``
and ``docs/counterfactual_shap.png``. The reading is ``docs/counterfactual.md``.

References:
  Roberts, J. & Tsiligkaridis, T. (2021). Controllably Sparse Perturbations of
  Robust Classifiers for Explaining Predictions and Probing Learned Concepts.
  MLVis. Duchi, J. et al. (2008). Efficient Projections onto the l1-Ball. ICML.
  Tsipras, D. et al. (2019). Robustness May Be at Odds with Accuracy. ICLR.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402
from shapjax import counterfactual as cfl  # noqa: E402
from shapjax import data, models  # noqa: E402

MNIST_DIR = Path("/work/shared/data/mnist")
DOCS = ROOT / "docs"
N_TRAIN = 8000
L0_BUDGETS = (10, 20, 30, 50, 100, 200)
STEPS = 45


def log(msg):
    common.log(msg)


def mnist_heldout():
    ds = data.load(f"idx:{MNIST_DIR / 't10k-images-idx3-ubyte.gz'},{MNIST_DIR / 't10k-labels-idx1-ubyte.gz'}")
    held = ds[N_TRAIN:]
    return np.asarray(held.images, np.float32), np.asarray(held.labels, np.int32)


def configs(d: int, quick: bool):
    """(label, method, kwargs): FW over q (dq = (1 - q) / 2, so k_t has mean (1 - q) d), the paper's
    setting, PGD-L1 over eps, PGD-L2 over eps."""
    qs = (0.95, 0.99, 1.0) if quick else (0.9, 0.95, 0.975, 0.99, 0.995, 1.0)
    out = [(f"fw q={q}", "fw_l1q", dict(q=q, dq=round((1 - q) / 2, 4))) for q in qs]
    out.append(("fw q=0.975 dq=0.05 (paper)", "fw_l1q", dict(q=0.975, dq=0.05)))
    e1 = (10.0, 39.2) if quick else (5.0, 10.0, 20.0, 39.2, 80.0)
    out += [(f"pgd-l1 eps={e}", "pgd_l1", dict(eps=e)) for e in e1]
    e2 = (4.2,) if quick else (1.5, 3.0, 4.2)
    out += [(f"pgd-l2 eps={e}", "pgd_l2", dict(eps=e)) for e in e2]
    return out


def _call(method, clf, x, target, key, kw, steps=STEPS, stop=True):
    fn = cfl.METHODS[method]
    extra = dict(key=key) if method == "fw_l1q" else {}
    return fn(clf, x, target=target, steps=steps, stop_on_success=stop, **extra, **kw)


def _per_image(cf):
    return {k: np.asarray(v) for k, v in dict(success=cf.success, first=cf.first_success, l0=cf.l0, l1=cf.l1,
                                              l2=cf.trace.l2[:, -1], target=cf.target).items()}


def _stats(r, n):
    ok = r["success"]
    s = {"n": n, "success_rate": round(float(ok.mean()), 4)}
    for b in L0_BUDGETS:
        s[f"success_l0_le_{b}"] = round(float((ok & (r["l0"] <= b)).mean()), 4)
    if ok.any():
        s.update(median_l0=float(np.median(r["l0"][ok])), mean_l0=round(float(r["l0"][ok].mean()), 1),
                 median_l1=round(float(np.median(r["l1"][ok])), 2), median_l2=round(float(np.median(r["l2"][ok])), 3),
                 mean_steps=round(float(r["first"][ok].mean()), 2))
    return s


def _mask_share(delta, masks):
    a = np.abs(delta).sum(-1)
    return float(np.mean((a * masks).sum((1, 2)) / np.maximum(a.sum((1, 2)), 1e-12)))


def study_a(clfs, x, labels, *, quick, masks=None, target="next", cfgs=None, key=jax.random.key(0)):
    """Every config on every model; returns rows and the per-image results of the default configs."""
    rows, keep = [], {}
    d = int(np.prod(x.shape[1:]))
    for mname, clf in clfs.items():
        warmed = set()
        for label, method, kw in cfgs or configs(d, quick):
            if method not in warmed:  # compile (and run once) outside the timing
                t_c, _ = common.timed(lambda: _call(method, clf, x, target, key, kw).delta)
                warmed.add(method)
            t, cf = common.timed(lambda: _call(method, clf, x, target, key, kw))
            r = _per_image(cf)
            row = {"model": mname, "config": label, "method": method, **kw, **_stats(r, len(x)),
                   "seconds_per_counterfactual": round(t / len(x), 5), "batch_seconds": round(t, 3)}
            if masks is not None:
                ok = r["success"]
                row["delta_mass_in_patch"] = round(_mask_share(np.asarray(cf.delta)[ok], masks[ok]), 4) \
                    if ok.any() else None
            rows.append(row)
            keep[(mname, label)] = cf
            log(f"  {mname:>22s} {label:<28s} success {row['success_rate']:.2f}  "
                f"@L0<=50 {row['success_l0_le_50']:.2f}  L0 {row.get('median_l0', '-')}  "
                f"{1e3 * row['seconds_per_counterfactual']:.1f} ms/cf")
    return rows, keep


def study_errors(clfs, x_all, y_all, *, quick):
    rows, examples = [], {}
    for mname, clf in clfs.items():
        pred = np.concatenate([np.asarray(jnp.argmax(clf(jnp.asarray(x_all[s:s + 500])), -1))
                               for s in range(0, len(x_all), 500)])
        wrong = np.flatnonzero(pred != y_all)
        if quick:
            wrong = wrong[:8]
        x, y = x_all[wrong], y_all[wrong]
        for label, method, kw in [("fw q=0.975 dq=0.05 (paper)", "fw_l1q", dict(q=0.975, dq=0.05)),
                                  ("fw q=0.99", "fw_l1q", dict(q=0.99, dq=0.005)),
                                  ("pgd-l1 eps=39.2", "pgd_l1", dict(eps=39.2)),
                                  ("pgd-l2 eps=4.2", "pgd_l2", dict(eps=4.2))]:
            t, cf = common.timed(lambda: _call(method, clf, x, jnp.asarray(y), jax.random.key(1), kw))
            r = _per_image(cf)
            rows.append({"model": mname, "config": label, "n_errors": int(len(wrong)),
                         "heldout_images": 2000, **_stats(r, len(x))})
            if label == "fw q=0.99":
                examples[mname] = (x, y, pred[wrong], cf, wrong)
            log(f"  errors {mname:>18s} {label:<28s} {len(x)} errors, success {rows[-1]['success_rate']:.2f}")
    return rows, examples


def study_concepts(pair, *, n_noise, shape, seed, eps, q, dq, steps):
    """FW-L1-q from noise to every class on both models; transfer to the other model."""
    std, rob = pair
    K = std.num_classes
    key = jax.random.key(seed)
    noise = np.asarray(jax.random.uniform(key, (n_noise, *shape)), np.float32) * 0.5  # dim noise in [0, 0.5]
    x = np.repeat(noise, K, axis=0)
    tgt = np.tile(np.arange(K), n_noise).astype(np.int32)
    out, images = {}, {}
    for name, clf, other in (("standard", std, rob), ("robust", rob, std)):
        cf = cfl.fw_l1q(clf, x, key=jax.random.fold_in(key, 1), target=jnp.asarray(tgt), eps=eps, q=q, dq=dq,
                        steps=steps)
        xc = np.asarray(cf.counterfactual)
        own = np.asarray(cf.success)
        by_other = np.asarray(jnp.argmax(other(jnp.asarray(xc)), -1)) == tgt
        out[name] = {"own_success": round(float(own.mean()), 4), "read_as_target_by_other_model":
                     round(float(by_other.mean()), 4), "median_l0": float(np.median(np.asarray(cf.l0))),
                     "mean_target_probability": round(float(np.asarray(cf.probs)[np.arange(len(tgt)), tgt].mean()), 4)}
        images[name] = (xc, np.asarray(cf.delta))
    return out, images, noise


def _cells(a, g):
    """Sum ``a [B, H, W]`` over a g x g grid -> ``[B, g*g]``."""
    B, H, W = a.shape
    return a.reshape(B, g, H // g, g, W // g).sum((2, 4)).reshape(B, g * g)


def study_shap(clfs, x, keep, label, *, n_evals, quick):
    """Counterfactual changes vs KernelSHAP of the margin z_pred - z_target, per 7x7 cell."""
    from shapjax import explain, maskers, segment
    from shapjax.evaluation.sanity import spearman

    rows, maps = [], {}
    g, top = 7, 10
    for mname, clf in clfs.items():
        cf = keep[(mname, label)]
        ok = np.asarray(cf.success)
        src = np.asarray(cf.probs_before).argmax(-1)
        tgt = np.asarray(cf.target)
        outs = jnp.asarray(np.stack([src, tgt], 1).astype(np.int32))
        exp = explain(clf, jnp.asarray(x), key=jax.random.key(2), segments=segment.grid(g, g),
                      masker=maskers.constant(0.0), method="kernel", n_evals=n_evals, outputs=outs)
        phi = np.asarray(exp.values[:, :, 0] - exp.values[:, :, 1])  # [B, 49]: evidence for pred over target
        delta = np.asarray(cf.delta)[..., 0]
        rem, add = _cells(np.maximum(-delta, 0), g), _cells(np.maximum(delta, 0), g)
        ink = _cells(x[..., 0], g)
        tot = rem + add
        rho = np.asarray(spearman(jnp.asarray(tot), jnp.asarray(np.abs(phi))))
        order = np.argsort(-phi, 1)[:, :top]
        sel = np.zeros_like(phi, bool)
        np.put_along_axis(sel, order, True, 1)
        rem_in = (rem * sel).sum(1) / np.maximum(rem.sum(1), 1e-12)
        ink_in = (ink * sel).sum(1) / np.maximum(ink.sum(1), 1e-12)
        add_share = add.sum(1) / np.maximum(tot.sum(1), 1e-12)
        zero = np.abs(phi) <= 0.01 * np.abs(phi).max(1, keepdims=True)
        add_blind = (add * zero).sum(1) / np.maximum(add.sum(1), 1e-12)
        m = ok & (rem.sum(1) > 0)
        rows.append({"model": mname, "config": label, "n": int(ok.sum()),
                     "spearman_change_vs_abs_shap": round(float(rho[ok].mean()), 4),
                     f"removed_ink_in_top{top}_shap_cells": round(float(rem_in[m].mean()), 4),
                     f"all_ink_in_top{top}_shap_cells": round(float(ink_in[m].mean()), 4),
                     "added_share_of_change": round(float(add_share[ok].mean()), 4),
                     "added_change_in_zero_shap_cells": round(float(add_blind[ok].mean()), 4)})
        maps[mname] = (phi, delta, src, tgt, ok)
        log(f"  shap {mname:>20s} rho {rows[-1]['spearman_change_vs_abs_shap']:.2f}, removed ink in top cells "
            f"{rem_in[m].mean():.2f} vs ink {ink_in[m].mean():.2f}, added {add_share[ok].mean():.2f}")
    return rows, maps


def study_timing(clf, x, *, rounds: int):
    """Seconds per counterfactual of the default settings, interleaved over ``rounds`` rounds (median), so
    the methods share the machine's load; every run does all 45 steps (no early stop)."""
    cfgs = [("fw q=0.975 dq=0.05 (paper)", "fw_l1q", dict(q=0.975, dq=0.05)),
            ("fw q=0.99", "fw_l1q", dict(q=0.99, dq=0.005)), ("pgd-l1 eps=20.0", "pgd_l1", dict(eps=20.0)),
            ("pgd-l2 eps=4.2", "pgd_l2", dict(eps=4.2))]
    key = jax.random.key(0)
    for _, m, kw in cfgs:  # compile
        jax.block_until_ready(_call(m, clf, x, "next", key, kw, stop=False).delta)
    times = {c[0]: [] for c in cfgs}
    for _ in range(rounds):
        for label, m, kw in cfgs:
            t, _ = common.timed(lambda: _call(m, clf, x, "next", key, kw, stop=False).delta)
            times[label].append(t / len(x))
    base = common.median(times[cfgs[0][0]])
    return [{"config": k, "ms_per_counterfactual": round(1e3 * common.median(v), 3),
             "relative_to_fw_paper": round(common.median(v) / base, 3), "rounds": rounds, "n_images": len(x),
             "steps": STEPS} for k, v in times.items()]


# --------------------------------------------------------------------------- figures


def fig_concepts(images, noise, class_names, path, title):
    from shapjax import plot
    from shapjax.counterfactual.plot import concept_grid

    K = len(class_names)
    rows = [list(noise[:1].repeat(K, 0))]
    labels = ["noise"]
    for name in ("standard", "robust"):
        xc, dl = images[name]
        rows.append(list(xc[:K]))
        labels.append(f"{name}\nresult")
        rows.append(list(np.clip(0.5 + dl[:K] / (2 * max(np.abs(dl[:K]).max(), 1e-6)), 0, 1)))
        labels.append(f"{name}\nchange")
    fig = concept_grid(rows, row_labels=labels, col_labels=[c[:10] for c in class_names], title=title)
    plot.save_figure(fig, path, dpi=110)


def fig_shap(maps, x, path, n=4):
    from matplotlib.figure import Figure

    from shapjax import plot

    names = list(maps)
    fig = Figure(figsize=(2.0 * 3 * len(names), 2.1 * n))
    for j, mname in enumerate(names):
        phi, delta, src, tgt, ok = maps[mname]
        idx = np.flatnonzero(ok)[:n]
        for i, b in enumerate(idx):
            axs = [fig.add_subplot(n, 3 * len(names), i * 3 * len(names) + 3 * j + c + 1) for c in range(3)]
            axs[0].imshow(x[b, ..., 0], cmap="gray", vmin=0, vmax=1)
            axs[0].set_title(f"{mname}\n{src[b]} -> {tgt[b]}" if i == 0 else f"{src[b]} -> {tgt[b]}", fontsize=7)
            m = max(np.abs(phi[b]).max(), 1e-9)
            axs[1].imshow(phi[b].reshape(7, 7), cmap="RdBu_r", vmin=-m, vmax=m)
            axs[1].set_title(f"SHAP z{src[b]}-z{tgt[b]}" if i == 0 else "", fontsize=7)
            m = max(np.abs(delta[b]).max(), 1e-9)
            axs[2].imshow(delta[b], cmap="RdBu_r", vmin=-m, vmax=m)
            axs[2].set_title("counterfactual change" if i == 0 else "", fontsize=7)
            for a in axs:
                a.set_xticks([])
                a.set_yticks([])
    plot.save_figure(fig, path, dpi=110)


# --------------------------------------------------------------------------- report


def headline(rows, budget=50):
    """Robust MNIST: best FW-L1-q vs best PGD-L1 success within the L0 budget (best config of each)."""
    rob = [r for r in rows if r["model"] == "mnist-cnn-robust"]
    out = {"l0_budget": budget}
    for m in ("fw_l1q", "pgd_l1", "pgd_l2"):
        cand = [r for r in rob if r["method"] == m]
        if not cand:
            continue
        best = max(cand, key=lambda r: (r[f"success_l0_le_{budget}"], r["success_rate"]))
        out[m] = {"config": best["config"], "success_within_budget": best[f"success_l0_le_{budget}"],
                  "success_rate": best["success_rate"], "median_l0": best.get("median_l0"),
                  "ms_per_counterfactual": round(1e3 * best["seconds_per_counterfactual"], 2)}
    return out


def _table(rows, cols):
    head = "| " + " | ".join(c for c, _ in cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = ""
    for r in rows:
        body += "| " + " | ".join(f(r) for _, f in cols) + " |\n"
    return head + body


def _f(key, fmt="{:.2f}", scale=1.0):
    return lambda r: "-" if r.get(key) is None else fmt.format(r[key] * scale)


def write_md(res, path):
    m = res["machine"]
    lines = [f"# Sparse counterfactuals (`python -m benchmarks.counterfactual{' --quick' if res['quick'] else ''}`)",
             "", f"Machine: {m['cpu_model']}, {m['cpu_cores_usable']} cores, JAX {m['versions']['jax']} "
             f"({m['jax_backend']}), {m['date'][:10]}, load average at the end {m.get('load_average_end')}. "
             "Times are steady state (compiled once per method and model), one batch of all images, "
             "45 steps each (the programs run every step; `stop_on_success` freezes the iterate).", ""]
    h = res["headline"]
    lines += ["## Headline (mnist-cnn-robust, target = predicted class + 1)", "",
              f"Success within an L0 budget of {h['l0_budget']} changed pixels (of 784), best setting of each "
              "method on the same images:", "",
              _table([dict(method=k, **v) for k, v in h.items() if isinstance(v, dict)],
                     [("method", lambda r: r["method"]), ("best setting", lambda r: r["config"]),
                      (f"success, L0 <= {h['l0_budget']}", _f("success_within_budget", "{:.1%}")),
                      ("success (any L0)", _f("success_rate", "{:.1%}")), ("median L0", _f("median_l0", "{:.0f}")),
                      ("ms per counterfactual (in its sweep)", _f("ms_per_counterfactual", "{:.2f}"))]), ""]
    if res.get("timing"):
        lines += ["Time per counterfactual, measured side by side (interleaved rounds, median; every run does all "
                  f"{STEPS} steps on one batch of {res['timing'][0]['n_images']} images, mnist-cnn-robust):", "",
                  _table(res["timing"], [("setting", lambda r: r["config"]),
                                         ("ms per counterfactual", _f("ms_per_counterfactual", "{:.2f}")),
                                         ("relative to FW (paper setting)", _f("relative_to_fw_paper", "{:.2f}"))]),
                  ""]
    cols = [("model", lambda r: r["model"]), ("setting", lambda r: r["config"]),
            ("success", _f("success_rate", "{:.0%}"))]
    cols += [(f"L0<={b}", _f(f"success_l0_le_{b}", "{:.0%}")) for b in L0_BUDGETS]
    cols += [("median L0", _f("median_l0", "{:.0f}")), ("median L1", _f("median_l1", "{:.1f}")),
             ("median L2", _f("median_l2", "{:.2f}")), ("steps", _f("mean_steps", "{:.1f}")),
             ("ms/cf", _f("seconds_per_counterfactual", "{:.2f}", 1e3))]
    lines += [f"## (a) Explaining predictions: MNIST, {res['a']['n_images']} held-out images, target = "
              "predicted + 1", "", _table(res["a"]["rows"], cols), ""]
    if res.get("a_planted"):
        pc = cols[:3] + [("L0<=50", _f("success_l0_le_50", "{:.0%}")), ("L0<=200", _f("success_l0_le_200", "{:.0%}")),
                         ("median L0", _f("median_l0", "{:.0f}")),
                         ("share of the change in the patch", _f("delta_mass_in_patch", "{:.0%}")),
                         ("ms/cf", _f("seconds_per_counterfactual", "{:.2f}", 1e3))]
        lines += [f"### planted-patch, {res['a_planted']['n_images']} held-out images (patch = "
                  f"{res['a_planted']['patch_area']:.1%} of the image)", "", _table(res["a_planted"]["rows"], pc), ""]
    ec = [("model", lambda r: r["model"]), ("setting", lambda r: r["config"]),
          ("errors", lambda r: str(r["n_errors"])), ("pushed to the true class", _f("success_rate", "{:.0%}")),
          ("L0<=50", _f("success_l0_le_50", "{:.0%}")), ("median L0", _f("median_l0", "{:.0f}")),
          ("median L1", _f("median_l1", "{:.1f}"))]
    lines += ["## (a) Explaining errors: misclassified held-out images pushed to their true class", "",
              _table(res["errors"], ec), ""]
    lines += ["## (b) Concept probing from noise (FW-L1-q to every class)", ""]
    for ds, c in res["concepts"].items():
        lines += [f"{ds}: " + "; ".join(f"{k}: own success {v['own_success']:.0%}, read as the target by the "
                                        f"other model {v['read_as_target_by_other_model']:.0%}, median L0 "
                                        f"{v['median_l0']:.0f}" for k, v in c["models"].items()), ""]
    sc = [("model", lambda r: r["model"]), ("n", lambda r: str(r["n"])),
          ("Spearman: change vs SHAP magnitude per cell", _f("spearman_change_vs_abs_shap")),
          ("removed ink in SHAP top-10 cells", _f("removed_ink_in_top10_shap_cells", "{:.0%}")),
          ("all ink there", _f("all_ink_in_top10_shap_cells", "{:.0%}")),
          ("added share of the change", _f("added_share_of_change", "{:.0%}")),
          ("added change where SHAP is 0", _f("added_change_in_zero_shap_cells", "{:.0%}"))]
    lines += [f"## (c) Counterfactual vs SHAP (7x7 cells, KernelSHAP of z_pred - z_target, {res['shap']['config']})",
              "", _table(res["shap"]["rows"], sc), ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few images and settings, no figures")
    p.add_argument("--n", type=int, default=None, help="images for study (a) (default 128, quick 24)")
    p.add_argument("--timing-only", action="store_true",
                   help="only (re)measure the side-by-side timing and merge it into the existing result file")
    args = p.parse_args(argv)
    quick = args.quick
    name = "counterfactual_quick" if quick else "counterfactual"
    if args.timing_only:
        path = common.RESULTS_DIR / f"{name}.json"
        res = json.loads(path.read_text())
        x_all, _ = mnist_heldout()
        res["timing"] = study_timing(models.pretrained("mnist-cnn-robust"), x_all[300:300 + 64],
                                     rounds=2 if quick else 5)
        log(f"timing: {res['timing']}")
        res["timing_machine"] = common.machine_info()  # the rest of the file keeps the machine of its run
        path.write_text(json.dumps(res, indent=1, default=common._json_default) + "\n")
        write_md(res, path.with_suffix(".md"))
        return 0
    n = args.n or (24 if quick else 128)
    t_start = time.perf_counter()
    x_all, y_all = mnist_heldout()
    x = x_all[300:300 + n]  # held-out images after the committed test slice
    clfs = {m: models.pretrained(m) for m in ("mnist-cnn", "mnist-cnn-robust")}
    res = {"quick": quick, "steps": STEPS}
    log(f"(a) {n} MNIST images, target next")
    rows, keep = study_a(clfs, x, None, quick=quick)
    res["a"] = {"n_images": n, "heldout_indices": [N_TRAIN + 300, N_TRAIN + 300 + n - 1], "target": "next",
                "rows": rows}
    res["headline"] = headline(rows)
    log("(a) planted-patch")
    pclfs = {m: models.pretrained(m) for m in ("planted-patch", "planted-patch-robust")}
    pds = data.planted_patch(jax.random.fold_in(jax.random.key(0), 1), 2000, size=32, n_classes=4, patch_size=8,
                             channels=3)  # the planted-patch held-out set
    npl = 16 if quick else 64
    xp, mp = np.asarray(pds.images[100:100 + npl], np.float32), np.asarray(pds.masks[100:100 + npl])
    pcfg = [("fw q=0.99", "fw_l1q", dict(q=0.99, dq=0.005)), ("fw q=0.975 dq=0.05 (paper)", "fw_l1q",
                                                             dict(q=0.975, dq=0.05)),
            ("pgd-l1 eps=153.6", "pgd_l1", dict(eps=153.6)), ("pgd-l2 eps=8.3", "pgd_l2", dict(eps=8.3))]
    prow, _ = study_a(pclfs, xp, None, quick=quick, masks=mp, cfgs=pcfg)
    res["a_planted"] = {"n_images": npl, "patch_area": float(mp.mean()), "rows": prow}
    log("(a) errors")
    res["errors"], examples = study_errors(clfs, x_all, y_all, quick=quick)
    log("(b) concepts")
    res["concepts"] = {}
    for ds_name, pair, shape, names, eps in (
            ("mnist", (clfs["mnist-cnn"], clfs["mnist-cnn-robust"]), (28, 28, 1), [str(i) for i in range(10)], 60.0),
            ("planted-patch", (pclfs["planted-patch"], pclfs["planted-patch-robust"]), (32, 32, 3),
             list(pclfs["planted-patch"].class_names), 200.0)):
        out, imgs, noise = study_concepts(pair, n_noise=2 if quick else 10, shape=shape, seed=3, eps=eps, q=0.975,
                                          dq=0.02, steps=STEPS)
        res["concepts"][ds_name] = {"eps": eps, "q": 0.975, "dq": 0.02, "steps": STEPS,
                                    "noise": "uniform in [0, 0.5]", "models": out}
        log(f"  {ds_name}: {out}")
        if not quick:
            fname = "counterfactual_concepts.png" if ds_name == "mnist" else "counterfactual_concepts_planted.png"
            fig_concepts(imgs, noise, names, DOCS / fname,
                         f"FW-L1-q from noise to each class ({ds_name}; eps {eps}, q 0.975, {STEPS} steps)")
    log("(c) SHAP overlap")
    label = "fw q=0.99"
    ns = min(n, 16 if quick else 64)
    sub = {k: jax.tree_util.tree_map(lambda a: a[:ns], v) for k, v in keep.items() if k[1] == label}
    shap_rows, maps = study_shap(clfs, x[:ns], sub, label, n_evals=256 if quick else 1024, quick=quick)
    res["shap"] = {"config": label, "n_images": ns, "grid": "7x7", "masker": "constant 0", "method": "kernel",
                   "n_evals": 256 if quick else 1024, "rows": shap_rows}
    if not quick:
        from shapjax import plot
        from shapjax.counterfactual.plot import counterfactual_figure

        fig_shap(maps, x[:ns], DOCS / "counterfactual_shap.png")
        ex, ey, ep, ecf, _ = examples["mnist-cnn-robust"]
        k = min(6, len(ex))
        fig = counterfactual_figure(jax.tree_util.tree_map(lambda a: np.asarray(a)[:k], ecf), ex[:k],
                                    names=[f"label {ey[i]}, predicted {ep[i]}" for i in range(k)], max_images=k,
                                    title="mnist-cnn-robust errors pushed to their true class (FW-L1-q, q 0.99)")
        plot.save_figure(fig, DOCS / "counterfactual_errors.png", dpi=100)
    log("timing")
    res["timing"] = study_timing(clfs["mnist-cnn-robust"], x[:64], rounds=2 if quick else 5)
    res["total_seconds"] = round(time.perf_counter() - t_start, 1)
    path = common.write_result(name, res)
    write_md(json.loads(path.read_text()), path.with_suffix(".md"))
    log(f"wrote {path} and {path.with_suffix('.md')} in {res['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
