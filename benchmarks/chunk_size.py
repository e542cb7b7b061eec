"""The default chunk size of ``explain`` against the best fixed one, side by side in one process.

For each model and input size, ``explain(..., batch_size=None)`` (the probe of
:mod:`shapjax._util.autobatch`, run once and cached before the timing) and
``explain(..., batch_size=b)`` for a sweep of fixed ``b`` are timed in steady
state (compiled first), interleaved repeat by repeat so load changes hit every
setting alike. Goal (issue 20): default time within 1.15x of the best fixed one.

    python -m benchmarks.chunk_size [--quick] [--only NAME ...]

Each row records the probe's images/s by batch and its wall time, and the load
average when the row started and ended (the machine is shared).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import time

import jax

from benchmarks.common import RESULTS_DIR, backend, write_result

CONFIGS = [
    {"name": "small-cnn 28x28", "arch": "small_cnn", "shape": (28, 28, 1), "B": 4, "grid": 7, "n_evals": 2048,
     "sizes": [16, 32, 64, 128, 256, 512, 1024], "repeats": 5},
    {"name": "small-cnn 64x64", "arch": "small_cnn", "shape": (64, 64, 1), "B": 4, "grid": 8, "n_evals": 2048,
     "sizes": [16, 32, 64, 128, 256, 512], "repeats": 5},
    {"name": "resnet18 32x32", "arch": "resnet18", "shape": (32, 32, 3), "B": 2, "grid": 4, "n_evals": 1024,
     "sizes": [16, 32, 64, 128, 256], "repeats": 2},
    {"name": "resnet50 224x224", "arch": "resnet50", "shape": (224, 224, 3), "B": 1, "grid": 7, "n_evals": 128,
     "sizes": [8, 16, 32, 64], "repeats": 1},
]


def _model(cfg):
    from shapjax import models

    kw = {"num_classes": 10}
    return models.create(cfg["arch"], key=jax.random.key(0), input_shape=cfg["shape"], **kw)


def run(quick: bool = False, only=None) -> dict:
    import shapjax
    from shapjax import maskers, segment
    from shapjax._util import autobatch

    explain_mod = importlib.import_module("shapjax.image.explain")  # the module, not the function of that name

    picked = []
    real_choose = explain_mod.choose_batch_size

    def recording_choose(*a, **k):  # the chunk explain runs with, probed or the small-job fallback
        picked.append(real_choose(*a, **k))
        return picked[-1]

    explain_mod.choose_batch_size = recording_choose
    rows = []
    configs = CONFIGS[:2] if quick else CONFIGS
    if only:
        unknown = set(only) - {c["name"] for c in CONFIGS}
        if unknown:
            raise SystemExit(f"--only: unknown config(s) {sorted(unknown)}; known: {[c['name'] for c in CONFIGS]}")
        configs = [c for c in CONFIGS if c["name"] in only]
    for cfg in configs:
        load_start = os.getloadavg()[0]
        n_probes = len(autobatch.PROBES)
        clf = _model(cfg)
        x = jax.random.uniform(jax.random.key(1), (cfg["B"], *cfg["shape"]))
        kw = dict(key=jax.random.key(0), segments=segment.grid(cfg["grid"]), masker=maskers.constant(0.0),
                  method="kernel", n_evals=cfg["n_evals"], outputs="top-1")
        settings = [None] + cfg["sizes"]
        t0 = time.perf_counter()
        shapjax.explain(clf, x, **kw).values.block_until_ready()  # probes (once) and compiles the default
        probe_and_compile_s = time.perf_counter() - t0
        chosen = picked[-1]
        probed = autobatch.PROBES[n_probes:]
        for b in settings[1:]:
            shapjax.explain(clf, x, **kw, batch_size=b).values.block_until_ready()  # compile
        times = {b: [] for b in settings}
        for _ in range(cfg["repeats"]):
            for b in settings:
                t = time.perf_counter()
                shapjax.explain(clf, x, **kw, batch_size=b).values.block_until_ready()
                times[b].append(time.perf_counter() - t)
        med = {("default" if b is None else b): min(v) for b, v in times.items()}
        best_b = min((b for b in med if b != "default"), key=lambda b: med[b])
        row = {"config": cfg["name"], "n_evals": cfg["n_evals"], "images": cfg["B"], "default_s": med["default"],
               "default_batch": chosen, "best_fixed_batch": best_b, "best_fixed_s": med[best_b],
               "ratio": med["default"] / med[best_b], "probe_and_first_compile_s": probe_and_compile_s,
               "fixed_s": {str(b): v for b, v in med.items() if b != "default"},
               "probe": None if not probed else {"seconds": probed[-1]["seconds"],
                                                 "images_per_s": {str(b): r for b, r in probed[-1]["rates"].items()}},
               "load_average_start": load_start, "load_average_end": os.getloadavg()[0]}
        autobatch._MEMO.clear()
        print(row, flush=True)
        rows.append(row)
    return {"rows": rows, "goal_ratio": 1.15}


def _load(row) -> str:
    if "load_average_start" not in row:
        return "-"
    return f"{row['load_average_start']:.1f}-{row['load_average_end']:.1f}"


def table(result) -> str:
    goal = result["goal_ratio"]
    out = [f"| model | images x evals | default chunk | probe s (batches tried) | default s | best fixed chunk | "
           f"best fixed s | ratio (goal <= {goal}) | chosen chunk's fixed s / best | load avg start-end |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    misses = []
    for r in result["rows"]:
        pr = r.get("probe")
        fixed_chosen = r["fixed_s"].get(str(r["default_batch"]))
        chosen_ratio = "-" if fixed_chosen is None else f"{fixed_chosen / r['best_fixed_s']:.2f}"
        probe = "-" if "probe" not in r else "no probe (small job)" if pr is None else \
            f"{pr['seconds']:.1f} ({', '.join(pr['images_per_s'])})"
        out.append(f"| {r['config']} | {r['images']} x {r['n_evals']} | {r['default_batch']} | {probe} | "
                   f"{r['default_s']:.3g} | {r['best_fixed_batch']} | {r['best_fixed_s']:.3g} | {r['ratio']:.2f} | "
                   f"{chosen_ratio} | {_load(r)} |")
        if r["ratio"] > goal:
            misses.append(f"{r['config']} misses the goal by {100 * (r['ratio'] / goal - 1):.0f} % "
                          f"({r['ratio']:.2f} against {goal})")
    out.append("")
    out.append("Goal missed: " + "; ".join(misses) + "." if misses else "Every row meets the goal.")
    return "\n".join(out)


def markdown(record: dict) -> str:
    """The results table of a result file's ``record`` (machine line, rows, misses)."""
    m = record["machine"]
    return (f"# Default chunk size against the best fixed one ({m['cpu_model']}, {m['cpu_cores_usable']} cores, "
            f"JAX {m['versions'].get('jax')} {m['jax_backend']}, {m['date'][:10]}, commit {m.get('git_commit')}, "
            f"load average at the end {m['load_average_end'][0]:.1f})\n\n"
            "`explain(method='kernel', outputs='top-1')`, steady state, best of the interleaved repeats. "
            "The probe column: its wall time (compiles included) and the batches it tried. The column "
            "\"chosen chunk's fixed s / best\" times the default's chunk as a fixed batch_size: the same "
            "program as the default, so where it differs from the ratio column, that is timing noise (the "
            "machine is shared: see the load averages).\n\n" + table(record) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", action="append", metavar="NAME", help="run only this config (repeatable)")
    ap.add_argument("--table-only", action="store_true", help="rewrite the markdown table from the JSON result")
    args = ap.parse_args(argv)
    name = f"chunk_size_{backend()}"
    if args.table_only:
        path = RESULTS_DIR / f"{name}.json"
    else:
        path = write_result(name, run(quick=args.quick, only=args.only))
    md = markdown(json.loads(path.read_text()))
    (RESULTS_DIR / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
