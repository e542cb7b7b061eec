"""The default chunk size of ``explain`` against the best fixed one, side by side in one process.

For each model and input size, ``explain(..., batch_size=None)`` (the probe of
:mod:`shapjax._util.autobatch`, run once and cached before the timing) and
``explain(..., batch_size=b)`` for a sweep of fixed ``b`` are timed in steady
state (compiled first), interleaved repeat by repeat so load changes hit every
setting alike. Goal (issue 20): default time within 1.15x of the best fixed one.

    python -m benchmarks.chunk_size [--quick]
"""
from __future__ import annotations

import argparse
import json
import time

import jax

from benchmarks.common import RESULTS_DIR, backend, write_result

CONFIGS = [
    {"name": "small-cnn 28x28", "arch": "small_cnn", "shape": (28, 28, 1), "B": 4, "grid": 7, "n_evals": 2048,
     "sizes": [16, 32, 64, 128, 256, 512, 1024], "repeats": 3},
    {"name": "small-cnn 64x64", "arch": "small_cnn", "shape": (64, 64, 1), "B": 4, "grid": 8, "n_evals": 2048,
     "sizes": [16, 32, 64, 128, 256, 512], "repeats": 3},
    {"name": "resnet18 32x32", "arch": "resnet18", "shape": (32, 32, 3), "B": 2, "grid": 4, "n_evals": 1024,
     "sizes": [16, 32, 64, 128, 256], "repeats": 2},
    {"name": "resnet50 224x224", "arch": "resnet50", "shape": (224, 224, 3), "B": 1, "grid": 7, "n_evals": 128,
     "sizes": [8, 16, 32, 64], "repeats": 1},
]


def _model(cfg):
    from shapjax import models

    kw = {"num_classes": 10}
    return models.create(cfg["arch"], key=jax.random.key(0), input_shape=cfg["shape"], **kw)


def run(quick: bool = False) -> dict:
    import shapjax
    from shapjax import maskers, segment
    from shapjax._util import autobatch

    rows = []
    for cfg in CONFIGS[:2] if quick else CONFIGS:
        clf = _model(cfg)
        x = jax.random.uniform(jax.random.key(1), (cfg["B"], *cfg["shape"]))
        kw = dict(key=jax.random.key(0), segments=segment.grid(cfg["grid"]), masker=maskers.constant(0.0),
                  method="kernel", n_evals=cfg["n_evals"], outputs="top-1")
        settings = [None] + cfg["sizes"]
        t0 = time.perf_counter()
        shapjax.explain(clf, x, **kw).values.block_until_ready()  # probes (once) and compiles the default
        probe_and_compile_s = time.perf_counter() - t0
        chosen = next(iter(autobatch._MEMO.values())) if len(autobatch._MEMO) == 1 else None
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
               "fixed_s": {str(b): v for b, v in med.items() if b != "default"}}
        autobatch._MEMO.clear()
        print(row, flush=True)
        rows.append(row)
    return {"rows": rows, "goal_ratio": 1.15}


def table(result) -> str:
    out = ["| model | images x evals | default chunk | default s | best fixed chunk | best fixed s | ratio (goal <= 1.15) |",
           "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        out.append(f"| {r['config']} | {r['images']} x {r['n_evals']} | {r['default_batch']} | {r['default_s']:.3g} | "
                   f"{r['best_fixed_batch']} | {r['best_fixed_s']:.3g} | {r['ratio']:.2f} |")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    result = run(quick=args.quick)
    name = f"chunk_size_{backend()}"
    path = write_result(name, result)
    m = json.loads(path.read_text())["machine"]
    md = (f"# Default chunk size against the best fixed one ({m['cpu_model']}, {m['cpu_cores_usable']} cores, "
          f"JAX {m['versions'].get('jax')} {m['jax_backend']}, {m['date'][:10]}, load average at the end "
          f"{m['load_average_end'][0]:.1f})\n\n`explain(method='kernel', outputs='top-1')`, steady state, best of "
          "the interleaved repeats.\n\n" + table(result) + "\n")
    (RESULTS_DIR / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
