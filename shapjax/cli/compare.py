"""The ``shapjax compare`` command line (:func:`shapjax.compare.cli_main`).

Parses the options, loads the model (a shipped name or a checkpoint) and the
images (``samples:``, ``planted-patch``, ``tfds:``, a folder, ...; converted to
the model's input shape), runs :func:`shapjax.compare.compare` and writes
``results.csv``, ``results.json`` and ``compare.png``. Errors are one line on
stderr, never a traceback.
"""
from __future__ import annotations

import os
import sys

import jax
import numpy as np

from shapjax.cli.args import seed_arg
from shapjax.evaluation.compare import (
    DEFAULT_METHODS,
    DEFAULT_METRICS,
    METHODS,
    METRICS,
    PEER_METHODS,
    CompareResult,
    compare,
    metric_title,
    resolve_methods,
    resolve_metrics,
)
from shapjax.evaluation.peers import check_peer
from shapjax.models.importers.spec import add_model_arguments, model_options

_USAGE = """shapjax compare --model mnist-cnn|planted-patch|CHECKPOINT --data samples:mnist|samples:planted-patch|
                       planted-patch|tfds:NAME|FOLDER --out DIR [options]"""
_DEFAULT_DATA = {"mnist-cnn": "samples:mnist", "planted-patch": "samples:planted-patch"}
_N_BACKGROUND = 16


class _UsageError(Exception):
    pass


def _parser():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise _UsageError(message)

    p = Parser(prog="shapjax compare", usage=_USAGE, description=(
        "Explain the same images with SHAP estimators, LIME, occlusion and gradient methods (and the peer "
        "libraries shap, captum and lime on the same model, segments and budget), score them with the same "
        "metrics and write results.csv, results.json and compare.png."),
        epilog="methods: " + ", ".join(METHODS) + "  (peers need: pip install \"shapjax[peers]\")\n\nmetrics "
               "('all' for every one, 'default'):\n" + "\n".join(f"  {m:<26s} {metric_title(m)}" for m in METRICS),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist-cnn", help="shipped model name, checkpoint path, orbax folder, "
                   "torch:FILE, keras:FILE, onnx:FILE or module:function (default mnist-cnn)")
    add_model_arguments(p)
    p.add_argument("--data", default=None, help="data source (default: the shipped samples of the model)")
    p.add_argument("--n", type=int, default=8, help="images to explain (default 8)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated methods, 'all' (shapjax's) or 'peers' (" + ", ".join(PEER_METHODS) + ")")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metrics, 'all' or 'default'")
    p.add_argument("--sensitivity-samples", type=int, default=4,
                   help="perturbed copies per image of max-/avg-sensitivity (default 4)")
    p.add_argument("--segments", default="grid:7x7", help="segmenter spec: grid:RxC, slic[:n], quickshift, ...")
    p.add_argument("--masker", default="constant:0",
                   help="constant[:v], blur[:sigma], segment_mean, mean (dataset mean), background[:R]")
    p.add_argument("--n-evals", type=int, default=1024, help="model evaluations per image (default 1024)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=seed_arg, default=0, help="PRNG seed (default 0)")
    p.add_argument("--batch-size", type=int, default=None, help="model inputs per chunk")
    p.add_argument("--max-plot", type=int, default=8, help="images (rows) in compare.png (default 8)")
    p.add_argument("--warmup", action="store_true", help="time each method after a warm-up run (no compile time)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def _load_model(spec: str, **options):
    from shapjax.models.importers import load_model

    try:
        return load_model(spec, **{k: v for k, v in options.items() if v is not None})
    except (FileNotFoundError, TypeError, ImportError) as e:
        raise ValueError(f"--model: {e}") from None


def _load_data(spec: str, n: int, shape, seed: int):
    from shapjax import data

    kind = spec.partition(":")[0]
    if kind not in ("tfds", "folder", "idx", "digits", "skimage", "planted-patch", "samples"):
        if not os.path.isdir(spec):
            raise ValueError(f"--data: {spec!r} is not a folder nor a source ({', '.join(data.SOURCES)})")
        spec, kind = "folder:" + spec, "folder"
    kw = {"size": tuple(shape[:2]), "channels": int(shape[2]), "n": n + _N_BACKGROUND}  # + background images
    if kind == "planted-patch":
        kw["key"] = jax.random.key(seed)
    elif kind not in ("tfds", "folder", "idx"):
        kw["n"] = None
    ds = data.load(spec, **kw)
    if len(ds) < 1:
        raise ValueError(f"--data: {spec!r} has no images")
    return ds


def _masker(spec: str, ds, n: int):
    from shapjax.image import maskers

    name, _, rest = spec.strip().partition(":")
    try:
        if name.strip().lower() != "background":
            return maskers.get_masker(spec, images=ds.images)
        if rest.strip() and not (rest.strip().isdigit() and int(rest) >= 1):
            raise ValueError(f"bad background size in {spec!r}; expected background[:R] with R >= 1")
    except ValueError as e:
        raise ValueError(f"--masker: {e}") from None
    return maskers.background((ds.images[n:] if len(ds) > n else ds.images)[:int(rest or _N_BACKGROUND)])


def _run_cli(argv) -> int:
    from shapjax.image.segment import get_segmenter

    args = _parser().parse_args(list(argv))
    for name in ("n", "n_evals", "max_plot", "batch_size", "sensitivity_samples"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise _UsageError(f"--{name.replace('_', '-')}: expected a positive int, got {v}")
    def methods_ok(s):
        for m in resolve_methods(s, n_segments=1):
            if METHODS[m].library != "shapjax":
                check_peer(m)

    for what, fn in (("methods", methods_ok), ("metrics", resolve_metrics), ("segments", get_segmenter)):
        try:
            fn(getattr(args, what))
        except ValueError as e:
            raise _UsageError(f"--{what}: {e}") from None
    clf = _load_model(args.model, **model_options(args))
    data_spec = args.data or _DEFAULT_DATA.get(args.model)
    if data_spec is None:
        raise _UsageError("--data: required for a checkpoint model")
    ds = _load_data(data_spec, args.n, clf.input_shape, args.seed)
    n = min(args.n, len(ds))
    masker = _masker(args.masker, ds, n)
    res = compare(clf, ds.images[:n], key=jax.random.key(args.seed), methods=args.methods,
                  segments=get_segmenter(args.segments), masker=masker, n_evals=args.n_evals, metrics=args.metrics,
                  masks=None if ds.masks is None else ds.masks[:n],
                  labels=ds.labels[:n] if bool(np.any(ds.labels[:n] >= 0)) else None,
                  background=ds.images[n:n + _N_BACKGROUND] if len(ds) > n else None,
                  metric_options={"sensitivity": {"n_samples": args.sensitivity_samples}},
                  batch_size=args.batch_size, warmup=args.warmup, progress=not args.quiet)
    res.meta.update(model=args.model, data=data_spec, seed=args.seed)
    paths = res.save(args.out, max_images=args.max_plot)
    if not args.quiet:
        print(_summary_text(res) + "\nwrote " + ", ".join(paths.values()))
    return 0


def _summary_text(res: CompareResult) -> str:
    return res.summary_text()


def main(argv=None) -> int:
    """``shapjax compare ...``: returns the exit code (0 ok, 1 error, 2 usage error).

    Errors are printed as one line on stderr, without a traceback.
    """
    try:
        return _run_cli(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        print("shapjax compare: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line, no traceback
        msg = " ".join(str(e).split()) or type(e).__name__
        if not isinstance(e, (_UsageError, ValueError, TypeError, OSError)):
            msg = f"{type(e).__name__}: {msg}"
        hint = " (see shapjax compare --help)" if isinstance(e, _UsageError) else ""
        print(f"shapjax compare: error: {msg}{hint}", file=sys.stderr)
        return 2 if isinstance(e, _UsageError) else 1
