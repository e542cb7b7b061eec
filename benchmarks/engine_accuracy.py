"""Accuracy of every estimator against exact enumeration on M = 16 player games.

Relative L2 error ``||phi_hat - phi|| / ||phi||`` averaged over seeds, for
several budgets, on two games: a random two-layer network over the coalition
vector (interactions everywhere) and a weighted voting game (highly
non-additive). Writes ``benchmarks/results/engine_accuracy.json`` and
``engine_accuracy.md``.

    python -m benchmarks.engine_accuracy [--quick]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

import shapjax
from shapjax.engine.games import (
    brute_force_shapley,
    random_network_game,
    weighted_voting_game,
)

try:
    from benchmarks.machine import machine_info
except Exception:  # pragma: no cover - fallback when run standalone
    def machine_info():
        import platform

        return {"platform": platform.platform(), "jax": jax.__version__, "backend": jax.default_backend()}

METHODS = ["kernel", "leverage", "permutation", "antithetic", "stratified", "partition", "lime"]
RESULTS = Path(__file__).resolve().parent / "results"


def games(M: int):
    rng = np.random.default_rng(0)
    w = rng.integers(1, 9, size=M).astype(np.float32)
    return {
        "random_network": random_network_game(M, key=jax.random.key(0), n_outputs=1, hidden=32),
        "weighted_voting": weighted_voting_game(w, float(w.sum()) / 2),
    }


def run(quick: bool = False):
    M = 16
    budgets = [256, 1024, 4096] if quick else [256, 512, 1024, 2048, 4096, 8192, 16384]
    seeds = 5 if quick else 20
    rows = []
    for gname, g in games(M).items():
        exact = brute_force_shapley(g, M).reshape(M, -1)
        for method in METHODS:
            for n in budgets:
                errs = []
                t0 = time.perf_counter()
                for s in range(seeds):
                    r = shapjax.shapley(g, M, key=jax.random.key(s), method=method, n_evals=n)
                    v = np.asarray(r.values).reshape(M, -1)
                    errs.append(float(np.linalg.norm(v - exact) / np.linalg.norm(exact)))
                rows.append({
                    "game": gname, "method": method, "n_evals": n, "used_evals": int(r.n_evals),
                    "rel_l2_mean": float(np.mean(errs)), "rel_l2_std": float(np.std(errs)),
                    "seeds": seeds, "seconds": time.perf_counter() - t0,
                })
                print(f"{gname:16s} {method:12s} {n:6d}  rel L2 {np.mean(errs):.4f}", flush=True)
    out = {"benchmark": "engine_accuracy", "n_players": M, "quick": quick, "machine": machine_info(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engine_accuracy.json").write_text(json.dumps(out, indent=2))
    (RESULTS / "engine_accuracy.md").write_text(markdown(out))
    return out


def markdown(out) -> str:
    rows = out["rows"]
    budgets = sorted({r["n_evals"] for r in rows})
    lines = [
        f"# Estimator accuracy vs exact enumeration (M = {out['n_players']})",
        "",
        f"Mean relative L2 error over {rows[0]['seeds']} seeds. `partition` converges to the Owen value "
        "(not the Shapley value) and `lime` is not a Shapley estimator: both are shown for reference.",
        "",
    ]
    for game in sorted({r["game"] for r in rows}):
        lines += [f"## {game}", "", "| method | " + " | ".join(map(str, budgets)) + " |",
                  "|---|" + "---|" * len(budgets)]
        for method in METHODS:
            cells = []
            for n in budgets:
                r = [x for x in rows if x["game"] == game and x["method"] == method and x["n_evals"] == n]
                cells.append(f"{r[0]['rel_l2_mean']:.4f}" if r else "")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    m = out["machine"]
    lines.append(f"Machine: {json.dumps(m)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    run(ap.parse_args().quick)
