"""precision="float64", tol= and ControlSHAP, measured (issue 13): the figures the README quotes.

1. Full enumeration in float32 and float64 against the textbook formula in float64 NumPy
   (a 10-player tanh network game whose parameters are float64 data).
2. ``tol=``: evaluations spent and the coverage of the reported ~95 % intervals (64 keys, one vmapped
   program per row) on a 12-player game, for kernel and permutation sampling.
3. ControlSHAP against plain permutation sampling at the same budget: relative error to exact
   enumeration (mean over keys) on the shipped MNIST CNN (grid 3x4 = 12 segments, 4 images, top-1
   logit) and on a near-quadratic model.

    python -m benchmarks.tolerance [--quick]
"""
from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import backend, machine_line, main_quick


def precision_rows(M: int = 10):
    import shapjax

    rng = np.random.default_rng(0)
    W1, b1, W2 = rng.normal(size=(M, 16)) / np.sqrt(M), rng.normal(size=16) * 0.5, rng.normal(size=(16, 3)) / 4
    game = jax.tree_util.Partial(lambda p, z: jnp.tanh(z.astype(jnp.result_type(float)) @ p[0] + p[1]) @ p[2],
                                 (W1, b1, W2))
    r = np.arange(2**M)
    Z = ((r[:, None] >> np.arange(M)[None]) & 1).astype(bool)
    v = np.tanh(Z.astype(np.float64) @ W1 + b1) @ W2
    size, f = Z.sum(1), [math.factorial(k) for k in range(M + 1)]
    ref = np.zeros((M, 3))
    for i in range(M):
        wo = r[~Z[:, i]]
        ref[i] = np.array([f[s] * f[M - s - 1] / f[M] for s in size[wo]]) @ (v[wo | (1 << i)] - v[wo])
    rows = []
    # float64 first: in this process a later float64 call of a game already traced in float32 can come
    # back at float32 accuracy (a JAX 0.10 caching issue seen with x64 switched per call; see shapjax._util.precision)
    for prec in ("float64", "float32"):
        for method in ("exact", "kernel", "leverage"):
            res = shapjax.shapley(game, M, key=jax.random.key(0), method=method, n_evals=2**M, precision=prec)
            err = float(np.abs(np.asarray(res.values, np.float64) - ref).max() / np.abs(ref).max())
            rows.append({"method": method, "precision": prec, "M": M, "max_rel_error": err})
    return rows


def tol_rows(n_keys: int = 64):
    import shapjax
    from shapjax.engine.games import brute_force_shapley, random_network_game

    M = 12
    game = random_network_game(M, key=jax.random.key(4))
    ref = brute_force_shapley(game, M)
    keys = jax.random.split(jax.random.key(7), n_keys)
    rows = []
    for method in ("kernel", "permutation"):
        for tol in (0.05, 0.02, 0.01):
            t0 = time.perf_counter()
            res = jax.vmap(lambda k: shapjax.shapley(game, M, key=k, method=method, n_evals=50_000, tol=tol))(keys)
            jax.block_until_ready(res.values)
            err = np.abs(np.asarray(res.values) - ref[None])
            ev = np.asarray(res.evals)
            rows.append({"method": method, "tol": tol, "M": M, "keys": n_keys, "evals_mean": float(ev.mean()),
                         "evals_min": int(ev.min()), "evals_max": int(ev.max()),
                         "rse_max": float(np.asarray(res.rse).max()),
                         "coverage_95": float(np.mean(err <= 1.96 * np.asarray(res.std))),
                         "seconds": time.perf_counter() - t0})
    return rows


def _near_quadratic():
    rng = np.random.default_rng(1)
    p = tuple(jnp.asarray(rng.normal(size=s), jnp.float32) for s in [(784, 10), (784,), (784,)])

    def f(p, x):
        z = x.reshape(x.shape[0], -1) / 28
        return z @ p[0] + 0.3 * ((z @ p[1]) ** 2)[:, None] + 0.03 * jnp.sin(3 * z @ p[2])[:, None]

    return jax.tree_util.Partial(f, p)


def controlshap_rows(seeds: int = 8):
    import shapjax
    from shapjax import maskers, segment

    x = shapjax.data.samples("mnist").images[:4]
    rows = []
    for name, model in (("mnist-cnn (shipped)", shapjax.models.pretrained("mnist-cnn")),
                        ("near-quadratic model", _near_quadratic())):
        kw = dict(segments=segment.grid(3, 4), masker=maskers.constant(0.0), outputs="top-1")
        exact = np.asarray(shapjax.explain(model, x, key=jax.random.key(0), method="exact", **kw).values)
        for n_evals in (112, 452):
            for method in ("permutation", "controlshap", "stratified", "controlshap-stratified", "kernel"):
                f = jax.jit(lambda k: shapjax.explain(model, x, key=k, method=method, n_evals=n_evals, **kw))
                f(jax.random.key(99)).values.block_until_ready()  # compile
                t0 = time.perf_counter()
                errs = []
                for s in range(seeds):
                    v = np.asarray(f(jax.random.key(s)).values)
                    errs.append(float(np.linalg.norm(v - exact) / np.linalg.norm(exact)))
                rows.append({"model": name, "method": method, "n_evals": n_evals, "M": 12, "images": 4,
                             "rel_error_mean": float(np.mean(errs)), "seconds_per_call": (time.perf_counter() - t0)
                             / seeds})
                print(rows[-1], flush=True)
    return rows


def run(quick: bool = False) -> dict:
    return {"precision": precision_rows(), "tol": tol_rows(16 if quick else 64),
            "controlshap": controlshap_rows(2 if quick else 8)}


def tables(result) -> str:
    out = ["## Full enumeration: float32 against float64 (max error / max |value|)", "",
           "| method | float32 | float64 |", "|---|---|---|"]
    p = {(r["method"], r["precision"]): r["max_rel_error"] for r in result["precision"]}
    for m in ("exact", "kernel", "leverage"):
        out.append(f"| {m} (n_evals = 2**{result['precision'][0]['M']}) | {p[(m, 'float32')]:.1e} | "
                   f"{p[(m, 'float64')]:.1e} |")
    out += ["", "## tol=: evaluations spent and coverage of the ~95 % intervals (12 players, 64 keys)", "",
            "| method | tol | evaluations mean (min-max) | largest rse | coverage |", "|---|---|---|---|---|"]
    for r in result["tol"]:
        out.append(f"| {r['method']} | {r['tol']} | {r['evals_mean']:,.0f} ({r['evals_min']:,}-{r['evals_max']:,}) | "
                   f"{r['rse_max']:.4f} | {r['coverage_95']:.1%} |")
    out += ["", "## ControlSHAP against plain sampling, same budget (relative error to exact, mean over keys)", "",
            "| model | n_evals | permutation | controlshap | stratified | controlshap-stratified | kernel |",
            "|---|---|---|---|---|---|---|"]
    c = {(r["model"], r["n_evals"], r["method"]): r["rel_error_mean"] for r in result["controlshap"]}
    for model, n in sorted({(r["model"], r["n_evals"]) for r in result["controlshap"]}):
        cells = [f"{c[(model, n, m)]:.4f}" for m in ("permutation", "controlshap", "stratified",
                                                     "controlshap-stratified", "kernel")]
        out.append(f"| {model} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def markdown(m: dict, result: dict) -> str:
    return (f"# precision, tol and ControlSHAP ({machine_line(m)})\n\n`python -m benchmarks.tolerance`\n\n"
            + tables(result) + "\n")


def main(argv=None) -> None:
    main_quick(__doc__, f"tolerance_{backend()}", run, markdown, argv)


if __name__ == "__main__":
    main()
