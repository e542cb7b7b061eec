"""The ratio of ``explain`` to the forward-pass ceiling as the number of players grows (issue 20).

One 64x64 grey image, a narrow small CNN (``shapjax.models.small_cnn(input_shape=(64, 64, 1),
widths=(8, 16, 32), hidden=64)``, random weights: light, so the engine's share shows), grid segments
M = 16, 64, 256, 1024, 4096, KernelSHAP and Leverage SHAP, ``outputs='top-1'``, a budget of
``2 M + 2 + 1024`` evaluations (the minimum plus 1024 sampled coalitions). Side by side in one process, each program compiled first:

* ``explain``: the steady-state time of ``shapjax.explain``;
* ``ceiling``: the jitted forward pass over the same number of images (``used + 1``: the coalitions
  and the top-1 pass) at the chunk size ``explain`` used, from one batch's time;
* the two are timed in turn (one explain call, then the batch three times, best of three), repeated,
  and ``ratio`` is the median of the per-repeat ratios: this machine's load comes in bursts of a
  second or more, which shifted a median of explain calls taken apart from the ceiling by up to 30 %;
* the engine's share: ``design`` (the coalitions built from the layout, alone in a program),
  ``solve`` (the regression with its standard errors on stored values, alone), and ``compose`` =
  ``explain`` with a trivial model (the mean of the image) minus design and solve — masks, image
  composition and the chunk loop.

Goal: ``ratio = explain / ceiling <= 1.2`` at M <= 1024. Run: ``python -m benchmarks.ceiling [--quick]``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks.common import log, machine_line, main_quick, median, steady_seconds, timed

GRIDS = (4, 8, 16, 32, 64)
QUICK_GRIDS = (4, 16)
METHODS = ("kernel", "leverage")


def _time(fn, repeats: int) -> float:
    return steady_seconds(fn, repeats=repeats, statistic="median")  # after the compile + first run


def _paired(explain, batch, repeats: int):
    """Median explain seconds, median batch seconds and the median of the per-repeat ratios
    ``explain / batch``, each repeat one explain call followed by the best of three batch calls."""
    timed(explain)
    timed(batch)  # compiled and run once each
    te, tb = [], []
    for _ in range(repeats):
        te.append(timed(explain)[0])
        tb.append(min(timed(batch)[0] for _ in range(3)))
    return median(te), median(tb), median([e / b for e, b in zip(te, tb)])


def run(quick: bool = False) -> dict:
    import shapjax
    from shapjax import maskers, models
    from shapjax.engine.estimators import ESTIMATORS
    from shapjax.engine.estimators import layout as L
    from shapjax.engine.estimators.layout import bucket

    clf = models.small_cnn(key=jax.random.key(0), input_shape=(64, 64, 1), widths=(8, 16, 32), hidden=64)
    x = jax.random.uniform(jax.random.key(1), (1, 64, 64, 1))
    trivial = lambda imgs: jnp.broadcast_to(imgs.mean(axis=(1, 2, 3))[:, None], (imgs.shape[0], 10))  # noqa: E731
    fwd = jax.jit(clf.apply)
    rows = []
    for g in (QUICK_GRIDS if quick else GRIDS):
        M = g * g
        n = 2 * M + 2 + 1024
        repeats = 7 if M <= 1024 else 2
        for method in METHODS:
            est = ESTIMATORS[method]
            kw = dict(segments=shapjax.segment.grid(g, g), masker=maskers.constant(0.0), method=method,
                      outputs="top-1", n_evals=n)
            t_trivial = _time(lambda: shapjax.explain(trivial, x, key=jax.random.key(2), **kw).values, repeats)
            used = est.used_evals(M, n)
            lay, st = est.layout(M, n, n_rows=bucket(used - 2))
            design = jax.jit(lambda k, lay: L.build(M, lay, st, key=k).coalitions)
            t_design = _time(lambda: design(jax.random.key(3), lay), repeats)
            d = L.build(M, lay, st, key=jax.random.key(3))
            V = jax.random.normal(jax.random.key(4), (d.coalitions.shape[0] + 2, 1))
            arrays = (d.coalitions, *d.aux[:4], lay)
            solve = jax.jit(lambda Z, w, pr, ps, f, lay, V: L.solve(  # noqa: E731
                type(d)(Z, L.LayoutAux(w, pr, ps, f, st.has_std, lay)), V[2:], V[0], V[1], None))
            t_solve = _time(lambda: solve(*arrays, V), repeats)
            from shapjax._util.autobatch import choose_batch_size
            from shapjax._util.modelfn import split_model
            from shapjax.engine.games import auto_batch_size

            static_fn, tree = split_model(clf)
            rows_b = st.n_rows + 2
            bs = choose_batch_size(static_fn, tree, (64, 64, 1), rows=rows_b, fallback=auto_batch_size(rows_b, 64 * 64))
            xb = jax.random.uniform(jax.random.key(5), (bs, 64, 64, 1))
            t_explain, t_batch, ratio = _paired(lambda: shapjax.explain(clf, x, key=jax.random.key(2), **kw).values,
                                                lambda: fwd(clf.params, xb), repeats)
            t_ceiling = (used + 1) / bs * t_batch
            row = {"M": M, "method": method, "n_evals": n, "used_evals": used, "bucket_rows": st.n_rows,
                   "chunk": bs, "explain_s": t_explain, "ceiling_s": t_ceiling, "ratio": ratio * bs / (used + 1),
                   "engine_s": t_trivial, "design_s": t_design, "solve_s": t_solve,
                   "compose_s": max(t_trivial - t_design - t_solve, 0.0),
                   "engine_share": t_trivial / t_explain, "repeats": repeats}
            rows.append(row)
            log(f"M={M} {method}: explain {t_explain:.3f} s, ceiling {t_ceiling:.3f} s, ratio {row['ratio']:.2f}; "
                f"engine {t_trivial:.3f} s (design {t_design:.3f}, solve {t_solve:.3f})")
    return {"rows": rows, "quick": quick, "goal": "ratio <= 1.2 at M <= 1024"}


def markdown(m: dict, res: dict) -> str:
    lines = [f"# explain against the forward-pass ceiling by number of players ({machine_line(m)})", "",
             "narrow small CNN (widths 8, 16, 32) on one 64x64 image, grid segments, `outputs='top-1'`, budget "
             "2M + 2 + 1024; steady-state "
             "seconds, medians of the repeats (7 up to M = 1024, 2 above); explain and the ceiling's one batch timed in turn in each repeat, "
             "`ratio` the median of the per-repeat ratios (the load here comes in bursts). `engine` = explain with a trivial model "
             "(design + compose + solve); `compose` = engine - design - solve. Goal: ratio <= 1.2 at M <= 1024.",
             "", "| M | method | evals | explain s | ceiling s | ratio | engine s | design s | solve s | compose s "
             "| engine / explain |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        miss = "" if r["M"] > 1024 or r["ratio"] <= 1.2 else f" (misses by {r['ratio'] / 1.2:.2f}x)"
        lines.append(f"| {r['M']} | {r['method']} | {r['used_evals']} | {r['explain_s']:.3f} | {r['ceiling_s']:.3f} | "
                     f"{r['ratio']:.2f}{miss} | {r['engine_s']:.3f} | {r['design_s']:.4f} | {r['solve_s']:.4f} | "
                     f"{r['compose_s']:.3f} | {r['engine_share']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    main_quick(__doc__, "ceiling_cpu", run, markdown, argv)


if __name__ == "__main__":
    main()
