"""``shapjax explain SOURCE... --out DIR``: a whole dataset through :func:`shapjax.explain_dataset`.

Writes ``DIR/results.zarr`` (the resumable store, :mod:`shapjax.pipeline.store`),
figures of the first ``--figures N`` images (``figure.png`` or ``figure_000.png``,
... eight images each) and ``summary.json`` (written last: its presence marks a
finished run). A rerun with the same ``--out`` resumes (only images not done are
explained); ``--overwrite`` starts over; an ``--out`` holding results of other
settings is a usage error naming each difference.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import numpy as np

from shapjax.cli.jobs import UsageError, build_figure, check_specs, class_index, image_summaries, write_json

STORE_NAME = "results.zarr"
SUMMARY_NAME = "summary.json"
PER_FIGURE = 8


class _Say(logging.Handler):
    """The library's warnings, printed in the CLI's one style: ``shapjax: warning: ...``."""

    def emit(self, record):
        print(f"shapjax: warning: {record.getMessage()}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _library_warnings():
    logger = logging.getLogger("shapjax")
    handler = _Say(level=logging.WARNING)
    old, old_prop = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if old == logging.NOTSET or old > logging.WARNING else old)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
        logger.propagate = old_prop


def open_inputs(items, clf, *, resize: bool, limit=None, download: bool = False):
    """The SOURCE arguments as one streaming source; labels kept only where the class names match the model's."""
    from shapjax.pipeline import sources as S

    for item in items:  # check every path first: fail before reading anything
        if not item.startswith(("tfds:", "samples:", "idx:", "folder:")) and not Path(item).exists():
            raise UsageError(f"image file not found: {item}")
    try:
        parts = [S.as_source(item, download=download) for item in items]
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - tfds raises many types
        raise UsageError(f"cannot open {items}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                         ) from None
    for p in parts:
        leaf = p.source if isinstance(p, S.Head) else p
        if leaf.class_names is not None and list(leaf.class_names) != list(clf.class_names) and \
                isinstance(leaf, S.Indexable):
            leaf.labels, leaf.label_key = None, None
    src = parts[0] if len(parts) == 1 else S.Concat(parts)
    return S.Head(src, limit) if limit is not None and limit < len(src) else src


def _outputs(args, n_classes: int, note):
    if args.classes:
        return [class_index(c, args.class_names) for c in args.classes]
    k = int(args.top_k)
    if k > n_classes:
        note(f"--top-k {k} is more than the model's {n_classes} classes: explaining all {n_classes} (clamped)")
        k = n_classes
    return f"top-{k}"


def _bar(total: int, done: int, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, unit="img", desc="explain", disable=quiet, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} images "
                           "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")


def run(args, *, prog: str = "shapjax") -> int:
    """The ``explain`` command (``args`` from :func:`shapjax.cli.app._parser`)."""
    import jax

    from shapjax.cli.jobs import _Probs, check_channels, default_model_batch, resolve_model
    from shapjax.pipeline import SettingsMismatch, explain_dataset, load_results

    if args.method == "amortized":  # a trained explainer: one forward pass per image (shapjax.cli.amortize)
        from shapjax.cli.amortize import run_explain

        return run_explain(args, prog=prog)
    if getattr(args, "explainer", None):
        raise UsageError("--explainer is for --method amortized")
    quiet = getattr(args, "quiet", False)
    note = (lambda m: None) if quiet else (lambda m: print(f"{prog}: note: {m}", file=sys.stderr, flush=True))
    check_specs(args.method, args.segments, args.masker)
    for name in ("n_evals", "top_k", "batch_size", "limit", "model_batch", "round_evals"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    tol = getattr(args, "tol", None)
    if tol is not None and not tol > 0:
        raise UsageError(f"--tol must be > 0 (a relative standard error such as 0.01), got {tol}")
    if getattr(args, "round_evals", None) is not None and tol is None:
        raise UsageError("--round-evals needs --tol")
    if args.figures < 0:
        raise UsageError(f"--figures must be >= 0, got {args.figures}")
    from shapjax.models.importers.spec import model_options

    clf = resolve_model(args.model, **model_options(args))
    check_channels(clf.input_shape[2], f"model {args.model!r}")
    args.class_names = list(clf.class_names)
    for c in args.classes or ():
        class_index(c, clf.class_names)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    n_classes = len(clf.class_names)
    outputs = _outputs(args, n_classes, note)
    with _library_warnings():
        src = open_inputs(args.images, clf, resize=not args.no_resize, limit=args.limit, download=args.download)
        model_fn = clf if args.score == "logit" else _Probs(clf)
        store = out / STORE_NAME
        note(f"explaining {len(src)} image(s) with {args.model} -> {store}")
        state = {"bar": None}

        def progress(p):
            if state["bar"] is None:  # the first batch is written: an old summary must not mark this run finished
                (out / SUMMARY_NAME).unlink(missing_ok=True)
                state["bar"] = _bar(p.total, p.done - p.explained, quiet)
            bar = state["bar"]
            bar.update(p.done - bar.n)
            bar.set_postfix_str(f"{p.evals / max(p.seconds, 1e-9):,.0f} evals/s", refresh=False)

        from shapjax._util.compile_log import CompileLog

        compile_log = CompileLog()
        try:
            with compile_log:
                report = explain_dataset(
                    model_fn, src, key=jax.random.key(args.seed), store=store, segments=args.segments,
                    masker=args.masker, method=args.method, n_evals=args.n_evals, outputs=outputs,
                    batch_size=args.batch_size,
                    model_batch=args.model_batch or default_model_batch(clf.input_shape),
                    store_images=not args.no_store_images, overwrite=args.overwrite, input_shape=clf.input_shape,
                    resize=not args.no_resize, model_name=getattr(clf, "name", None) or str(args.model),
                    progress=progress, extra_settings={"score": args.score}, tol=tol,
                    round_evals=getattr(args, "round_evals", None))
        except SettingsMismatch as e:
            msg = str(e).replace("pass overwrite=True to start over, or choose another store",
                                 "pass --overwrite to start over, or choose another --out")
            raise UsageError(f"--out {out}: {msg}") from None
        except ValueError as e:
            if tol is None or "tol" not in str(e) and "round_evals" not in str(e):
                raise
            raise UsageError(str(e).replace("round_evals=", "--round-evals ").replace("tol=", "--tol ")) from None
        finally:
            if state["bar"] is not None:
                state["bar"].close()
        res = load_results(store)
        figures = write_figures(res, src, clf, args, out, n=min(args.figures, len(res)))
    seconds = report.seconds
    evals = report.evaluations
    # compilation (tracing, lowering, XLA or the persistent cache) against the steady state, the rest
    compile_s = min(compile_log.seconds, seconds)
    steady_s = max(seconds - compile_s, 1e-9)
    s = report.settings
    summary = {"command": args.command_line, "store": STORE_NAME, "n_images": report.total,
               "explained": report.explained, "already_done": report.skipped, "evaluations": evals,
               "seconds": round(seconds, 3), "images_per_second": round(report.images_per_second, 3),
               "evaluations_per_second": round(evals / max(seconds, 1e-9), 1),
               "compile_seconds": round(compile_s, 3), "compilations": compile_log.compiles,
               "compile_cache_hits": compile_log.cache_hits, "steady_seconds": round(steady_s, 3),
               "steady_images_per_second": round(report.explained / steady_s, 3),
               "steady_evaluations_per_second": round(evals / steady_s, 1), "model": s["model"]["name"],
               "method": s["method"], "n_evals": s["used_evals"], "n_evals_asked": s["n_evals"],
               "segments": s["segments"], "masker": s["masker"], "score": args.score, "seed": args.seed,
               "class_names": list(clf.class_names), "shapjax_version": s["shapjax_version"],
               "settings": s, "notes": report.notes, "figures": figures,
               "images": _summaries(res, clf, n=min(len(res), max(args.figures, 100)), score=args.score)}
    if tol is not None:
        summary.update(_tolerance(res, tol))
    write_json(out / SUMMARY_NAME, summary)
    n = report.total
    resumed = f" ({report.skipped:,} already done)" if report.skipped else ""
    cached = f", {compile_log.cache_hits} from the cache" if compile_log.cache_hits else ""
    progs = f"{compile_log.compiles} program{'' if compile_log.compiles == 1 else 's'}{cached}"
    print(f"{prog}: {n:,} image{'' if n == 1 else 's'}{resumed}, {evals:,} evaluations in {seconds:.1f} s: "
          f"compile {compile_s:.1f} s ({progs}), steady state {steady_s:.1f} s "
          f"({report.explained / steady_s:,.1f} images/s, {evals / steady_s:,.0f} evaluations/s) -> {out}", flush=True)
    if tol is not None:
        t = summary["tolerance"]
        print(f"{prog}: --tol {tol:g}: {t['evals_per_image']['mean']:,.0f} evaluations per image (min "
              f"{t['evals_per_image']['min']:,}, max {t['evals_per_image']['max']:,}, cap {args.n_evals:,}); "
              f"{t['reached']:,} of {t['images']:,} images reached it (largest relative standard error "
              f"{t['rse_max']:.3g})", flush=True)
    return 0


def _tolerance(res, tol: float) -> dict:
    """The to-tolerance part of ``summary.json``: evaluations each image spent and the errors reached."""
    done = np.asarray(res.done[...])
    ev = np.asarray(res.evals[...])[done]
    rse = np.asarray(res.rse[...])[done]
    return {"tolerance": {"tol": tol, "images": int(done.sum()), "reached": int(np.sum(rse <= tol)),
                          "rse_max": float(rse.max()) if rse.size else 0.0,
                          "evals_per_image": {"mean": float(ev.mean()) if ev.size else 0.0,
                                              "min": int(ev.min()) if ev.size else 0,
                                              "max": int(ev.max()) if ev.size else 0},
                          "evaluations": int(ev.sum())}}


def _probs(res, rows, score):
    import jax

    logits = np.asarray(res.model_outputs.oindex[rows])
    return logits if score == "prob" else np.asarray(jax.nn.softmax(logits, axis=-1))


def write_figures(res, src, clf, args, out: Path, *, n: int) -> list[dict]:
    """Figures of the first ``n`` images (eight per figure), from the store (images re-read if not stored)."""
    import jax

    from shapjax import plot

    figures = []
    starts = list(range(0, n, PER_FIGURE))
    for i, s in enumerate(starts):
        rows = np.arange(s, min(n, s + PER_FIGURE))
        exp = res[rows]
        if exp.images is None:
            exp = exp.replace(images=jax.numpy.asarray(src.read(rows).images))
        name = "figure.png" if len(starts) == 1 else f"figure_{i:03d}.png"
        title = f"{exp.method} | {exp.masker} | {res.settings['segments']} | {exp.n_evals} evals | {args.score}"
        ids = [str(v) for v in res.ids.oindex[rows]]
        names = [Path(v).name if "#" not in v else v for v in ids]
        fig = build_figure(exp, class_names=clf.class_names, probs=_probs(res, rows, args.score), names=names,
                           labels=np.asarray(res.labels.oindex[rows]), title=title)
        plot.save_figure(fig, out / name, dpi=120)
        K = exp.values.shape[2]
        figures.append({"file": name, "images": rows.tolist(), "rows": len(rows), "panels": len(rows) * (1 + K)})
    return figures


def _summaries(res, clf, *, n: int, score: str) -> list[dict]:
    rows = np.arange(n)
    ids = [str(v) for v in res.ids.oindex[rows]]
    arrays = {"names": [Path(v).name if "#" not in v else v for v in ids], "probs": _probs(res, rows, score),
              "values": np.asarray(res.values.oindex[rows]), "output_indexes": np.asarray(res.output_indexes.oindex[rows]),
              "n_segments": np.asarray(res.n_segments.oindex[rows]), "labels": np.asarray(res.labels.oindex[rows])}
    return image_summaries(arrays, clf.class_names)


__all__ = ["run", "open_inputs", "write_figures", "STORE_NAME", "SUMMARY_NAME"]
