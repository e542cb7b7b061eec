"""Time to 1 % error, compilation counted: shapjax against shap's PermutationExplainer (issue 19).

The budgets are the evaluations each method needs for a mean relative error of 1 % against exact
Shapley values on the accuracy benchmark's game (``benchmarks/results/accuracy.json``: mnist-cnn,
a 3x4 grid, absent = 0, the logit of the predicted class). Each method then explains one sample
image at that budget in a fresh process, twice: against an empty persistent compilation cache
(``cold``) and against the cache the first process filled (``warm``). Timed in each process: the
first call (compilation included; shap's calls go to the same jitted model, whose compilation
counts too) and the second (steady state). All processes run one after the other in one run.

    python -m benchmarks.time_to_1pct
"""
from __future__ import annotations

import json
import tempfile
import time

from benchmarks.common import RESULTS_DIR, log, machine_line, run_worker, write_report

METHODS = (("shapjax", "kernel"), ("shapjax", "leverage"), ("shapjax", "antithetic"), ("shap", "PermutationExplainer"))
ACC_NAME = {"kernel": "shapjax.kernel", "leverage": "shapjax.leverage", "antithetic": "shapjax.antithetic",
            "PermutationExplainer": "shap.PermutationExplainer"}

_WORKER = r"""
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
import shapjax
from shapjax import maskers, segment
cache, lib, method, budget = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
shapjax.enable_compilation_cache(cache)
clf = shapjax.models.pretrained("mnist-cnn")
x = jnp.asarray(shapjax.data.samples("mnist").images[:1])
seg = np.asarray(segment.grid(3, 4)(x))[0]
M = int(seg.max()) + 1
cls = int(np.argmax(np.asarray(clf(x))[0]))
out = {}
if lib == "shapjax":
    def call(k):
        e = shapjax.explain(clf, x, key=jax.random.key(k), segments=segment.grid(3, 4), masker=maskers.constant(0.0),
                            method=method, n_evals=budget, outputs=[cls])
        return np.asarray(e.values)
else:
    import shap
    fwd = jax.jit(lambda imgs: clf(imgs)[:, cls])
    onehot = jnp.asarray(np.eye(M, dtype=np.float32)[seg])  # [H, W, M]
    @jax.jit
    def compose(Z):
        m = jnp.einsum("hwm,nm->nhw", onehot, Z.astype(jnp.float32))[..., None]
        return x[0][None] * m
    def f(Z):
        return np.asarray(fwd(compose(jnp.asarray(Z))))
    def call(k):
        ex = shap.PermutationExplainer(f, shap.maskers.Independent(np.zeros((1, M)), max_samples=1), seed=k)
        return np.asarray(ex(np.ones((1, M)), max_evals=budget, batch_size=1024, silent=True).values)
for name, k in (("first", 0), ("second", 1)):
    t0 = time.perf_counter()
    call(k)
    out[name] = time.perf_counter() - t0
from shapjax._util import autobatch
out["probe_s"] = sum(p["seconds"] for p in autobatch.PROBES)  # the chunk-size probe, inside the first call
print("RESULT " + json.dumps(out))
"""


def _run(cache, lib, method, budget):
    return run_worker(_WORKER, cache, lib, method, budget, timeout=1200)


def run() -> dict:
    acc = json.loads((RESULTS_DIR / "accuracy.json").read_text())
    est = acc["games"][0]["estimators"]
    rows = []
    for lib, method in METHODS:
        t1 = est[ACC_NAME[method]]["to_1pct"]
        budget = int(t1["evals"])
        with tempfile.TemporaryDirectory(prefix="shapjax-t1-") as cache:
            t0 = time.perf_counter()
            cold = _run(cache, lib, method, budget)
            warm = _run(cache, lib, method, budget)
        row = {"library": lib, "method": method, "evals_to_1pct": budget, "how": t1["how"],
               "cold_first_s": cold["first"], "warm_first_s": warm["first"], "steady_s": warm["second"],
               "cold_second_s": cold["second"], "cold_probe_s": cold.get("probe_s", 0.0),
               "wall_s": time.perf_counter() - t0}
        rows.append(row)
        log(f"{lib} {method} @ {budget}: cold {cold['first']:.2f} s, warm {warm['first']:.2f} s, "
            f"steady {warm['second']:.2f} s")
    write_report("time_to_1pct_cpu", {"rows": rows, "game": acc.get("game"), "M": acc["games"][0]["M"]}, markdown)
    return {"rows": rows}


def markdown(m: dict, res: dict) -> str:
    shap_row = next(r for r in res["rows"] if r["library"] == "shap")
    lines = [f"# Time to 1 % error, compilation counted ({machine_line(m, libs=('shap',))})", "",
             f"Game: {res['game']} (M = {res['M']}). Budget = evaluations to a mean relative error of 1 % "
             "(`accuracy.json`; `~` interpolated or extrapolated there). One image; seconds of the first call in a "
             "fresh process with an empty (`cold`) or filled (`warm`) persistent compilation cache, and of the "
             "second call (`steady`). shap's model calls go to the same jitted model (compiled in its first call).",
             " `probe s`: the chunk-size probe inside the cold first call (shapjax._util.autobatch; kept in the cache "
             "for the warm process).",
             "", "| method | evals to 1 % | cold s | probe s | warm s | steady s | shap Permutation cold / this cold | "
             "warm / warm |", "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['library']}.{r['method']} | {'~' if r['how'] != 'measured' else ''}{r['evals_to_1pct']} | "
                     f"{r['cold_first_s']:.2f} | {r.get('cold_probe_s', 0.0):.2f} | {r['warm_first_s']:.2f} | "
                     f"{r['steady_s']:.3f} | "
                     f"{shap_row['cold_first_s'] / r['cold_first_s']:.2f} | "
                     f"{shap_row['warm_first_s'] / r['warm_first_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.strip().splitlines()[0]).parse_args(argv)  # --help, no options
    run()


if __name__ == "__main__":
    main()
