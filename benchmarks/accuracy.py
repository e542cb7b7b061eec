r"""Accuracy per budget on image games small enough for exact Shapley values.

The game: the shipped ``mnist-cnn`` on held-out digits from
``shapjax.data.samples("mnist")``, a ``rows x cols`` grid of M = 12 or 16
segments as players, absent segments set to 0, and the value of a coalition
the logit of the class the model predicts on the whole image. Every one of
the :math:`2^M` coalitions is evaluated once through the model (that is
also what ``method="exact"`` costs), which gives the exact values

.. math::

    \phi_i = \sum_{S \subseteq N \setminus \{i\}} \frac{|S|!\,(M-|S|-1)!}{M!}
             \,[v(S \cup \{i\}) - v(S)]

(float64, :func:`shapjax.games.brute_force_shapley`), and a value table that
every estimator then queries: ours (through :func:`shapjax.shapley`, the same
design/solve code :func:`shapjax.explain` runs, all images of one seed as the
K outputs of one shared design, as ``explain`` does for a batch) and shap's
KernelExplainer / PermutationExplainer and captum's KernelShap at the same
number of evaluations. Lookups make the benchmark cheap; the numbers are the
same as with the model in the loop (checked once per run against
``shapjax.explain``).

Reported per estimator, M and budget (mean over images and seeds): relative
L2 error :math:`\|\hat\phi - \phi\|_2 / \|\phi\|_2`, precision@5 (overlap of
the five segments with the largest :math:`|\phi|`), and the smallest budget
with mean relative error at most 1% (measured, or extrapolated from a
log-log fit of the last budgets, marked as such).

References:
  Lundberg & Lee (2017), NeurIPS; Castro et al. (2009), C&OR;
  Musco & Witter (2025), ICLR; Mitchell et al. (2022), JMLR.
"""
from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import backend, log, write_result

OURS = ["kernel", "leverage", "permutation", "antithetic", "stratified", "partition"]
PEERS = [("shap", "KernelExplainer"), ("shap", "PermutationExplainer"), ("captum", "KernelShap")]

FULL = {  # sized to about 6 minutes on 2 CPU cores (compiling one program per estimator and budget dominates)
    "games": [
        {"M": 12, "grid": (3, 4), "n_images": 8, "budgets": [32, 128, 512, 2048, 8192]},
        {"M": 16, "grid": (4, 4), "n_images": 4, "budgets": [64, 256, 1024, 4096, 16384]},
    ],
    "seeds": 4, "peer_seeds": 3, "peer_images": 4, "peer_max_budget": 16384, "captum_max_budget": 4096,
}
QUICK = {
    "games": [{"M": 12, "grid": (3, 4), "n_images": 4, "budgets": [64, 256, 1024, 4096]}],
    "seeds": 2, "peer_seeds": 2, "peer_images": 3, "peer_max_budget": 1024, "captum_max_budget": 1024,
}
TARGET = 0.01


def _bits(M: int) -> np.ndarray:
    return (1 << np.arange(M)).astype(np.int64)


def value_tables(clf, images: np.ndarray, seg: np.ndarray, M: int, *, batch: int = 256):
    """``v[b, r]`` for every coalition ``r`` (player j present iff bit j of r) of each image: ``[B, 2**M]``.

    The value is the logit of the class predicted on the whole image;
    returns ``(tables, targets)``.
    """
    params = clf.params
    seg_j = jnp.asarray(seg)
    bits = jnp.asarray(_bits(M), jnp.int32)

    @jax.jit
    def chunk(img, t, r0):
        r = r0 + jnp.arange(batch, dtype=jnp.int32)
        Z = (r[:, None] & bits[None]) > 0  # [batch, M]
        x = jnp.where(Z[:, seg_j][..., None], img[None], 0.0)
        return clf.apply(params, x)[:, t]

    targets = np.asarray(clf.apply(params, jnp.asarray(images))).argmax(1)
    n = 2**M
    tables = np.zeros((len(images), n), np.float64)
    for b, img in enumerate(images):
        img_j = jnp.asarray(img)
        outs = [chunk(img_j, int(targets[b]), r0) for r0 in range(0, n, batch)]
        tables[b] = np.concatenate([np.asarray(o) for o in outs])[:n]
    return tables, targets


def _lookup_np(tables: np.ndarray, M: int):
    bits = _bits(M)
    return lambda Z: tables[..., np.asarray(np.round(np.asarray(Z, np.float64))).astype(np.int64) @ bits]


def exact_values(table: np.ndarray, M: int) -> np.ndarray:
    from shapjax.engine.games import brute_force_shapley

    f = _lookup_np(table, M)
    return brute_force_shapley(lambda Z: f(np.asarray(Z)), M)


def rel_err(est: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(est - exact) / max(np.linalg.norm(exact), 1e-12))


def prec_at_k(est: np.ndarray, exact: np.ndarray, k: int = 5) -> float:
    a = set(np.argsort(-np.abs(est))[:k].tolist())
    b = set(np.argsort(-np.abs(exact))[:k].tolist())
    return len(a & b) / k


def _grid_tree(rows: int, cols: int, M: int):
    from shapjax.engine.estimators.partition import Tree
    from shapjax.image.hierarchy import partition_tree

    t = partition_tree(np.arange(M).reshape(rows, cols))  # one pixel per grid cell: same spatial hierarchy
    return Tree(t.left, t.right, t.members)


# --------------------------------------------------------------------------- estimators


def run_ours(tables, exact, M, budgets, seeds, tree):
    """Errors of our estimators; ``tables [B, 2**M]`` become the B outputs of one game."""
    import shapjax
    from shapjax.engine.estimators import get_estimator

    tab = jnp.asarray(tables.T, jnp.float32)  # [2**M, B]
    bits = jnp.asarray(_bits(M), jnp.int32)
    game = lambda Z: tab[Z.astype(jnp.int32) @ bits]  # noqa: E731 - one object: compiled once per config
    out = {}
    for method in OURS:
        est = get_estimator(method)
        rows = []
        for budget in budgets:
            if budget < est.min_evals(M):
                continue
            errs, precs = [], []
            t0 = time.perf_counter()
            for s in range(seeds):
                kw = {"tree": tree} if method == "partition" else {}
                res = shapjax.shapley(game, M, key=jax.random.key(1000 + s), method=method, n_evals=budget, **kw)
                vals = np.asarray(res.values, np.float64)  # [M, B]
                for b in range(tables.shape[0]):
                    errs.append(rel_err(vals[:, b], exact[b]))
                    precs.append(prec_at_k(vals[:, b], exact[b]))
            rows.append(_row(budget, int(res.n_evals), errs, precs, time.perf_counter() - t0))
        out[method] = {"status": "ok", "rows": rows, "to_1pct": budget_to_target(rows)}
        log(f"  shapjax {method}: " + ", ".join(f"{r['budget']}:{r['rel_err_mean']:.3g}" for r in rows))
    return out


def _row(budget, evals, errs, precs, wall):
    e = np.asarray(errs)
    return {"budget": budget, "evals_used": evals, "rel_err_mean": float(e.mean()),
            "rel_err_sem": float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else None,
            "rel_err_median": float(np.median(e)), "precision_at_5": float(np.mean(precs)), "n": len(e),
            "wall_s": round(wall, 3)}


def _peer_values(lib, name, f_np, M, budget, seed, counter):
    """One explanation of the table game by a peer; ``f_np(Z [n, M]) -> [n]``."""
    def f(Z):
        counter[0] += len(Z)
        return f_np(Z)

    if (lib, name) == ("shap", "KernelExplainer"):
        import shap

        np.random.seed(seed)
        ex = shap.KernelExplainer(f, np.zeros((1, M)))
        return np.asarray(ex.shap_values(np.ones((1, M)), nsamples=budget - 2, l1_reg=False, silent=True)).reshape(-1)
    if (lib, name) == ("shap", "PermutationExplainer"):
        import shap

        ex = shap.PermutationExplainer(f, shap.maskers.Independent(np.zeros((1, M)), max_samples=1), seed=seed)
        return np.asarray(ex(np.ones((1, M)), max_evals=budget, batch_size=1024, silent=True).values).reshape(-1)
    if (lib, name) == ("captum", "KernelShap"):
        import torch
        from captum.attr import KernelShap

        torch.manual_seed(seed)
        fwd = lambda x: torch.from_numpy(np.asarray(f(x.numpy()), np.float32))  # noqa: E731
        a = KernelShap(fwd).attribute(torch.ones(1, M), baselines=torch.zeros(1, M), n_samples=budget - 2,
                                      perturbations_per_eval=1024)
        return a.numpy().reshape(-1).astype(np.float64)
    raise ValueError(name)


def _peer_min_budget(lib, name, M):
    return 2 * M + 1 if name == "PermutationExplainer" else M + 2


def run_peers(tables, exact, M, budgets, cfg):
    from benchmarks.peers import _import_error

    out = {}
    n_img = min(cfg["peer_images"], tables.shape[0])
    for lib, name in PEERS:
        key = f"{lib}.{name}"
        err = _import_error(lib)
        if err:
            out[key] = {"status": "skipped", "reason": f"{lib} not installed ({err})"}
            log(f"  {key}: skipped ({err})")
            continue
        cap = cfg["captum_max_budget"] if lib == "captum" else cfg["peer_max_budget"]
        rows = []
        try:
            for budget in budgets:
                if budget > cap or budget < _peer_min_budget(lib, name, M):
                    continue
                errs, precs, used = [], [], []
                t0 = time.perf_counter()
                for b in range(n_img):
                    f_np = _lookup_np(tables[b], M)
                    for s in range(cfg["peer_seeds"]):
                        counter = [0]
                        v = _peer_values(lib, name, f_np, M, budget, s, counter)
                        errs.append(rel_err(v, exact[b]))
                        precs.append(prec_at_k(v, exact[b]))
                        used.append(counter[0])
                rows.append(_row(budget, int(np.median(used)), errs, precs, time.perf_counter() - t0))
        except Exception as e:  # noqa: BLE001 - recorded, not fatal
            out[key] = {"status": "error", "reason": f"{type(e).__name__}: {e}", "rows": rows}
            log(f"  {key}: error {type(e).__name__}: {e}")
            continue
        out[key] = {"status": "ok", "rows": rows, "to_1pct": budget_to_target(rows),
                    "images": n_img, "seeds": cfg["peer_seeds"]}
        log(f"  {key}: " + ", ".join(f"{r['budget']}:{r['rel_err_mean']:.3g}" for r in rows))
    return out


def budget_to_target(rows, target: float = TARGET) -> dict:
    """Evaluations needed for mean relative error <= target.

    Log-log interpolation between the two measured budgets that bracket the
    target ("interpolated"; "measured" when the first budget already reaches
    it), else a log-log extrapolation.

    Extrapolates only from at least three distinct evaluation counts whose
    error still falls (the last below 0.9x the one before) and at most 100x
    beyond the largest measured count; otherwise the error "levels off".
    """
    for k, r in enumerate(rows):
        if r["rel_err_mean"] <= target:
            prev = rows[k - 1] if k else None
            if prev is None or r["rel_err_mean"] <= 0 or prev["evals_used"] >= r["evals_used"]:
                return {"budget": r["budget"], "evals": r["evals_used"], "how": "measured"}
            # log-log interpolation between the bracketing budgets
            x0, x1 = math.log(prev["evals_used"]), math.log(r["evals_used"])
            y0, y1 = math.log(prev["rel_err_mean"]), math.log(max(r["rel_err_mean"], 1e-12))
            x = x0 + (math.log(target) - y0) * (x1 - x0) / (y1 - y0) if y1 < y0 else x1
            need = math.exp(min(max(x, x0), x1))
            return {"budget": r["budget"], "evals": int(round(need, -2 if need > 1000 else 0)), "how": "interpolated",
                    "bracket": [prev["evals_used"], r["evals_used"]]}
    last = {}
    for r in rows:  # one point per distinct evaluation count (a capped estimator repeats its last)
        if r["rel_err_mean"] > 0:
            last[r["evals_used"]] = r["rel_err_mean"]
    pts = sorted(last.items())[-3:]
    if len(pts) >= 3 and pts[-1][1] < 0.9 * pts[-2][1]:
        x = np.log([p[0] for p in pts])
        y = np.log([p[1] for p in pts])
        slope, icpt = np.polyfit(x, y, 1)
        if slope < -0.1:
            need = math.exp((math.log(target) - icpt) / slope)
            if need <= 100 * pts[-1][0]:
                return {"budget": None, "evals": int(round(need, -2 if need > 1000 else 0)), "how": "extrapolated",
                        "slope": round(float(slope), 3)}
    return {"budget": None, "evals": None, "how": "levels off" if pts else "not reached",
            "last_rel_err": pts[-1][1] if pts else None}


# --------------------------------------------------------------------------- checks and driver


def _check_against_explain(clf, images, seg, M, exact, tables, tree):
    """The lookup game is the explain game: exact values, and one kernel estimate with the same key."""
    import shapjax
    from shapjax.image import maskers

    x = images[:2]
    targets = np.asarray(clf(jnp.asarray(x))).argmax(1)
    kw = dict(segments=seg, masker=maskers.constant(0.0), outputs=targets[:, None])
    ex = shapjax.explain(clf, x, key=jax.random.key(0), method="exact", **kw)
    d_exact = max(rel_err(np.asarray(ex.values)[b, :, 0], exact[b]) for b in range(2))
    ek = shapjax.explain(clf, x, key=jax.random.key(7), method="kernel", n_evals=256, **kw)
    tab = jnp.asarray(tables[:2].T, jnp.float32)
    bits = jnp.asarray(_bits(M), jnp.int32)
    rk = shapjax.shapley(lambda Z: tab[Z.astype(jnp.int32) @ bits], M, key=jax.random.key(7), method="kernel",
                         n_evals=256)
    d_kernel = max(rel_err(np.asarray(rk.values)[:, b], np.asarray(ek.values)[b, :, 0]) for b in range(2))
    return {"explain_exact_vs_table_rel_diff": d_exact, "explain_kernel_vs_table_rel_diff": d_kernel}


def run(*, quick: bool = False, out_dir=None) -> dict:
    """Run the accuracy benchmark; writes ``accuracy[_quick].json`` (backend-independent numbers)."""
    import shapjax
    from shapjax import models
    from shapjax.image import segment

    cfg = QUICK if quick else FULL
    t_start = time.perf_counter()
    clf = models.pretrained("mnist-cnn")
    data = shapjax.data.samples("mnist")
    games = []
    for g in cfg["games"]:
        M, (rows_, cols_) = g["M"], g["grid"]
        images = np.asarray(data.images[: g["n_images"]])
        seg = np.asarray(segment.grid(rows_, cols_)(images[:1]))[0]
        log(f"accuracy: M={M} ({rows_}x{cols_} grid), {len(images)} images: tabulating 2^{M} coalitions each")
        t0 = time.perf_counter()
        tables, targets = value_tables(clf, images, seg, M)
        t_tab = time.perf_counter() - t0
        exact = np.stack([exact_values(tables[b], M) for b in range(len(images))])
        tree = _grid_tree(rows_, cols_, M)
        checks = _check_against_explain(clf, images, seg, M, exact, tables, tree)
        log(f"  tables in {t_tab:.1f}s; checks {checks}")
        ours = run_ours(tables, exact, M, g["budgets"], cfg["seeds"], tree)
        peers = run_peers(tables, exact, M, g["budgets"], cfg)
        games.append({"M": M, "grid": f"{rows_}x{cols_}", "n_images": len(images), "seeds": cfg["seeds"],
                      "targets": targets.tolist(), "tabulate_s": round(t_tab, 2), "checks": checks,
                      "exact_norm_mean": float(np.linalg.norm(exact, axis=1).mean()),
                      "budgets": g["budgets"], "estimators": {**{f"shapjax.{k}": v for k, v in ours.items()},
                                                              **peers}})
    payload = {"mode": "quick" if quick else "full", "backend": backend(),
               "wall_s": round(time.perf_counter() - t_start, 1), "target_rel_err": TARGET,
               "game": "mnist-cnn on shapjax.data.samples('mnist'), grid segments, absent = 0, value = logit of "
                       "the predicted class",
               "notes": [
                   "budget = model evaluations per image, empty and full coalitions included",
                   "evals_used: what the estimator actually spent (shap KernelExplainer stops at 2^M - 2 samples "
                   "and is then exact)",
                   "shapjax.partition estimates Owen values over a spatial hierarchy, which differ from Shapley "
                   "values: its error does not go to 0",
                   "shap KernelExplainer with l1_reg=False; peers see fewer images/seeds than shapjax (see rows' n)",
               ], "games": games}
    name = "accuracy" + ("_quick" if quick else "")
    kw = {"out_dir": out_dir} if out_dir else {}
    path = write_result(name, payload, **kw)
    log(f"accuracy: wrote {path} in {payload['wall_s']} s")
    return payload
