"""The ``shapjax`` command line.

Commands:

* ``shapjax explain SOURCE... [options]`` - explain a classifier on image
  files, folders or datasets, streamed through :func:`shapjax.explain_dataset`
  (:mod:`shapjax.cli.explain_job`): the resumable store ``results.zarr``,
  figures of the first images and a JSON summary (``summary.json``, written last).
* ``shapjax demo`` - the same job on the shipped models and sample images.
* ``shapjax models`` / ``shapjax methods`` - what is available, one line each.
* ``shapjax train ...`` / ``shapjax compare ...`` / ``shapjax counterfactual ...`` / ``shapjax amortize ...`` / ``shapjax explore ...`` -
  delegate to :mod:`shapjax.cli.train`, :mod:`shapjax.cli.compare`, :mod:`shapjax.cli.counterfactual` and
  :mod:`shapjax.cli.explore`.

Every error the user can cause (missing or unreadable image, unknown model,
method, masker or segmenter, shape mismatch, bad option values) ends with one
line ``shapjax: error: ...`` on stderr and exit status 2 (1 for an internal
error, 130 when interrupted); ``--debug`` shows the traceback instead. Result files are written to a temporary name and moved
into place (``os.replace``), the JSON summary last, so an interrupted run never
leaves a complete-looking but partial result.

References:
  Lundberg & Lee (2017), "A Unified Approach to Interpreting Model
  Predictions", NeurIPS (the image-plot style of the figures).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

from shapjax.cli.args import seed_arg
from shapjax.cli.jobs import UsageError, positive_fraction_in_mask, resolve_model, run_job, write_json
from shapjax.models.importers.spec import add_model_arguments

PROG = "shapjax"
SUMMARY_NAME = "summary.json"


def _summary_line(s, out) -> str:
    n = s["n_images"]
    return (f"{PROG}: {n} image{'' if n == 1 else 's'}, {s['evaluations']:,} evaluations in {s['seconds']:.1f} s "
            f"({s['evaluations_per_second']:,.0f} evaluations/s) -> {out}")


# --------------------------------------------------------------------------- listings

_ENTRY = re.compile(r"^[A-Z][\w'\-]+, (?:[A-Z]\.[ \-]?)+.*\(\d{4}\)")


def _clean(text: str) -> str:
    text = re.sub(r":math:`([^`]*)`", r"\1", text)
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text)
    return re.sub(r"\s+", " ", text.replace("``", "")).strip()


def _references(doc: str) -> list[str]:
    """The entries of a docstring's ``References:`` section, one string each."""
    lines = doc.split("References:", 1)[1].splitlines() if "References:" in doc else []
    refs: list[str] = []
    for line in lines:
        t = line.strip()
        if not t:
            if refs:
                break
            continue
        if _ENTRY.match(t) or not refs:
            refs.append(t)
        else:
            refs[-1] += " " + t
    return [_clean(r) for r in refs]


def short_reference(ref: str) -> str:
    """``"Castro, J., Gomez, D. & Tejada, J. (2009). ..."`` -> ``"Castro et al. 2009"``."""
    m = re.search(r"\((\d{4})\)", ref)
    authors = ref[: m.start()] if m else ref
    names = re.findall(r"([A-Z][\w'\-]+), (?:[A-Z]\.[ \-]?)+", authors)
    year = m.group(1) if m else ""
    if not names:
        return ref[:40]
    if "et al" in authors or len(names) > 2:
        who = f"{names[0]} et al."
    else:
        who = " & ".join(names)
    return f"{who} {year}".strip()


def method_rows() -> list[tuple[str, str, list[str]]]:
    """``(name, one-line description, [references])`` for every registered method, from the estimator modules."""
    import importlib

    from shapjax.engine.estimators import ESTIMATORS

    rows = []
    for name, est in ESTIMATORS.items():
        doc = importlib.import_module(est.min_evals.__module__).__doc__ or ""
        desc = _clean(doc.strip().splitlines()[0]) if doc.strip() else ""
        refs = _references(doc)
        bullet = re.search(rf'^\* ``"{re.escape(name)}"``:(.*?)(?=^\* |^\s*$)', doc, re.M | re.S)
        if bullet:  # one module, several methods: its own line of the module's list
            text = _clean(bullet.group(1))
            family = desc.split(" of ")[0].split("(")[0].strip()  # "Permutation sampling"
            own = re.split(r"[.:] ", re.sub(r" ?[(][^)]*[)]", "", text))[0].rstrip(".")
            desc = f"{family}: {own}."
            picked = []
            for r in refs:
                m = re.search(r"\((\d{4})\)", r)
                first = re.match(r"[A-Z][\w'\-]+", r)
                if m and first and re.search(rf"{first.group(0)}[^;()]*?{m.group(1)}", text):
                    picked.append(r)
            refs = picked or refs
        rows.append((name, desc, refs))
    return rows


def methods_lines() -> list[str]:
    """One line per method: name, what its values estimate (:data:`ESTIMATORS` ``[name].estimates``), summary, references."""
    from shapjax.engine.estimators import ESTIMATORS

    rows = method_rows()
    w = max(len(r[0]) for r in rows)
    we = max(len(e.estimates) for e in ESTIMATORS.values())
    return [f"{n:<{w}}  {ESTIMATORS[n].estimates:<{we}}  {d}  [{'; '.join(short_reference(r) for r in refs)}]"
            for n, d, refs in rows]


def _accuracy(meta: dict):
    for k in ("heldout_accuracy", "test_accuracy", "accuracy"):
        if isinstance(meta.get(k), (int, float)):
            return {"heldout_accuracy": "held-out ", "test_accuracy": "test "}.get(k, ""), float(meta[k])
    return None


def models_lines() -> list[str]:
    from shapjax import models

    lines = []
    names = models.available()
    w = max([len(n) for n in names] + [4])
    for n in names:
        meta = models.metadata(n)
        shape = "x".join(str(s) for s in meta.get("input_shape", []))
        cls = meta.get("class_names", [])
        shown = ", ".join(cls) if len(", ".join(cls)) <= 40 else ", ".join(cls[:3]) + ", ..."
        acc = _accuracy(meta)
        acc_s = f"{acc[0]}accuracy {100 * acc[1]:.1f}%" if acc else "accuracy n/a"
        pgd = meta.get("pgd_accuracy")
        if isinstance(pgd, dict) and isinstance(pgd.get("accuracy"), (int, float)):
            acc_s += f", PGD-{pgd.get('norm', '?').upper()} eps {pgd.get('eps')}: {100 * pgd['accuracy']:.1f}%"
        params = f", {meta['n_parameters']:,} parameters" if isinstance(meta.get("n_parameters"), int) else ""
        lines.append(f"{n:<{w}}  input {shape:<8}  {len(cls)} classes ({shown})  {acc_s}  "
                     f"[{meta.get('architecture', '?')}{params}]")
    lines.append(f"{'':<{w}}  or a checkpoint path: NAME.msgpack + NAME.json (written by `shapjax train`)")
    return lines


# --------------------------------------------------------------------------- commands

#: The demo jobs: output stem, shipped model, shipped sample set and how many images, and the explain options.
DEMO = (
    dict(stem="demo_mnist", model="mnist-cnn", samples="mnist", n=8, method="kernel", n_evals=1024,
         segments="grid:7x7", masker="constant:0", top_k=2,
         what="mnist-cnn on 8 shipped MNIST test digits: KernelSHAP over a 7x7 grid, absent cells black"),
    dict(stem="demo_planted_patch", model="planted-patch", samples="planted-patch", n=8, method="kernel",
         n_evals=1024, segments="grid:8x8", masker="blur:3", top_k=1,
         what="planted-patch on 8 shipped images: does the explanation land on the planted patch (green outline)?"),
)


def _note(args, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, flush=True)


def _start_output(out) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    stale = out / SUMMARY_NAME  # the summary marks a finished run: never leave an old one beside new files
    if stale.is_file():
        stale.unlink()
    return out


def cmd_explain(args) -> int:
    from shapjax.cli import explain_job

    return explain_job.run(args, prog=PROG)


def cmd_demo(args) -> int:
    from shapjax import data, models

    out = _start_output(args.out)
    print(f"{PROG} demo: writing figures into {out.resolve()}", flush=True)
    quiet = getattr(args, "quiet", False)
    done, t0, evals, n_img = [], time.perf_counter(), 0, 0
    for i, cfg in enumerate(DEMO, 1):
        if cfg["model"] not in models.available():
            print(f"[{i}/{len(DEMO)}] skipped: model {cfg['model']!r} is not shipped with this installation")
            continue
        print(f"[{i}/{len(DEMO)}] {cfg['what']}", flush=True)
        clf = resolve_model(cfg["model"])
        ds = data.samples(cfg["samples"])[: cfg["n"]]
        names = [f"{cfg['samples']} #{j}" for j in range(len(ds))]
        summary, arrays = run_job(
            clf, ds.images, names, method=cfg["method"], n_evals=args.n_evals or cfg["n_evals"],
            segments=cfg["segments"], masker=cfg["masker"], top_k=cfg["top_k"], batch_size=len(ds), seed=args.seed,
            out=out, fig_stem=cfg["stem"], results_name=cfg["stem"] + ".npz", labels=ds.labels, masks=ds.masks,
            progress=not quiet, dpi=90, metadata={"command": args.command_line})
        correct = int((arrays["probs"].argmax(1) == ds.labels).sum())
        line = f"      -> {out / summary['figures'][0]['file']}: top class correct on {correct}/{len(ds)} images"
        summary["top1_correct"] = correct
        if ds.masks is not None:
            frac = positive_fraction_in_mask(arrays["values"], arrays["segments"], ds.masks)
            area = float(np.mean(ds.masks))
            summary.update(positive_fraction_in_mask=[round(float(f), 4) for f in frac],
                           mean_positive_fraction_in_mask=round(float(frac.mean()), 4),
                           mask_area_fraction=round(area, 4))
            line += (f"; {100 * frac.mean():.0f}% of the positive attribution lies inside the planted patch, "
                     f"which covers {100 * area:.0f}% of the image")
        print(line, flush=True)
        done.append(summary)
        evals += summary["evaluations"]
        n_img += summary["n_images"]
    seconds = time.perf_counter() - t0
    total = {"n_images": n_img, "evaluations": evals, "seconds": round(seconds, 3),
             "evaluations_per_second": round(evals / max(seconds, 1e-9), 1), "jobs": done}
    write_json(out / SUMMARY_NAME, total)
    print(_summary_line(total, out), flush=True)
    return 0


def cmd_models(args) -> int:
    print("\n".join(models_lines()))
    return 0


def cmd_methods(args) -> int:
    print("\n".join(methods_lines()))
    return 0


def _delegate(name: str, argv: list[str], *, quiet: bool) -> int:
    """``shapjax train|compare ...`` -> ``shapjax.cli.<name>.main(argv)`` (imported lazily)."""
    import importlib

    try:
        mod = importlib.import_module(f"shapjax.cli.{name}")
    except ModuleNotFoundError as e:
        raise UsageError(f"`{PROG} {name}` needs the package {e.name!r}: pip install 'shapjax[bench]'") from None
    if quiet and name in ("train", "amortize") and "--no-progress" not in argv:
        argv = [*argv, "--no-progress"]
    return int(mod.main(list(argv)) or 0)


_EXPLAIN_EPILOG = """\
sources: files (PNG, JPEG, ...), folders (every image file inside, sorted),
  idx:IMAGES[,LABELS] (MNIST-format files), tfds:NAME:SPLIT[:N] (a prepared
  tensorflow-datasets split, e.g. tfds:mnist:test:16) or samples:NAME[:N]
  (shipped samples: mnist, planted-patch). Images are read as they are
  explained, converted to the model's input: resized to (H, W), grey/RGB to C
  channels, scaled to [0, 1] (a colour-to-grey conversion, a large downscale or
  an aspect-ratio squash is warned about).
segments: grid:RxC (grid:8x8), slic[:N] (slic:50), quickshift[:kernel_size],
  felzenszwalb[:scale].
masker (what an absent segment becomes): constant[:V] (constant:0),
  blur[:SIGMA] (blur:5), segment_mean, mean (the images' mean colour).
outputs in --out: results.zarr (the zarr v3 store: values, std, base_values,
  full_values, output_indexes, model_outputs, segments, images, ids, labels,
  done; read it with shapjax.load_results), figure.png (figure_000.png, ...
  eight images each, for the first --figures images) and summary.json
  (written last: its presence marks a finished run). Rerunning with the same
  --out resumes: only images not done are explained; --overwrite starts over.

example: shapjax explain digit.png --model mnist-cnn --segments grid:7x7 --masker constant:0
"""


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error style of the rest of the CLI."""

    def error(self, message):
        self.exit(2, f"{PROG}: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or notes (the final summary line is still printed)")
    common.add_argument("--no-cache", action="store_true", default=argparse.SUPPRESS,
                        help="do not use the persistent compilation cache (default: on, in $SHAPJAX_CACHE_DIR or "
                             "~/.cache/shapjax/jax; SHAPJAX_NO_CACHE=1 also turns it off)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks instead of one-line errors")
    p = _Parser(prog=PROG, parents=[common],
                description="Explain image classifiers with Shapley values (JAX).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter
    e = sub.add_parser("explain", parents=[common], formatter_class=fmt, epilog=_EXPLAIN_EPILOG,
                       help="explain a classifier's predictions on images; write figures and results",
                       description="Explain a classifier's top classes on images with Shapley values of image "
                                   "segments, streaming the images into a resumable store (results.zarr); write "
                                   "figures of the first images and summary.json.")
    e.add_argument("images", nargs="+", metavar="SOURCE",
                   help="image files, folders, idx:IMAGES[,LABELS], tfds:NAME:SPLIT[:N], samples:NAME[:N]")
    e.add_argument("--model", default="mnist-cnn", help="shipped model name (see `shapjax models`), checkpoint "
                   "path, orbax folder, torch:FILE, keras:FILE, onnx:FILE or module:function (default: mnist-cnn)")
    add_model_arguments(e)
    e.add_argument("--method", default="kernel", help="estimator (see `shapjax methods`; default: kernel), or "
                   "amortized: a trained explainer, one forward pass per image (writes results.npz)")
    e.add_argument("--explainer", default=None, metavar="FILE",
                   help="with --method amortized: an explainer checkpoint from `shapjax amortize` (default: the "
                        "shipped one that matches --model, --segments and --masker)")
    e.add_argument("--n-evals", type=int, default=2048,
                   help="model evaluations per image (default: 2048; with --tol the most it may spend)")
    e.add_argument("--tol", type=float, default=None, metavar="RSE",
                   help="evaluate in rounds until each image's relative standard error is at most RSE "
                        "(e.g. 0.01), or --n-evals is spent; the evaluations spent go to the summary")
    e.add_argument("--round-evals", type=int, default=None,
                   help="evaluations per round with --tol (default: max(256, 4x the method's minimum))")
    e.add_argument("--segments", default="grid:8x8", help="segmenter spec (default: grid:8x8)")
    e.add_argument("--masker", default="blur:5", help="masker spec (default: blur:5)")
    e.add_argument("--top-k", type=int, default=3, help="explain the k most probable classes (default: 3)")
    e.add_argument("--classes", nargs="+", metavar="CLASS", help="explain these classes (names or indexes) instead")
    e.add_argument("--score", choices=("logit", "prob"), default="logit",
                   help="explain the logits or the softmax probabilities (default: logit)")
    e.add_argument("--batch-size", type=int, default=None,
                   help="images per device batch (default: 8 per device)")
    e.add_argument("--model-batch", type=int, default=None, help="composed images per model call (default: auto)")
    e.add_argument("--limit", type=int, default=None, help="explain at most this many images")
    e.add_argument("--no-resize", action="store_true", help="fail on images whose size differs from the model's")
    e.add_argument("--seed", type=seed_arg, default=0, help="PRNG seed (default: 0)")
    e.add_argument("--out", default="shapjax-out", help="output folder (default: ./shapjax-out)")
    e.add_argument("--figures", type=int, default=8, help="figures of the first N images (default: 8; 0 = none)")
    e.add_argument("--overwrite", action="store_true", help="start over instead of resuming the results in --out")
    e.add_argument("--no-store-images", action="store_true", help="do not copy the images into results.zarr")
    e.add_argument("--download", action="store_true", help="let tfds download a dataset that is not prepared")
    e.set_defaults(func=cmd_explain)
    d = sub.add_parser("demo", parents=[common], help="explain the shipped models on the shipped sample images",
                       description="Run the main job on the embedded defaults: the shipped MNIST model on shipped "
                                   "test digits, and the planted-patch model (does the explanation land on the "
                                   "patch?). Writes figures, results and summary.json into --out.")
    d.add_argument("--out", default="shapjax-demo", help="output folder (default: ./shapjax-demo)")
    d.add_argument("--n-evals", type=int, default=None, help="evaluations per image (default: 1024)")
    d.add_argument("--seed", type=seed_arg, default=0, help="PRNG seed (default: 0)")
    d.set_defaults(func=cmd_demo)
    sub.add_parser("models", parents=[common], help="list the shipped models",
                   description="List the shipped models: input shape, classes, accuracy.").set_defaults(func=cmd_models)
    sub.add_parser("methods", parents=[common], help="list the explanation methods with their references",
                   description="List the explanation methods with their paper references."
                   ).set_defaults(func=cmd_methods)
    sub.add_parser("train", add_help=False, help="train a classifier (shapjax train --help)")
    sub.add_parser("compare", add_help=False, help="compare against shap/captum/lime (shapjax compare --help)")
    sub.add_parser("counterfactual", add_help=False, help="sparse counterfactuals (shapjax counterfactual --help)")
    sub.add_parser("amortize", add_help=False,
                   help="train an amortized explainer, FastSHAP (shapjax amortize --help)")
    sub.add_parser("explore", add_help=False,
                   help="a local web page: explanations, 👍/👎, settings learned from feedback (shapjax explore --help)")
    return p


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    if isinstance(e, (UsageError, ValueError, FileNotFoundError)):
        return msg or type(e).__name__
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the ``shapjax`` command line; returns the exit status (0 = success)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if "--no-cache" not in argv:  # a second run starts warm (docs: shapjax._util.compilation_cache)
        from shapjax._util.compilation_cache import enable_compilation_cache

        enable_compilation_cache()
    else:
        argv = [a for a in argv if a != "--no-cache"]
    i = 0
    while i < len(argv) and argv[i] in ("-q", "--quiet", "--debug"):
        i += 1
    try:
        try:
            if i < len(argv) and argv[i] in ("train", "compare", "counterfactual", "amortize", "explore"):
                return _delegate(argv[i], argv[i + 1:], quiet=any(a in ("-q", "--quiet") for a in argv[:i]))
            parser = _parser()
            try:
                args = parser.parse_args(argv)
            except SystemExit as e:  # --help (0) or a usage error (2)
                return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
            if args.command is None:
                parser.print_help()
                return 2
            import shlex

            args.command_line = f"{PROG} " + shlex.join(argv)
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print(f"\n{PROG}: interrupted (finished batches are kept in the store: rerun the same command to "
                  "resume)", file=sys.stderr)
            return 130
    except (UsageError, ValueError, TypeError, OSError) as e:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - never a traceback without --debug
        if debug:
            raise
        print(f"{PROG}: error: internal error: {_one_line(e)} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
