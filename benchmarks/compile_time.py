"""Compile time of every estimator at M <= 64 on this machine, and no recompilation for new game parameters.

For ``shapjax.shapley`` (a two-layer tanh network game on the coalition vector, its weights passed
as data) and for ``shapjax.explain`` (the shipped-architecture small CNN, 28x28, an 8x8 grid = 64
segments, one image), the compiled program of one call is captured and traced+lowered, then
compiled, ahead of time, so the two phases are timed apart (``benchmarks.common``). Then the same
call with *new parameter values* (and a new key) must hit the jit cache: the cache size of the
compiled core before and after is recorded. Goal (issue 13): every estimator compiles in under 5 s
at M <= 64, and a game whose parameters change does not recompile.

    python -m benchmarks.compile_time [--quick]
"""
from __future__ import annotations

import importlib

import jax

from benchmarks.common import (backend, capture_program, compile_explain, compile_timed, machine_line, main_quick,
                               network_game)

GOAL_S = 5.0
N_EVALS = 2048


def _game(M: int, seed: int):
    """The same game structure with parameters drawn from ``seed`` (a new game object every call)."""
    return network_game(M, seed)


def compile_shapley(value_fn, n_players, **kw) -> dict:
    """Trace+lower and compile the program of one ``shapley`` call (captured, ahead of time)."""
    import shapjax

    fn, args, kwargs = capture_program("shapjax.engine.shapley", "_shapley_impl",
                                       lambda: shapjax.shapley(value_fn, n_players, **kw))
    return compile_timed(fn, args, kwargs)[0]


def _recompiles_shapley(M, method, extra) -> int:
    import shapjax
    from shapjax.engine.shapley import _shapley_impl

    shapjax.shapley(_game(M, 0), M, key=jax.random.key(0), method=method, n_evals=N_EVALS, **extra).values \
        .block_until_ready()
    n = _shapley_impl._cache_size()
    shapjax.shapley(_game(M, 1), M, key=jax.random.key(1), method=method, n_evals=N_EVALS, **extra).values \
        .block_until_ready()
    return _shapley_impl._cache_size() - n


SHAPLEY_CASES = [(m, {}) for m in ("exact", "kernel", "leverage", "permutation", "antithetic", "stratified",
                                   "partition", "polyshap", "regmc", "svarm", "lime", "occlusion")] + [
    ("kernel", {"tol": 0.01}), ("permutation", {"tol": 0.01}), ("kernel", {"precision": "float64"})]
EXPLAIN_METHODS = [("kernel", {}), ("leverage", {}), ("permutation", {}), ("partition", {}), ("controlshap", {}),
                   ("kernel", {"tol": 0.01})]


def _label(method, extra):
    return method + "".join(f" {k}={v}" for k, v in extra.items())


def run(quick: bool = False) -> dict:
    import shapjax
    from shapjax import maskers, models, segment

    rows = []
    for M in ([16, 64] if quick else [16, 32, 64]):
        for method, extra in SHAPLEY_CASES:
            if method == "exact" and M > 16:
                continue
            t = compile_shapley(_game(M, 0), M, key=jax.random.key(0), method=method, n_evals=N_EVALS, **extra)
            rec = _recompiles_shapley(M, method, extra) if M == 64 or method == "exact" else None
            rows.append({"api": "shapley", "method": _label(method, extra), "M": M, "n_evals": N_EVALS, **t,
                         "recompiles_on_new_params": rec})
            print(rows[-1], flush=True)
    clf = models.create("small_cnn", key=jax.random.key(0), input_shape=(28, 28, 1), num_classes=10)
    x = jax.random.uniform(jax.random.key(1), (1, 28, 28, 1))
    for method, extra in EXPLAIN_METHODS[:3] if quick else EXPLAIN_METHODS:
        kw = dict(key=jax.random.key(0), segments=segment.grid(8), masker=maskers.constant(0.0), method=method,
                  n_evals=N_EVALS, outputs="top-1", **extra)
        t = compile_explain(clf, x, **kw)
        ex = importlib.import_module("shapjax.image.explain")
        shapjax.explain(clf, x, **kw).values.block_until_ready()
        n = ex._explain_impl._cache_size()
        clf2 = models.create("small_cnn", key=jax.random.key(5), input_shape=(28, 28, 1), num_classes=10)
        shapjax.explain(clf2, x, **{**kw, "key": jax.random.key(3)}).values.block_until_ready()
        rows.append({"api": "explain small-cnn 28x28", "method": _label(method, extra), "M": 64, "n_evals": N_EVALS,
                     "trace_lower_s": t["trace_lower_s"], "compile_s": t["compile_s"],
                     "total_compile_s": t["total_compile_s"],
                     "recompiles_on_new_params": ex._explain_impl._cache_size() - n})
        print(rows[-1], flush=True)
    return {"rows": rows, "goal_s": GOAL_S}


def table(result) -> str:
    out = ["| api | method | M | trace+lower s | compile s | total s | goal <= 5 s | recompiles on new params |",
           "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        tot = r["total_compile_s"]
        ok = "yes" if tot <= GOAL_S else f"**no ({tot / GOAL_S:.1f}x)**"
        rec = "-" if r["recompiles_on_new_params"] is None else str(r["recompiles_on_new_params"])
        out.append(f"| {r['api']} | {r['method']} | {r['M']} | {r['trace_lower_s']:.2f} | {r['compile_s']:.2f} | "
                   f"{tot:.2f} | {ok} | {rec} |")
    return "\n".join(out)


def markdown(m: dict, result: dict) -> str:
    return (f"# Compile time per estimator ({machine_line(m)})\n\n`python -m benchmarks.compile_time`: one program per "
            f"row, traced, lowered and compiled ahead of time (n_evals={N_EVALS}); then the same call with new parameter "
            "values and a new key, counting new cache entries of the compiled core (0 = no recompilation; '-' not "
            "checked). The machine was shared with other jobs: times are upper bounds.\n\n" + table(result) + "\n")


def main(argv=None) -> None:
    main_quick(__doc__, f"compile_time_{backend()}", run, markdown, argv)


if __name__ == "__main__":
    main()
