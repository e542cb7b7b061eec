r"""Fewer evaluations for the same accuracy: shapjax's estimators against every peer approximator.

Games (value = one number per coalition, evaluated on the host so that every
estimator, ours and the peers', sees the same game and pays the same
evaluations):

* **sum of unanimity games** (SOUM) at M = 16, 32, 64:
  :math:`v(S) = \sum_b c_b [T_b \subseteq S]`, 50 terms of orders uniform in
  ``1..M/4`` (shapjax.engine.games.sum_of_unanimity_game): exact values in closed form;
* **MNIST image games**: the shipped ``mnist-cnn`` on shipped test digits, a grid
  of segments as players, absent segments 0, the value the logit of the class
  predicted on the whole image. 4x4 grid (M = 16): exact values from all
  :math:`2^{16}` coalitions. 4x8 grid (M = 32): a reference from ``leverage`` at
  ``REF_EVALS`` evaluations, with its own (delta-method) relative standard error.

Estimators: shapjax's ``kernel`` (the default), ``leverage``, ``polyshap``,
``regmc``, ``svarm`` (design and solve of the registry, compiled once per
``(M, budget)`` and shared by the games), and the peers: shapiq 1.4's KernelSHAP,
kADDSHAP (k = 2), SVARM, UnbiasedKernelSHAP (pairing on where offered), shap's
PermutationExplainer and KernelExplainer.

Reported per game and budget: mean relative L2 error
:math:`\|\hat\phi - \phi\|/\|\phi\|` over seeds (and images), the ratio of
shapjax's best to the best peer (goal: <= 0.5), and the evaluations each method
needs for 1 % error (:func:`benchmarks.accuracy.budget_to_target`).

    python -m benchmarks.estimators [--quick]
"""
from __future__ import annotations

import argparse
import json
import time
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.accuracy import _lookup_np, budget_to_target, exact_values, rel_err, value_tables
from benchmarks.common import log, machine_info, write_result

OURS = ["kernel", "leverage", "polyshap", "regmc", "svarm"]
PEERS = ["shapiq.KernelSHAP", "shapiq.kADDSHAP", "shapiq.SVARM", "shapiq.UnbiasedKernelSHAP",
         "shap.PermutationExplainer", "shap.KernelExplainer"]
REF_EVALS = 2**16
GOAL_RATIO = 0.5

# Sized for 2 shared CPU cores (about 25 minutes): compiling one program per estimator and (M, budget) dominates.
FULL = {"seeds": 3, "games": [
    {"kind": "image", "M": 16, "grid": (4, 4), "images": 2, "budgets": [256, 1024, 4096, 8192]},
    {"kind": "soum", "M": 16, "budgets": [256, 1024, 4096, 8192]},
    {"kind": "soum", "M": 32, "budgets": [256, 1024, 4096]},
    {"kind": "soum", "M": 64, "budgets": [256, 1024, 4096]},
    {"kind": "image", "M": 32, "grid": (4, 8), "images": 2, "seeds": 2, "budgets": [256, 1024, 4096, 8192]},
]}
QUICK = {"seeds": 2, "games": [
    {"kind": "soum", "M": 16, "budgets": [256, 1024]},
    {"kind": "image", "M": 16, "grid": (4, 4), "images": 1, "budgets": [256, 1024]},
]}


# --------------------------------------------------------------------------- games (host callables)


def soum_game(M: int, seed: int = 0):
    from shapjax.engine.games import sum_of_unanimity_game

    g, phi = sum_of_unanimity_game(M, key=jax.random.key(seed), n_terms=50, max_order=max(M // 4, 3))
    gj = jax.jit(g)

    def f(Z):
        Z = np.asarray(Z, bool)
        out = [np.asarray(gj(jnp.asarray(Z[i:i + 4096]))) for i in range(0, len(Z), 4096)]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    return f, np.asarray(phi, np.float64)


def cnn_game(clf, image, seg, M: int, target: int, *, chunk: int = 1024):
    """``f(Z [n, M] bool) -> [n]``: the logit of ``target`` with absent segments set to 0."""
    seg_j, img = jnp.asarray(seg), jnp.asarray(image)

    @jax.jit
    def run(Z):
        x = jnp.where(Z[:, seg_j][..., None], img[None], 0.0)
        return clf.apply(clf.params, x)[:, target]

    def f(Z):
        Z = np.asarray(Z, bool)
        out = []
        for i in range(0, len(Z), chunk):
            z = Z[i:i + chunk]
            pad = chunk - len(z)
            zp = np.concatenate([z, np.zeros((pad, M), bool)]) if pad else z
            out.append(np.asarray(run(jnp.asarray(zp)))[:len(z)])
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    return f


# --------------------------------------------------------------------------- estimators


@lru_cache(maxsize=None)
def _compiled(method: str, M: int, n: int):
    from shapjax.engine.estimators import get_estimator

    est = get_estimator(method)
    if est.layout is None:
        design = jax.jit(lambda key: est.design(M, n, key=key).coalitions)
        solve = jax.jit(lambda key, y, v0, v1: est.solve(est.design(M, n, key=key), y, v0, v1, None))
        return design, solve, est.used_evals(M, n)
    # kernel / leverage: the layout travels as an argument, as in shapjax.shapley (built into the program as a
    # constant, XLA constant-folds its gathers: minutes at 2^20 evaluations)
    from shapjax.engine.estimators import layout as L

    lay, static = est.layout(M, n)
    design_j = jax.jit(lambda key, lay: L.build(M, lay, static, key=key).coalitions)
    solve_j = jax.jit(lambda key, lay, y, v0, v1: L.solve(L.build(M, lay, static, key=key), y, v0, v1, None))
    return ((lambda key: design_j(key, lay)), (lambda key, y, v0, v1: solve_j(key, lay, y, v0, v1)),
            est.used_evals(M, n))


def run_ours(method, f, M, n, seed):
    design, solve, used = _compiled(method, M, n)
    key = jax.random.key(1000 + seed)
    Z = np.asarray(design(key))
    ends = f(np.stack([np.zeros(M, bool), np.ones(M, bool)]))
    y = f(Z)
    t0 = time.perf_counter()
    phi, std = solve(key, jnp.asarray(y, jnp.float32)[:, None], jnp.asarray(ends[:1], jnp.float32),
                     jnp.asarray(ends[1:], jnp.float32))
    phi = np.asarray(phi, np.float64)[:, 0]
    solve_s = time.perf_counter() - t0
    return phi, (None if std is None else np.asarray(std, np.float64)[:, 0]), used, solve_s


def run_peer(name, f, M, n, seed):
    counter = [0]

    def g(Z):
        counter[0] += len(Z)
        return f(Z)

    lib, cls = name.split(".")
    if lib == "shapiq":
        import shapiq

        kw = {"pairing_trick": True} if cls in ("KernelSHAP", "kADDSHAP", "UnbiasedKernelSHAP") else {}
        if cls == "kADDSHAP":
            kw["max_order"] = 2
        approx = getattr(shapiq, cls)(n=M, random_state=seed, **kw)
        iv = approx.approximate(budget=n, game=lambda Z: g(np.asarray(Z, bool)))
        return np.asarray(iv.get_n_order_values(1), np.float64), counter[0]
    from benchmarks.accuracy import _peer_values

    v = _peer_values(lib, cls, lambda Z: g(np.asarray(np.round(np.asarray(Z, np.float64)), bool)), M, n, seed,
                     [0])
    return np.asarray(v, np.float64), counter[0]


# --------------------------------------------------------------------------- driver


def _make_games(cfg, ref_evals=REF_EVALS):
    out = []
    clf = data = None
    for g in cfg["games"]:
        M = g["M"]
        if g["kind"] == "soum":
            f, phi = soum_game(M)
            out.append({**g, "name": f"soum M={M}", "instances": [(f, phi, None)]})
            continue
        import shapjax
        from shapjax import models
        from shapjax.image import segment

        if clf is None:
            clf = models.pretrained("mnist-cnn")
            data = shapjax.data.samples("mnist")
        rows, cols = g["grid"]
        images = np.asarray(data.images[: g["images"]])
        seg = np.asarray(segment.grid(rows, cols)(images[:1]))[0]
        targets = np.asarray(clf.apply(clf.params, jnp.asarray(images))).argmax(1)
        inst = []
        for b, img in enumerate(images):
            if M <= 16:
                tables, _ = value_tables(clf, images[b:b + 1], seg, M)
                f = _lookup_np(tables[0], M)
                fz = (lambda f_: lambda Z: np.asarray(f_(np.asarray(Z, bool)), np.float64))(f)
                inst.append((fz, exact_values(tables[0], M), None))
            else:
                f = cnn_game(clf, img, seg, M, int(targets[b]))
                t0 = time.perf_counter()
                ref, std, _, _ = run_ours("leverage", f, M, ref_evals, seed=99)
                ref_err = float(np.linalg.norm(std) / np.linalg.norm(ref))
                log(f"  reference M={M} image {b}: leverage at {ref_evals} evals, rel. s.e. {ref_err:.4f} "
                    f"({time.perf_counter() - t0:.0f}s)")
                inst.append((f, ref, ref_err))
        out.append({**g, "name": f"mnist-cnn {rows}x{cols} M={M}", "instances": inst, "targets": targets.tolist(),
                    "ref_evals": ref_evals})
    return out


def _row(n, errs, used, wall):
    e = np.asarray(errs)
    return {"budget": n, "evals_used": int(np.median(used)), "rel_err_mean": float(e.mean()),
            "rel_err_sem": float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else None, "n": len(e),
            "wall_s_median": float(np.median(wall))}


def run(*, quick: bool = False, out_dir=None, games=None, name=None, ref_evals: int = REF_EVALS) -> dict:
    """Run the benchmark; ``games`` keeps only those keys (``"i16"`` image M=16, ``"s64"`` SOUM M=64, ...)."""
    from benchmarks.peers import _import_error

    cfg = QUICK if quick else FULL
    if games:
        cfg = {**cfg, "games": [g for g in cfg["games"] if f"{g['kind'][0]}{g['M']}" in games]}
    t_start = time.perf_counter()
    games = _make_games(cfg, ref_evals)
    results = []
    for g in games:
        M = g["M"]
        log(f"estimators: {g['name']}")
        res = {}
        for method in [f"shapjax.{m}" for m in OURS] + PEERS:
            lib = method.split(".")[0]
            if lib != "shapjax" and _import_error(lib):
                res[method] = {"status": "skipped", "reason": f"{lib} not installed"}
                continue
            rows = []
            try:
                for n in g["budgets"]:
                    errs, used, wall = [], [], []
                    for f, ref, _ in g["instances"]:
                        for s in range(g.get("seeds", cfg["seeds"])):
                            t0 = time.perf_counter()
                            if lib == "shapjax":
                                phi, _, u, _ = run_ours(method.split(".")[1], f, M, n, s)
                            else:
                                phi, u = run_peer(method, f, M, n, s)
                            wall.append(time.perf_counter() - t0)
                            errs.append(rel_err(phi, ref))
                            used.append(u)
                    rows.append(_row(n, errs, used, wall))
            except Exception as e:  # noqa: BLE001 - recorded, not fatal
                res[method] = {"status": "error", "reason": f"{type(e).__name__}: {e}"[:300], "rows": rows}
                log(f"  {method}: error {type(e).__name__}: {e}"[:300])
                continue
            res[method] = {"status": "ok", "rows": rows, "to_1pct": budget_to_target(rows)}
            log(f"  {method}: " + ", ".join(f"{r['budget']}:{r['rel_err_mean']:.3g}" for r in rows))
        results.append({"game": g["name"], "kind": g["kind"], "M": M, "budgets": g["budgets"],
                        "instances": len(g["instances"]), "seeds": g.get("seeds", cfg["seeds"]),
                        "reference": "exact" if g["instances"][0][2] is None else
                        {"method": "leverage", "evals": g["ref_evals"],
                         "rel_std_err": [inst[2] for inst in g["instances"]]},
                        "estimators": res, "ratios": ratios(res, g["budgets"])})
        _write(quick, out_dir, results, t_start, done=False, name=name)
    return _write(quick, out_dir, results, t_start, done=True, name=name)


def _write(quick, out_dir, results, t_start, *, done, name=None):
    payload = {"complete": done, "mode": "quick" if quick else "full", "wall_s": round(time.perf_counter() - t_start, 1),
               "goal_ratio": GOAL_RATIO, "games": results,
               "notes": ["budget = evaluations including the empty and full coalitions; evals_used what the "
                         "method spent (shapiq counts its own)",
                         "peers get the same host game; shapiq KernelSHAP/kADDSHAP/UnbiasedKernelSHAP with "
                         "pairing_trick=True, kADDSHAP max_order=2",
                         "wall_s_median: one estimate (game evaluations on this CPU included)"]}
    name = name or "estimators" + ("_quick" if quick else "")
    path = write_result(name, payload, **({"out_dir": out_dir} if out_dir else {}))
    path.with_suffix(".md").write_text(markdown(json.loads(path.read_text())))
    log(f"estimators: wrote {path} after {payload['wall_s']} s")
    return payload


def ratios(res, budgets):
    """Per budget: shapjax's best Shapley estimator, the best peer, and the ratio of their errors."""
    out = []
    for i, n in enumerate(budgets):
        def best(prefix):
            c = [(v["rows"][i]["rel_err_mean"], k) for k, v in res.items()
                 if k.startswith(prefix) and v.get("status") == "ok" and len(v["rows"]) > i]
            return min(c) if c else (None, None)

        (eo, mo), (ep, mp) = best("shapjax."), best(("shapiq.", "shap."))
        out.append({"budget": n, "ours": mo, "ours_err": eo, "peer": mp, "peer_err": ep,
                    "ratio": None if eo is None or not ep else eo / ep})
    return out


def markdown(out) -> str:
    m = out["machine"]
    lines = ["# Estimators vs peer approximators at equal evaluations", "",
             f"Mean relative L2 error; goal: shapjax's best at most {out['goal_ratio']}x the best peer. "
             f"Machine: {m.get('cpu_model', '?')}, {m.get('cpu_cores_visible', '?')} cores, JAX "
             f"{m.get('versions', {}).get('jax', '?')}, {m.get('date', '')}, load "
             f"{m.get('load_average_end', '?')}. Run: `python -m benchmarks.estimators`.", ""]
    if not out.get("complete", True):
        lines += ["**Partial run** (stopped at the deadline): the games below are complete, the others of the "
                  "configuration were not reached.", ""]
    for g in out["games"]:
        ref = g["reference"] if g["reference"] == "exact" else (
            f"leverage at {g['reference']['evals']:,} evals, rel. s.e. "
            + ", ".join(f"{x:.4f}" for x in g["reference"]["rel_std_err"]))
        lines += [f"## {g['game']} ({g['instances']} instance(s) x {g['seeds']} seeds; reference: {ref})", "",
                  "| method | " + " | ".join(map(str, g["budgets"])) + " | evals to 1 % |",
                  "|---|" + "---|" * (len(g["budgets"]) + 1)]
        for k, v in g["estimators"].items():
            if v.get("status") != "ok":
                lines.append(f"| {k} | {v.get('status')}: {v.get('reason', '')[:60]} |")
                continue
            cells = [f"{r['rel_err_mean']:.4f}" for r in v["rows"]]
            t = v["to_1pct"]
            cells.append(f"{t['evals']:,} ({t['how']})" if t.get("evals") else t["how"])
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        rr = g["ratios"]
        lines.append("| **ours / best peer** | " + " | ".join(
            f"**{r['ratio']:.2f}** ({r['ours'].split('.')[1]} / {r['peer']})" if r["ratio"] else "" for r in rr) + " | |")
        miss = [r for r in rr if r["ratio"] and r["ratio"] > out["goal_ratio"]]
        lines += ["", ("Goal met at every budget." if not miss else "Goal missed at " + ", ".join(
            f"{r['budget']} ({r['ratio']:.2f}x, {r['ratio'] / out['goal_ratio']:.1f}x over the goal)" for r in miss)
            + "."), ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--games", nargs="*", default=None, help="keys to run: i16 s16 s32 s64 i32 (default: all)")
    ap.add_argument("--ref-evals", type=int, default=REF_EVALS,
                    help="evaluations of the leverage reference for image games beyond M=16 (default 2^16)")
    ap.add_argument("--name", default=None, help="result file name (default: estimators[_quick])")
    a = ap.parse_args()
    run(quick=a.quick, games=a.games, name=a.name, ref_evals=a.ref_evals)
