"""Throughput and overhead of :func:`shapjax.explain` against the model's own ceiling.

For each model and budget, in one process and side by side:

* **explain**: wall time of ``shapjax.explain(model, images, method="kernel",
  n_evals=budget, outputs="top-1")`` in steady state (its program compiled
  ahead of time, compile time reported apart), with the peak memory of the
  call;
* **ceiling**: the plain jitted forward pass ``jax.jit(clf.apply)`` at the
  best batch size found by a sweep, timed right after each explain repeat;
  its time for the same number of images is ``images / measured rate``.

``ratio = explain time / ceiling time`` per repeat (median reported): 1.0
means explaining costs exactly the forward passes it needs. The model
evaluations counted are ``B * (coalitions used + 1)``: the coalitions of the
design (empty and full included) plus the forward pass that picks the top-1
class.

A batch-size sweep of ``explain`` itself (its ``batch_size`` argument against
the default chosen by :func:`shapjax.games.auto_batch_size`) is recorded for
the models where it is affordable.
"""
from __future__ import annotations

import math
import time
from typing import Any

import jax

from benchmarks.common import (
    PeakRSS,
    backend,
    compile_explain,
    device_peak_mib,
    log,
    median,
    memory_analysis_mib,
    timed,
    write_result,
)

# Each model: constructor, grid, forward batch sizes to sweep, budgets with repeats, batch scaling, chunk sweep.
# Sized so the full run (with peers and accuracy) fits in about 20-25 minutes on 2 CPU cores.
FULL = {
    "models": [
        {"name": "small-cnn", "build": "small_cnn", "grid": 4, "fwd_batches": [32, 64, 128, 256, 512, 1024, 2048],
         "fwd_repeats": 3, "budgets": {512: 5, 2048: 5, 8192: 3},
         "scaling": {"budget": 512, "B": {1: 5, 8: 3, 64: 2}},
         "sweep": {"budget": 2048, "batch_sizes": [64, 128, 512, 1024, 2048], "repeats": 3}},
        {"name": "resnet18-32", "build": "resnet18", "grid": 4, "fwd_batches": [16, 32, 64, 128, 256],
         "fwd_repeats": 2, "budgets": {512: 2, 2048: 1, 8192: 1}, "scaling": {"budget": 128, "B": {1: 2, 8: 1}},
         "sweep": {"budget": 256, "batch_sizes": [16, 32, 128, 512], "repeats": 1}},
        {"name": "resnet50-224", "build": "resnet50", "grid": 7, "fwd_batches": [8, 16], "fwd_repeats": 1,
         "budgets": {512: 1}, "scaling": None, "sweep": None},
    ],
}
# On an accelerator: bigger batches, every budget for every model.
ACCEL = {
    "models": [
        {"name": "small-cnn", "build": "small_cnn", "grid": 4, "fwd_batches": [256, 1024, 4096], "fwd_repeats": 5,
         "budgets": {512: 10, 2048: 10, 8192: 10}, "scaling": {"budget": 2048, "B": {1: 10, 8: 10, 64: 5}},
         "sweep": {"budget": 8192, "batch_sizes": [256, 1024, 4096], "repeats": 5}},
        {"name": "resnet18-32", "build": "resnet18", "grid": 4, "fwd_batches": [128, 256, 512, 1024],
         "fwd_repeats": 5, "budgets": {512: 5, 2048: 5, 8192: 5}, "scaling": {"budget": 2048, "B": {1: 5, 8: 3, 64: 2}},
         "sweep": {"budget": 8192, "batch_sizes": [128, 256, 512, 1024], "repeats": 3}},
        {"name": "resnet50-224", "build": "resnet50", "grid": 7, "fwd_batches": [32, 64, 128, 256], "fwd_repeats": 3,
         "budgets": {512: 3, 2048: 3, 8192: 2}, "scaling": {"budget": 512, "B": {1: 3, 8: 2}}, "sweep": None},
    ],
}
QUICK = {
    "models": [
        {"name": "small-cnn", "build": "small_cnn", "grid": 4, "fwd_batches": [64, 128, 256, 1024], "fwd_repeats": 2,
         "budgets": {512: 3, 2048: 3}, "scaling": {"budget": 512, "B": {1: 3, 8: 2}},
         "sweep": {"budget": 2048, "batch_sizes": [128, 1024], "repeats": 2}},
        {"name": "resnet18-32", "build": "resnet18", "grid": 4, "fwd_batches": [32, 64], "fwd_repeats": 1,
         "budgets": {256: 1}, "scaling": None, "sweep": None},
    ],
}
MODEL_NOTES = {
    "small-cnn": "shapjax.models.small_cnn (28x28x1, ~65k params), random weights",
    "resnet18-32": "shapjax.models.resnet18 (32x32x3, CIFAR stem, 11.2M params), random weights",
    "resnet50-224": "shapjax.models.resnet50 (224x224x3, ImageNet stem, 25.6M params), random weights, "
                    "7x7 grid (M=49); on CPU only B=1, one budget and one repeat (a CPU runs it at a few images/s)",
}


def _build(name: str):
    from shapjax import models

    return getattr(models, name)(jax.random.key(0))


def _images(clf, B: int, seed: int = 1) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), (B,) + clf.input_shape)


class Ceiling:
    """The jitted forward pass of one model and its measured rates."""

    def __init__(self, clf):
        self.clf = clf
        self.fwd = jax.jit(clf.apply)
        self._x: dict[int, jax.Array] = {}
        self.compile_s: dict[int, float] = {}
        self.memory: dict[int, Any] = {}
        self.first_rate: dict[int, float] = {}

    def _batch(self, bs: int) -> jax.Array:
        if bs not in self._x:
            self._x[bs] = jax.random.uniform(jax.random.key(bs), (bs,) + self.clf.input_shape)
            t0 = time.perf_counter()
            compiled = self.fwd.lower(self.clf.params, self._x[bs]).compile()
            self.compile_s[bs] = time.perf_counter() - t0
            self.memory[bs] = memory_analysis_mib(compiled)
            t0 = time.perf_counter()
            jax.block_until_ready(self.fwd(self.clf.params, self._x[bs]))  # first run (allocations)
            self.first_rate[bs] = bs / (time.perf_counter() - t0)
        return self._x[bs]

    def rate(self, bs: int, n_batches: int = 1) -> float:
        """Images/s over ``n_batches`` back-to-back batches of ``bs`` images."""
        x = self._batch(bs)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            out = self.fwd(self.clf.params, x)
        jax.block_until_ready(out)
        return n_batches * bs / (time.perf_counter() - t0)

    def sweep(self, batch_sizes, repeats: int) -> tuple[int, dict[int, float]]:
        rates = {}
        for bs in batch_sizes:
            self._batch(bs)
        for bs in batch_sizes:
            # Enough batches for ~0.5 s per sample on fast models (one batch on slow ones).
            n = max(1, min(64, int(0.5 * self.first_rate[bs] / bs)))
            rates[bs] = median([self.rate(bs, n) for _ in range(repeats)])
        best = max(rates, key=rates.get)
        return best, rates


def _explain_kwargs(M_grid: int, budget: int, batch_size=None) -> dict:
    from shapjax.image import maskers, segment

    return dict(key=jax.random.key(0), segments=segment.grid(M_grid, M_grid), masker=maskers.constant(0.0),
                method="kernel", n_evals=budget, outputs="top-1", batch_size=batch_size)


def measure(clf, ceiling: Ceiling, best_bs: int, *, B: int, budget: int, grid: int, repeats: int,
            batch_size=None) -> dict:
    """One configuration: compile apart, then ``repeats`` x (explain, ceiling) side by side."""
    import shapjax

    x = _images(clf, B)
    kw = _explain_kwargs(grid, budget, batch_size)
    comp = compile_explain(clf, x, **kw)
    n_used = _used_evals(grid * grid, budget)
    n_images = B * (n_used + 1)
    exp_times, ratios, rates, rss = [], [], [], []
    # The ceiling brackets each explain call: half its images right before, half right after (the whole
    # number of images when that is quick, a quarter or a tenth of them for the long runs).
    est_t = n_images / ceiling.first_rate[best_bs]
    frac = 1.0 if est_t < 5.0 else (0.25 if est_t < 60.0 else 0.1)
    for _ in range(repeats):
        n_half = max(1, math.ceil(frac * n_images / best_bs / 2))
        r_before = ceiling.rate(best_bs, n_half)
        with PeakRSS() as mem:
            t, _ = timed(lambda: shapjax.explain(clf, x, **kw).values)
        r_after = ceiling.rate(best_bs, n_half)
        exp_times.append(t)
        rss.append(mem.peak_delta_mib)
        r = 2.0 / (1.0 / r_before + 1.0 / r_after)  # images/s over both halves
        rates.append(r)
        ratios.append(t / (n_images / r))
    t_med = median(exp_times)
    out = {
        "B": B, "budget": budget, "segments": grid * grid, "method": "kernel", "masker": "constant(0)",
        "evals_per_image": n_used, "model_images": n_images,
        "explain_batch_size": comp["batch_size"],
        "compile_s": round(comp["total_compile_s"], 3), "trace_lower_s": round(comp["trace_lower_s"], 3),
        "explain_s": [round(v, 4) for v in exp_times], "explain_s_median": round(t_med, 4),
        "first_run_s": round(exp_times[0], 4),
        "explanations_per_s": round(B / t_med, 3), "evals_per_s": round(n_images / t_med, 1),
        "ceiling_batch_size": best_bs, "ceiling_rate": [round(v, 1) for v in rates],
        "ceiling_s_median": round(n_images / median(rates), 4),
        "ratio": [round(v, 3) for v in ratios], "ratio_median": round(median(ratios), 3),
        "peak_rss_delta_mib": max(rss), "xla_memory": comp["xla_memory"], "device_peak_mib": device_peak_mib(),
        "repeats": repeats,
    }
    log(f"  B={B} budget={budget} bs={comp['batch_size']}: explain {t_med:.3f}s "
        f"({out['evals_per_s']:.0f} evals/s), ceiling {out['ceiling_s_median']:.3f}s, "
        f"ratio {out['ratio_median']:.2f}, compile {comp['total_compile_s']:.1f}s, rss +{max(rss)} MiB")
    return out


def _used_evals(M: int, budget: int) -> int:
    from shapjax.engine.estimators import get_estimator

    return int(get_estimator("kernel").used_evals(M, budget))


def run(*, quick: bool = False, out_dir=None, models: list[str] | None = None) -> dict:
    """Run the throughput benchmark; writes ``throughput_<backend>[_quick].json``."""
    cfg = QUICK if quick else (FULL if backend() == "cpu" else ACCEL)
    t_start = time.perf_counter()
    results = []
    for m in cfg["models"]:
        if models and m["name"] not in models:
            continue
        log(f"throughput: {m['name']}")
        t0 = time.perf_counter()
        clf = _build(m["build"])
        build_s = time.perf_counter() - t0
        ceiling = Ceiling(clf)
        best_bs, rates = ceiling.sweep(m["fwd_batches"], m["fwd_repeats"])
        log(f"  forward sweep: best batch {best_bs} ({rates[best_bs]:.0f} img/s); "
            + ", ".join(f"{k}:{v:.0f}" for k, v in rates.items()))
        entry = {"model": m["name"], "model_note": MODEL_NOTES[m["name"]], "input_shape": list(clf.input_shape),
                 "init_s": round(build_s, 2),
                 "forward": {"rates_img_per_s": {str(k): round(v, 1) for k, v in rates.items()},
                             "best_batch_size": best_bs,
                             "compile_s": {str(k): round(v, 3) for k, v in ceiling.compile_s.items()},
                             "xla_memory": {str(k): v for k, v in ceiling.memory.items()}},
                 "budgets": [], "scaling": [], "sweep": []}
        for budget, reps in m["budgets"].items():
            entry["budgets"].append(measure(clf, ceiling, best_bs, B=1, budget=budget, grid=m["grid"], repeats=reps))
        if m["scaling"]:
            sc = m["scaling"]
            for B, reps in sc["B"].items():
                prev = [r for r in entry["budgets"] if r["B"] == B and r["budget"] == sc["budget"]]
                entry["scaling"].append(prev[0] if prev else
                                        measure(clf, ceiling, best_bs, B=B, budget=sc["budget"], grid=m["grid"],
                                                repeats=reps))
        if m["sweep"]:
            sw = m["sweep"]
            log(f"  explain batch-size sweep at budget {sw['budget']}")
            for bs in [None] + list(sw["batch_sizes"]):
                prev = [r for r in entry["budgets"] if r["B"] == 1 and r["budget"] == sw["budget"]]
                if bs is None and prev:
                    entry["sweep"].append({**prev[0], "batch_size_arg": "auto"})
                    continue
                r = measure(clf, ceiling, best_bs, B=1, budget=sw["budget"], grid=m["grid"], repeats=sw["repeats"],
                            batch_size=bs)
                r["batch_size_arg"] = bs if bs is not None else "auto"
                entry["sweep"].append(r)
        results.append(entry)
        del clf, ceiling
    payload = {"mode": "quick" if quick else "full", "backend": backend(),
               "wall_s": round(time.perf_counter() - t_start, 1),
               "method": "kernel", "notes": [
                   "ratio = explain wall time / (model images / best plain-forward rate), per repeat, median; the forward "
                   "rate is measured half right before and half right after each explain call",
                   "model images = B * (coalitions used + 1 top-1 forward)",
                   "compile_s is trace+lower+compile of explain's program, ahead of time, not in explain_s",
                   "peak_rss_delta_mib: host RSS growth during the steady-state call (on CPU this includes the "
                   "device buffers); xla_memory is XLA's static buffer estimate (not reliable on CPU)",
               ], "models": results}
    name = f"throughput_{backend()}" + ("_quick" if quick else "")
    kw = {"out_dir": out_dir} if out_dir else {}
    path = write_result(name, payload, **kw)
    log(f"throughput: wrote {path} in {payload['wall_s']} s")
    return payload
