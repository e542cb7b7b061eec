"""``shapjax explore``: a local web page to look at explanations and give 👍/👎.

    shapjax explore SOURCE... --model planted-patch --store feedback/ [--port 8765]

Serves a page on http://127.0.0.1:PORT/ (nothing from the network: the page,
its script and style are package files) that shows one image at a time: the
image, its top-5 classes, the explanation overlay of the selected class under
the setting (method, segmentation, masker) the bandit chose from past feedback,
and why. 👍/👎 and region marks go to SQLite in ``--store`` (committed before
the page is answered; they survive restarts), exportable from the page or from
``GET /api/feedback?format=csv``. Needs ``pip install 'shapjax[explore]'``.
"""
from __future__ import annotations

import argparse
import sys

from shapjax.cli.args import seed_arg
from shapjax.cli.jobs import UsageError, check_channels, resolve_model

PROG = "shapjax explore"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see `{PROG} --help`)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__.split("\n\n")[0],
                epilog="example: shapjax explore samples:planted-patch --model planted-patch --store explorer-store")
    p.add_argument("images", nargs="+", metavar="SOURCE",
                   help="image files, folders, idx:IMAGES[,LABELS], tfds:NAME:SPLIT[:N], samples:NAME[:N]")
    p.add_argument("--model", default="planted-patch",
                   help="shipped model name or checkpoint path (default: planted-patch)")
    p.add_argument("--store", required=True, metavar="DIR", help="folder of the feedback database (feedback.sqlite)")
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default: 8765)")
    p.add_argument("--settings", default=None, metavar="S1,S2,...",
                   help="the settings the bandit chooses from, comma-separated names METHOD|SEGMENTS|MASKER or "
                        "gradcam / ig (default: kernel, leverage, partition, LIME, Grad-CAM, IG)")
    p.add_argument("--policy", choices=("thompson", "uniform"), default="thompson",
                   help="thompson: learn the setting from feedback (default); uniform: random settings")
    p.add_argument("--n-evals", type=int, default=512, help="coalitions per explanation (default: 512)")
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--no-resize", action="store_true", help="fail on images whose size differs from the model's")
    p.add_argument("--seed", type=seed_arg, default=0, help="PRNG seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no server log lines")
    return p


def main(argv=None) -> int:
    """Run ``shapjax explore`` until interrupted; returns the exit status. Errors raise ``UsageError``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    from shapjax.explorer.app import require_web

    try:
        require_web()
    except ImportError as e:
        raise UsageError(str(e)) from None
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be in 1..65535, got {args.port}")
    for name in ("n_evals", "limit"):
        v = getattr(args, name)
        if v is not None and v < 2:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 2, got {v}")
    from shapjax.cli.counterfactual import read_inputs
    from shapjax.explorer import Explorer, parse_setting
    from shapjax.explorer.app import serve

    settings = None
    if args.settings:
        try:
            settings = [parse_setting(s) for s in args.settings.split(",") if s.strip()]
        except ValueError as e:
            raise UsageError(f"--settings: {e}") from None
    clf = resolve_model(args.model)
    check_channels(clf.input_shape[2], f"model {args.model!r}")
    images, names, labels = read_inputs(args.images, clf, resize=not args.no_resize, limit=args.limit)
    try:
        ex = Explorer(clf, images, model_name=args.model, store=args.store, ids=names, labels=labels,
                      settings=settings, policy=args.policy, seed=args.seed, n_evals=args.n_evals)
    except ValueError as e:
        raise UsageError(str(e)) from None
    ex.explainer.probabilities()
    print(f"{PROG}: {len(images)} image{'' if len(images) == 1 else 's'}, model {args.model}, {len(ex.settings)} "
          f"settings ({args.policy}), {len(ex.store)} stored verdicts in {ex.store.path}", flush=True)
    print(f"{PROG}: open http://127.0.0.1:{args.port}/ (Ctrl-C stops)", flush=True)
    try:
        serve(ex, port=args.port, log_level="warning" if args.quiet else "info")
    finally:
        ex.close()
    return 0
