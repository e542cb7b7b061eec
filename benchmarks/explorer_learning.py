r"""Does the explorer learn from feedback? A simulated user on the planted-patch model.

    python -m benchmarks.explorer_learning            # results/explorer_learning.{json,md,png}
    python -m benchmarks.explorer_learning --quick    # smoke test (results/explorer_learning_quick.*)

The planted-patch model decides its class from one 8x8 patch only, so the patch
is the truth of every explanation. A simulated user looks at the explanation the
explorer shows for the predicted class and says 👍 when at least ``THRESHOLD`` of
its positive attribution lies inside the patch, else 👎 (and, in the third
policy, also marks the patch on a 👎, as a person would brush it). The explorer
runs exactly as behind the web page (:class:`shapjax.explorer.Explorer`: the
SQLite store, the bandit, the region scoring); only the HTTP layer is skipped.

Every image (fresh planted-patch images, not the shipped ones) is explained once
under each of the seven default settings (kernel / leverage / partition SHAP,
LIME, Grad-CAM, IG; one shared cache), which also gives each setting's 👍 rate
under this user: the *preferred* settings are those whose rate is at least
``NEAR_BEST`` of the best one's (KernelSHAP and Leverage SHAP estimate the same
Shapley values on the same players, so they tie). Then,
for each seed, a session of ``ROUNDS`` images in a random order is run with
three policies, each with a fresh store:

* ``uniform``: the setting drawn uniformly at random (the baseline);
* ``thompson``: Thompson sampling on 👍/👎 (per predicted class, pooled prior);
* ``thompson+marks``: the same, and every 👎 carries a mark of the patch, which
  scores all seven settings (share of positive attribution inside the mark).

Measured per round, averaged over the seeds: the share of sessions showing a
preferred setting, and the 👍 rate of what was shown.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common

THRESHOLD = 0.5  # "most of the positive mass in the patch"
NEAR_BEST = 0.9  # preferred settings: a 👍 rate at least this fraction of the best one's
POLICIES = ("uniform", "thompson", "thompson+marks")


def _box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def precompute(n_images: int, n_evals: int):
    """The images, the shared explanation cache and the share of positive attribution in the patch [N, S]."""
    import jax

    from shapjax import data, models
    from shapjax.explorer.compute import Explainer
    from shapjax.explorer.settings import default_settings

    clf = models.pretrained("planted-patch")
    ds = data.planted_patch(n_images, key=jax.random.key(2026), size=32, n_classes=4, patch_size=8)
    settings = default_settings(clf.input_shape)
    explainer = Explainer(clf, ds.images, seed=0, n_evals=n_evals)
    pred = explainer.probabilities().argmax(1)
    share = np.zeros((n_images, len(settings)))
    seconds = {s.name: [] for s in settings}
    t0 = time.perf_counter()
    for j, s in enumerate(settings):
        for i in range(n_images):
            r = explainer.submit(i, int(pred[i]), s).result()
            share[i, j] = r.positive_share(ds.masks[i])
            seconds[s.name].append(r.seconds)
        common.log(f"  {s.name:<26} mean share in patch {share[:, j].mean():.3f}, 👍 rate "
                   f"{(share[:, j] >= THRESHOLD).mean():.3f} ({np.median(seconds[s.name]):.3f} s median)")
    return clf, ds, settings, explainer, pred, share, seconds, time.perf_counter() - t0


def session(policy: str, seed: int, *, clf, ds, settings, explainer, share, rounds: int, store_dir: Path):
    """One simulated session; returns the shown setting index and the verdict per round."""
    from shapjax.explorer import Explorer

    ex = Explorer(clf, ds.images, model_name="planted-patch", store=store_dir, settings=settings,
                  policy="uniform" if policy == "uniform" else "thompson", seed=seed, explainer=explainer,
                  region_weight=1.0)
    names = [s.name for s in settings]
    order = np.random.default_rng(seed).permutation(len(ds.images))[:rounds]
    shown, ups = [], []
    for i in order:
        v = ex.next(ex.ids[i], wait=120, maps=False)
        j = names.index(v["setting"]["name"])
        up = bool(share[i, j] >= THRESHOLD)
        fb = {"image_id": ex.ids[i], "class": v["class"]["index"], "setting": names[j],
              "verdict": "up" if up else "down", "chosen_by": v["choice"]["policy"]}
        if policy == "thompson+marks" and not up:
            fb["regions"] = [{"box": _box(ds.masks[i])}]
        ex.feedback(fb)
        ex.wait_idle(600)
        shown.append(j)
        ups.append(up)
    ex.store.close()
    return np.asarray(shown), np.asarray(ups)


def _figure(curves: dict, rounds: int, preferred: str, path: Path, n_seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(1, rounds + 1)
    colours = {"uniform": "#7f7f7f", "thompson": "#1f77b4", "thompson+marks": "#d62728"}
    for key, ax, title in (("preferred", axes[0], f"share of sessions shown a preferred setting\n({preferred})"),
                           ("up", axes[1], "thumbs-up rate of the shown explanations")):
        for p, c in curves.items():
            m, se = np.asarray(c[key + "_mean"]), np.asarray(c[key + "_se"])
            ax.plot(x, m, color=colours[p], label=p, lw=1.6)
            ax.fill_between(x, m - se, m + se, color=colours[p], alpha=0.15, lw=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("round (one image per round)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"planted-patch, simulated user (thumbs-up iff >= {THRESHOLD:.0%} of the positive attribution lies in "
                 f"the patch), mean ± s.e. over {n_seeds} seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _window(a: np.ndarray, lo: int, hi: int) -> float:
    return float(a[:, lo:hi].mean())


def run(*, quick: bool = False, out_dir=common.RESULTS_DIR) -> dict:
    n_images, rounds, n_seeds, n_evals = (24, 20, 3, 256) if quick else (80, 60, 20, 512)
    common.log(f"explorer_learning: {n_images} images, {rounds} rounds, {n_seeds} seeds, n_evals {n_evals}")
    clf, ds, settings, explainer, pred, share, seconds, pre_s = precompute(n_images, n_evals)
    names = [s.name for s in settings]
    up_rate = (share >= THRESHOLD).mean(0)
    preferred = [j for j in range(len(names)) if up_rate[j] >= NEAR_BEST * up_rate.max()]
    common.log(f"preferred settings: {[names[j] for j in preferred]} (👍 rates {up_rate[preferred].round(3)})")
    results, t0 = {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for p in POLICIES:
            shown, ups = [], []
            for seed in range(n_seeds):
                sh, u = session(p, seed, clf=clf, ds=ds, settings=settings, explainer=explainer, share=share,
                                rounds=rounds, store_dir=Path(tmp) / f"{p}-{seed}")
                shown.append(sh)
                ups.append(u)
            shown, ups = np.stack(shown), np.stack(ups)
            pref = np.isin(shown, preferred).astype(float)
            se = lambda a: a.std(0, ddof=1) / np.sqrt(a.shape[0]) if a.shape[0] > 1 else np.zeros(a.shape[1])  # noqa
            results[p] = {"preferred_mean": pref.mean(0).round(4).tolist(), "preferred_se": se(pref).round(4).tolist(),
                          "up_mean": ups.mean(0).round(4).tolist(), "up_se": se(ups.astype(float)).round(4).tolist(),
                          "preferred_first10": _window(pref, 0, 10), "preferred_last10": _window(pref, -10, None),
                          "up_first10": _window(ups, 0, 10), "up_last10": _window(ups, -10, None),
                          "preferred_overall": float(pref.mean()), "up_overall": float(ups.mean()),
                          "shown_counts": np.bincount(shown.ravel(), minlength=len(names)).tolist()}
            common.log(f"  {p:<15} preferred shown: rounds 1-10 {results[p]['preferred_first10']:.3f}, last 10 "
                       f"{results[p]['preferred_last10']:.3f}; 👍 rate {results[p]['up_first10']:.3f} -> "
                       f"{results[p]['up_last10']:.3f}")
    sess_s = time.perf_counter() - t0
    stem = "explorer_learning" + ("_quick" if quick else "")
    out_dir = Path(out_dir)
    payload = {"config": {"model": "planted-patch", "images": f"planted_patch({n_images}, key=key(2026))",
                          "threshold": THRESHOLD, "rounds": rounds, "seeds": n_seeds, "n_evals": n_evals,
                          "region_weight": 1.0, "pool_strength": 10.0},
               "settings": names, "share_in_patch_mean": share.mean(0).round(4).tolist(),
               "up_rate": up_rate.round(4).tolist(), "preferred": [names[j] for j in preferred],
               "uniform_expected_preferred_share": round(len(preferred) / len(names), 4),
               "median_seconds_per_explanation": {k: round(float(np.median(v)), 4) for k, v in seconds.items()},
               "precompute_seconds": round(pre_s, 1), "sessions_seconds": round(sess_s, 1), "policies": results}
    common.write_result(stem, payload, out_dir=out_dir)
    if not quick:
        _figure(results, rounds, " + ".join(names[j] for j in preferred), out_dir / f"{stem}.png", n_seeds)
    (out_dir / f"{stem}.md").write_text(_markdown(payload, json.loads((out_dir / f"{stem}.json").read_text())))
    return payload


def _markdown(p: dict, rec: dict) -> str:
    m, c = rec["machine"], p["config"]
    lines = [f"# Explorer: does it learn from feedback? ({'quick' if c['rounds'] < 60 else 'full'})", "",
             f"planted-patch model, {c['images']}, a simulated user who says 👍 iff >= {c['threshold']:.0%} of the "
             f"explanation's positive attribution lies in the planted patch (the truth); {c['rounds']} rounds (one "
             f"image each, random order), {c['seeds']} seeds, {c['n_evals']} coalitions per explanation. Preferred: "
             f"a 👍 rate at least {NEAR_BEST:.0%} of the best setting's; a uniform choice shows one in "
             f"{p['uniform_expected_preferred_share']:.3f} of the rounds.", "",
             "| setting | mean share of positive attribution in the patch | 👍 rate | median s / explanation |",
             "|---|---|---|---|"]
    for s, sh, u in zip(p["settings"], p["share_in_patch_mean"], p["up_rate"]):
        star = " **(preferred)**" if s in p["preferred"] else ""
        lines.append(f"| `{s.replace('|', chr(92) + '|')}`{star} | {sh:.3f} | {u:.3f} | {p['median_seconds_per_explanation'][s]:.3f} |")
    lines += ["", "| policy | preferred shown, rounds 1-10 | last 10 rounds | whole session | 👍 rate, rounds 1-10 | "
              "last 10 rounds | whole session |", "|---|---|---|---|---|---|---|"]
    for name, r in p["policies"].items():
        lines.append(f"| {name} | {r['preferred_first10']:.3f} | {r['preferred_last10']:.3f} | "
                     f"{r['preferred_overall']:.3f} | {r['up_first10']:.3f} | {r['up_last10']:.3f} | "
                     f"{r['up_overall']:.3f} |")
    lines += ["", f"Machine: {m['cpu_model']}, {m['cpu_cores_usable']} cores usable, JAX {m['versions'].get('jax')} "
              f"({m['jax_backend']}), {m['date']}, load average at the end {m['load_average_end']}. "
              f"Explanations {p['precompute_seconds']} s (computed once, shared by every session), sessions "
              f"{p['sessions_seconds']} s.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.explorer_learning", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="24 images, 20 rounds, 3 seeds")
    ap.add_argument("--out", default=str(common.RESULTS_DIR))
    ap.add_argument("--markdown", action="store_true", help="only rewrite the .md from the existing .json")
    a = ap.parse_args(argv)
    if a.markdown:
        path = Path(a.out) / ("explorer_learning" + ("_quick" if a.quick else "") + ".json")
        rec = json.loads(path.read_text())
        path.with_suffix(".md").write_text(_markdown(rec, rec))
        return 0
    os.environ.setdefault("TQDM_DISABLE", "1")
    run(quick=a.quick, out_dir=a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
