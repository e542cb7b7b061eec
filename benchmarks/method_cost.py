"""What each regression estimator costs the engine: compile time and steady time of one ``shapley`` call.

The accuracy benchmark (``benchmarks.estimators``) says which estimator is most accurate per
evaluation; this one says what that accuracy costs in the engine itself, so that the default
method can be picked from both. The game is a cheap two-layer tanh network on the coalition
vector (its weights passed as data), so the time measured is the engine's: the design, the
game's few flops, and the solve. ``kernel`` and ``leverage`` solve an ``M x M`` weighted least
squares; ``polyshap`` and ``regmc`` fit an order-3 polynomial, an ``F x F`` system (``F = M +
C(M,2) + C(M,3)``) or, when the features outnumber the rows, an ``N x N`` one.

For each ``(M, n_evals)`` and method: the first call (compilation included) and the best of
three further calls with new keys (steady state), both until the values are on the host; a
budget refused by the memory check is recorded as refused.

    python -m benchmarks.method_cost [--quick] [--out DIR]
"""
from __future__ import annotations

import time

import jax
import numpy as np

from benchmarks.common import log, machine_line, main_quick, network_game

METHODS = ("kernel", "leverage", "polyshap", "regmc")
FULL = [(16, 1024), (16, 8192), (32, 4096), (64, 4096), (64, 8192), (256, 4096), (1024, 4096)]
QUICK = [(16, 1024), (64, 4096)]


def run(*, quick: bool = False) -> dict:
    import shapjax

    rows = []
    for M, n in QUICK if quick else FULL:
        g = network_game(M, M, n_outputs=1)
        for method in METHODS:
            call = lambda s: np.asarray(shapjax.shapley(g, M, method=method, n_evals=n,  # noqa: E731
                                                        key=jax.random.key(s)).values)
            row = {"M": M, "n_evals": n, "method": method}
            try:
                t0 = time.perf_counter()
                call(0)
                row["first_s"] = time.perf_counter() - t0
                ts = []
                for s in (1, 2, 3):
                    t0 = time.perf_counter()
                    call(s)
                    ts.append(time.perf_counter() - t0)
                row["steady_s"] = min(ts)
            except ValueError as e:  # the memory check refused the budget
                row["refused"] = str(e)[:200]
            rows.append(row)
            log(f"method_cost: {row}")
    return {"rows": rows, "methods": list(METHODS)}


def markdown(machine: dict, out: dict) -> str:
    lines = [f"# Engine cost per regression estimator ({machine_line(machine)})", "",
             "`python -m benchmarks.method_cost`: one `shapjax.shapley` call on a cheap network game (the time is the "
             "engine's). `first`: compilation included; `steady`: best of 3 calls with new keys; in parentheses the "
             "ratio to `kernel` at the same (M, n_evals).", "",
             "| M | n_evals | " + " | ".join(f"{m} first s | {m} steady s" for m in out["methods"]) + " |",
             "|---|---|" + "---|---|" * len(out["methods"])]
    by = {(r["M"], r["n_evals"], r["method"]): r for r in out["rows"]}
    for M, n in dict.fromkeys((r["M"], r["n_evals"]) for r in out["rows"]):
        base = by.get((M, n, "kernel"), {})
        cells = []
        for m in out["methods"]:
            r = by.get((M, n, m), {})
            if "refused" in r:
                cells += ["refused (memory)", ""]
                continue
            ratio = (f" ({r['steady_s'] / base['steady_s']:.1f}x)" if m != "kernel" and base.get("steady_s") else "")
            cells += [f"{r.get('first_s', float('nan')):.2f}", f"{r.get('steady_s', float('nan')):.3f}{ratio}"]
        lines.append(f"| {M} | {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main_quick(__doc__, "method_cost_cpu", run, markdown)
