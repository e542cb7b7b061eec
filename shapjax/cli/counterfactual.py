"""``shapjax counterfactual``: sparse counterfactuals of images, with figures and the numbers.

    shapjax counterfactual IMAGES... --model mnist-cnn-robust --target next --q 0.975 --out DIR

For each image, :func:`shapjax.counterfactual.fw_l1q` (or ``--method pgd-l1`` /
``pgd-l2``) looks for a perturbation that changes the class: towards ``--target``
(a class name or index for every image, ``next`` = predicted class + 1,
``second`` = the runner-up class, ``none`` = untargeted). ``--out`` receives one
figure per batch (``counterfactual.png``, or ``counterfactual_000.png``, ...:
original, perturbation, result, class probabilities before/after), the arrays
(``counterfactuals.npz``) and ``summary.json`` (per image: classes before and
after, success, L0, L1; written last, so its presence marks a finished run).
Every file is written to a temporary name and moved into place.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from shapjax.cli.jobs import UsageError, check_channels, resolve_model, write_json

PROG = "shapjax counterfactual"
RESULTS_NAME = "counterfactuals.npz"
SUMMARY_NAME = "summary.json"
METHODS = {"fw": "fw_l1q", "pgd-l1": "pgd_l1", "pgd-l2": "pgd_l2"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see `{PROG} --help`)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__.split("\n\n")[0],
                epilog="example: shapjax counterfactual samples:mnist:8 --model mnist-cnn-robust --target next "
                       "--q 0.975 --out cf")
    p.add_argument("images", nargs="+", metavar="IMAGES",
                   help="image files, folders, tfds:NAME:SPLIT[:N], samples:NAME[:N] (as `shapjax explain`)")
    p.add_argument("--model", default="mnist-cnn-robust",
                   help="shipped model name or checkpoint path (default: mnist-cnn-robust)")
    p.add_argument("--method", choices=sorted(METHODS), default="fw",
                   help="fw (FW-L1-q, default), pgd-l1 (PGD onto the L1 ball), pgd-l2 (dense L2 PGD)")
    p.add_argument("--target", default="next", metavar="CLASS|next|second|none",
                   help="class name or index, next (predicted + 1), second (runner-up), none (untargeted); "
                        "default next")
    p.add_argument("--q", type=float, default=0.975, help="fw: sparsity, each step changes a fraction 1-q of the "
                   "pixels (default 0.975)")
    p.add_argument("--dq", type=float, default=0.05, help="fw: q is drawn from U[q-dq, q+dq] (default 0.05)")
    p.add_argument("--eps", type=float, default=None, help="radius (L1 for fw/pgd-l1, L2 for pgd-l2; default "
                   "0.05*H*W*C for L1, 0.15*sqrt(H*W*C) for L2)")
    p.add_argument("--steps", type=int, default=45, help="iterations (default 45)")
    p.add_argument("--loss", choices=("ce", "margin"), default="ce", help="objective (default ce)")
    p.add_argument("--stop-on-success", action="store_true",
                   help="keep each image's first successful iterate (sparser) instead of the last one")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch = per figure (default 8)")
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--no-resize", action="store_true", help="fail on images whose size differs from the model's")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0; batch i uses fold_in(key(seed), i))")
    p.add_argument("--out", default="shapjax-counterfactual", help="output folder (default ./shapjax-counterfactual)")
    p.add_argument("--quiet", action="store_true", help="no progress notes (the final line is still printed)")
    return p


def _target(spec: str, class_names):
    s = spec.strip()
    if s.lower() in ("next", "second"):
        return s.lower()
    if s.lower() == "none":
        return None
    if s in class_names:
        return list(class_names).index(s)
    if s.lstrip("-").isdigit() and 0 <= int(s) < len(class_names):
        return int(s)
    raise UsageError(f"--target: unknown class {spec!r}; expected next, second, none, an index in "
                     f"[0, {len(class_names)}) or one of: {', '.join(class_names)}")


def read_inputs(items, clf, *, resize: bool, limit=None):
    """The IMAGES arguments through the explain job's sources -> ``(images [N, H, W, C], names, labels)``."""
    from shapjax.cli.explain_job import open_inputs

    src = open_inputs(items, clf, resize=resize, limit=limit)
    src.with_shape(clf.input_shape, resize=resize)
    if len(src) == 0:
        raise UsageError("no images to read")
    try:
        batch = src.read(np.arange(len(src)))
    except (ValueError, OSError) as e:
        raise UsageError(" ".join(str(e).split())) from None
    return batch.images.astype(np.float32), [str(i) for i in batch.ids], np.asarray(batch.labels, np.int32)


def _search(method, clf, x, *, key, target, args):
    from shapjax import counterfactual as cfl

    kw = dict(target=target, eps=args.eps, steps=args.steps, loss=args.loss, stop_on_success=args.stop_on_success)
    if method == "fw_l1q":
        return cfl.fw_l1q(clf, x, key=key, q=args.q, dq=args.dq, **kw)
    return cfl.METHODS[method](clf, x, **kw)


def main(argv=None) -> int:
    """Run ``shapjax counterfactual``; returns the exit status. Errors raise ``UsageError`` (one line)."""
    import jax

    from shapjax import plot
    from shapjax._util.io import atomic_write
    from shapjax.counterfactual.plot import counterfactual_figure

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    for name in ("steps", "batch_size", "limit"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if not 0.0 <= args.q <= 1.0:
        raise UsageError(f"--q must lie in [0, 1], got {args.q}")
    if not 0.0 <= args.dq <= 1.0:
        raise UsageError(f"--dq must lie in [0, 1], got {args.dq}")
    if args.eps is not None and not args.eps > 0:
        raise UsageError(f"--eps must be > 0, got {args.eps}")
    method = METHODS[args.method]
    clf = resolve_model(args.model)
    check_channels(clf.input_shape[2], f"model {args.model!r}")
    names_cls = list(clf.class_names)
    target = _target(args.target, names_cls)
    images, names, labels = read_inputs(args.images, clf, resize=not args.no_resize, limit=args.limit)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_NAME).unlink(missing_ok=True)  # the summary marks a finished run
    if not args.quiet:
        print(f"{PROG}: {len(images)} image(s), {args.method} on {args.model}, target {args.target} -> {out}",
              flush=True)
    key = jax.random.key(args.seed)
    N, bs = len(images), args.batch_size
    starts = list(range(0, N, bs))
    parts, figures = [], []
    t0 = time.perf_counter()
    for i, s in enumerate(starts):
        x = images[s:s + bs]
        n = len(x)
        if len(starts) > 1 and n < bs:  # pad the last batch: one compiled program for every batch
            x = np.concatenate([x, np.repeat(x[-1:], bs - n, axis=0)])
        cf = _search(method, clf, x, key=jax.random.fold_in(key, i), target=target, args=args)
        cf = jax.tree_util.tree_map(lambda a: np.asarray(a)[:n], cf)
        name = "counterfactual.png" if len(starts) == 1 else f"counterfactual_{i:03d}.png"
        title = f"{args.method} | {args.model} | target {args.target} | {args.steps} steps" + (
            f" | q {args.q} dq {args.dq}" if method == "fw_l1q" else "")
        fig = counterfactual_figure(cf, x[:n], class_names=names_cls, names=names[s:s + n], max_images=n, title=title)
        plot.save_figure(fig, out / name, dpi=110)
        figures.append({"file": name, "images": list(range(s, s + n))})
        parts.append(cf)
        if not args.quiet and len(starts) > 1:
            print(f"  batch {i + 1}/{len(starts)}: {int(cf.success.sum())}/{n} succeeded", flush=True)
    seconds = time.perf_counter() - t0
    cat = lambda f: np.concatenate([f(p) for p in parts])  # noqa: E731
    tr = lambda field: cat(lambda p: getattr(p.trace, field))  # noqa: E731
    meta = {"command": "shapjax counterfactual " + shlex.join(argv), "model": args.model, "method": method,
            "target": args.target, "q": args.q if method == "fw_l1q" else None,
            "dq": args.dq if method == "fw_l1q" else None, "eps": args.eps, "steps": args.steps, "loss": args.loss,
            "stop_on_success": args.stop_on_success, "seed": args.seed, "class_names": names_cls,
            "targeted": target is not None}
    arrays = dict(images=images, delta=cat(lambda p: p.delta).astype(np.float32),
                  counterfactuals=cat(lambda p: p.counterfactual).astype(np.float32),
                  target=cat(lambda p: p.target).astype(np.int32), probs_before=cat(lambda p: p.probs_before),
                  probs=cat(lambda p: p.probs), success=cat(lambda p: p.success),
                  first_success=cat(lambda p: p.first_success).astype(np.int32),
                  trace_loss=tr("loss"), trace_probs=tr("probs"), trace_l0=tr("l0"), trace_l1=tr("l1"),
                  trace_l2=tr("l2"), trace_success=tr("success"), names=np.asarray(names),
                  labels=np.asarray(labels, np.int32), metadata=np.asarray(json.dumps(meta)))
    atomic_write(out / RESULTS_NAME, lambda f: np.savez_compressed(f, **arrays))
    per = []
    for b in range(N):
        p0, p1 = arrays["probs_before"][b], arrays["probs"][b]
        c0, c1, t = int(p0.argmax()), int(p1.argmax()), int(arrays["target"][b])
        entry = {"name": str(names[b]), "before": {"class": names_cls[c0], "probability": round(float(p0[c0]), 6)},
                 "after": {"class": names_cls[c1], "probability": round(float(p1[c1]), 6)},
                 ("target" if target is not None else "away_from"): names_cls[t],
                 "target_probability": round(float(p1[t]), 6), "success": bool(arrays["success"][b]),
                 "first_success_step": int(arrays["first_success"][b]),
                 "l0": int(arrays["trace_l0"][b, -1]), "l1": round(float(arrays["trace_l1"][b, -1]), 4),
                 "l2": round(float(arrays["trace_l2"][b, -1]), 4)}
        if labels[b] >= 0:
            entry["label"] = names_cls[int(labels[b])]
        per.append(entry)
    ok = int(arrays["success"].sum())
    summary = {**meta, "n_images": N, "n_success": ok, "success_rate": round(ok / N, 4),
               "mean_l0": round(float(arrays["trace_l0"][:, -1].mean()), 2),
               "mean_l1": round(float(arrays["trace_l1"][:, -1].mean()), 4), "seconds": round(seconds, 3),
               "seconds_per_image": round(seconds / N, 4), "results": RESULTS_NAME, "figures": figures,
               "images": per}
    write_json(out / SUMMARY_NAME, summary)
    print(f"{PROG}: {N} image{'' if N == 1 else 's'}, {ok} counterfactual{'' if ok == 1 else 's'} found "
          f"(mean L0 {summary['mean_l0']:.0f}, L1 {summary['mean_l1']:.1f}) in {seconds:.1f} s -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (UsageError, ValueError, TypeError, OSError) as e:
        print(f"shapjax: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(1)
