"""``shapjax amortize``: train an amortized explainer (FastSHAP) for a model; and the
``shapjax explain --method amortized`` job (one forward pass per image, no sampling)."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from shapjax.cli.args import seed_arg

PROG = "shapjax"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shapjax amortize",
        description="Train an explainer network (FastSHAP: Shapley-kernel weighted least squares over paired "
                    "coalitions, efficiency by additive normalisation) for a model, segmentation and masker; "
                    "then `shapjax explain --method amortized --explainer OUT` explains each image in one "
                    "forward pass.",
        epilog="example: shapjax amortize --model mnist-cnn --data samples:mnist --segments grid:4x4 "
               "--masker constant:0 --epochs 2 --out digits-explainer")
    p.add_argument("--model", default="mnist-cnn", help="shipped model name, checkpoint path, ... (as in explain)")
    p.add_argument("--data", required=True, help="training images: idx:IMAGES[,LABELS], folder:/path, tfds:NAME, "
                   "planted-patch:SEED, samples:NAME")
    p.add_argument("--split", default=None, help="tfds split of --data")
    p.add_argument("--n", type=int, default=None, help="use the first N images")
    p.add_argument("--segments", default="grid:4x4", help="grid:RxC (default: grid:4x4)")
    p.add_argument("--masker", default="constant:0", help="masker spec (default: constant:0)")
    p.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                   help="explain these classes (indexes; default: every class)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-pairs", type=int, default=4, help="coalition pairs per image per step (default: 4)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--heldout", type=float, default=0.1, help="fraction held out for early stopping")
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--out", required=True, help="explainer checkpoint path (.msgpack; a .json is written beside it)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str]) -> int:
    """``shapjax amortize ...``: 0 on success, 2 on bad arguments or data, 1 if training diverged."""
    import jax

    from shapjax import amortized
    from shapjax import data as data_lib
    from shapjax.cli.jobs import UsageError, resolve_model
    from shapjax.image.maskers import get_masker
    from shapjax.image.segment import get_segmenter

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        clf = resolve_model(args.model)
        H, W, C = clf.input_shape
        ds = data_lib.load(args.data, split=args.split, n=args.n, size=(H, W), channels=C)
        masker = get_masker(args.masker, images=ds.images)
        segments = get_segmenter(args.segments)
        classes = None if args.classes is None else [int(c) for c in args.classes]
        t0 = time.perf_counter()
        res = amortized.train(clf, ds.images, key=jax.random.key(args.seed), segments=segments, masker=masker,
                              outputs=classes, epochs=args.epochs, batch_size=args.batch_size, n_pairs=args.n_pairs,
                              learning_rate=args.lr, heldout=args.heldout, patience=args.patience,
                              progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr, flush=True),
                              metadata={"training_command": "shapjax amortize " + shlex.join(argv),
                                        "data": args.data, "seed": args.seed})
        path = amortized.save(args.out, res.explainer, metadata=res.metadata)
    except FloatingPointError as e:
        print(f"shapjax amortize: error: {e}", file=sys.stderr)
        return 1
    except (UsageError, ValueError, TypeError, FileNotFoundError) as e:
        print(f"shapjax amortize: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(json.dumps({"explainer": str(path), "epochs": len(res.history),
                      "heldout_loss": round(res.metadata["best_heldout_loss"], 6),
                      "model_evaluations": res.metadata["training_model_evals"],
                      "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


def run_explain(args, *, prog: str = PROG) -> int:
    """``shapjax explain --method amortized [--explainer FILE]``: results.npz, figures and summary.json."""
    from shapjax import amortized
    from shapjax.cli.explain_job import SUMMARY_NAME, _outputs, open_inputs
    from shapjax.cli.jobs import UsageError, build_figure, check_channels, resolve_model, write_json
    from shapjax.image.maskers import get_masker
    from shapjax.image.segment import get_segmenter
    from shapjax.models.importers.spec import model_options

    quiet = getattr(args, "quiet", False)
    note = (lambda m: None) if quiet else (lambda m: print(f"{prog}: note: {m}", file=sys.stderr, flush=True))
    if args.score != "logit":
        raise UsageError("--method amortized explains the logits (the explainers are trained on them): drop --score")
    try:
        segments = get_segmenter(args.segments)
    except ValueError as e:
        raise UsageError(f"--segments: {e}") from None
    clf = resolve_model(args.model, **model_options(args))
    check_channels(clf.input_shape[2], f"model {args.model!r}")
    args.class_names = list(clf.class_names)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a folder")
    src = open_inputs(args.images, clf, resize=not args.no_resize, limit=args.limit, download=args.download)
    src.with_shape(tuple(clf.input_shape), resize=not args.no_resize)
    try:
        masker = get_masker(args.masker, images=src.read(np.arange(min(len(src), 256))).images)
    except ValueError as e:
        raise UsageError(f"--masker: {e}") from None
    shape = (1, *clf.input_shape)
    explainer = (amortized.load(args.explainer, clf, masker=masker) if args.explainer
                 else amortized.find(clf, shape, segments=segments, masker=masker))
    note(f"explaining {len(src)} image(s) with {explainer.describe()}")
    outputs = _outputs(args, len(clf.class_names), note)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    parts, ids, labels = [], [], []
    bs = args.batch_size or 256
    for s in range(0, len(src), bs):
        b = src.read(np.arange(s, min(len(src), s + bs)))
        parts.append(amortized.explain(clf, b.images, segments=segments, masker=masker, outputs=outputs,
                                       explainer=explainer))
        ids += [str(i) for i in b.ids]
        labels.append(np.asarray(b.labels))
    seconds = time.perf_counter() - t0
    cat = {f: np.concatenate([np.asarray(getattr(p, f)) for p in parts]) for f in
           ("values", "base_values", "full_values", "output_indexes")}
    import jax

    logits = np.concatenate([np.asarray(clf(p.images)) for p in parts])
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    labels = np.concatenate(labels)
    np.savez_compressed(out / "results.npz", **cat, segments=np.asarray(explainer.segments), ids=np.asarray(ids),
                        labels=labels, model_outputs=logits)
    from shapjax import plot

    figures = []
    n_fig = min(args.figures, len(ids))
    first = np.asarray(parts[0].images) if n_fig <= len(parts[0].images) else \
        np.concatenate([np.asarray(p.images) for p in parts])
    for i, s in enumerate(range(0, n_fig, 8)):
        rows = np.arange(s, min(n_fig, s + 8))
        exp = explainer(first[rows], outputs=outputs)
        name = "figure.png" if n_fig <= 8 else f"figure_{i:03d}.png"
        fig = build_figure(exp, class_names=clf.class_names, probs=probs[rows], names=[ids[r] for r in rows],
                           labels=labels[rows], title=f"amortized | {masker.describe()} | {segments.describe()}")
        plot.save_figure(fig, out / name, dpi=120)
        figures.append({"file": name, "images": rows.tolist()})
    n = len(ids)
    summary = {"command": args.command_line, "results": "results.npz", "n_images": n, "seconds": round(seconds, 4),
               "images_per_second": round(n / max(seconds, 1e-9), 1), "method": "amortized",
               "explainer": explainer.meta, "segments": segments.describe(), "masker": masker.describe(),
               "model_evaluations_per_image": 2, "figures": figures}
    write_json(out / SUMMARY_NAME, summary)
    print(f"{prog}: {n:,} image{'' if n == 1 else 's'} explained by the amortized explainer in {seconds:.2f} s "
          f"(compilation included; 2 model evaluations per image) -> {out}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
