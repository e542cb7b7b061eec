"""``shapjax train``: train a classifier (optionally adversarially) and save a checkpoint."""
from __future__ import annotations

import argparse
import json
import shlex
import sys

import jax

from shapjax.cli.args import seed_arg
from shapjax.models.adversarial import PGDConfig
from shapjax.models.checkpoint import _paths, load_checkpoint
from shapjax.models.classifier import ARCHITECTURES, create
from shapjax.models.train import train


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shapjax train",
        description="Train an image classifier (optionally adversarially) and save a checkpoint.")
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True, help="training source, e.g. tfds:mnist, folder:/path, "
                   "idx:/path/images.gz,/path/labels.gz, digits, planted-patch:SEED")
    d.add_argument("--split", default=None, help="tfds split of --data (default train)")
    d.add_argument("--n", type=int, default=None, help="use the first N examples (planted-patch: generate N)")
    d.add_argument("--size", type=int, nargs="+", default=None, metavar="PX", help="resize to H [W]")
    d.add_argument("--channels", type=int, choices=(1, 3), default=None)
    d.add_argument("--eval-data", default=None, help="held-out source (default: hold out the end of --data)")
    d.add_argument("--eval-split", default=None, help="tfds split of --eval-data, e.g. test")
    d.add_argument("--eval-n", type=int, default=None, help="first N held-out examples (planted-patch: generate N)")
    d.add_argument("--holdout", type=float, default=0.2,
                   help="without --eval-data: hold out the LAST part of --data (a fraction < 1 or a count)")
    m = p.add_argument_group("model")
    m.add_argument("--arch", default="small_cnn", choices=sorted(ARCHITECTURES))
    m.add_argument("--widths", default=None, help="small_cnn conv widths, e.g. 32,64,64")
    m.add_argument("--init", default=None, help="start from this checkpoint instead of random weights")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--seed", type=seed_arg, default=0)
    t.add_argument("--shift", type=int, default=0, help="random shifts of up to PX pixels")
    t.add_argument("--flip", action="store_true", help="random horizontal flips")
    a = p.add_argument_group("adversarial training (PGD, Madry et al. 2018)")
    a.add_argument("--adversarial", choices=("linf", "l2"), default=None, help="PGD norm (off by default)")
    a.add_argument("--eps", type=float, default=0.1)
    a.add_argument("--pgd-steps", type=int, default=7)
    a.add_argument("--pgd-step-size", type=float, default=None, help="default 2.5 * eps / steps")
    p.add_argument("--out", required=True, help="checkpoint path (.msgpack; a .json is written beside it)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _holdout(ds, holdout: float):
    k = int(round(holdout * len(ds))) if holdout < 1 else int(holdout)
    if not 0 < k < len(ds):
        raise ValueError(f"--holdout: holds out {k} of {len(ds)} examples; need 0 < k < {len(ds)}")
    return ds[: len(ds) - k], ds[len(ds) - k:]


def main(argv: list[str]) -> int:
    """``shapjax train ...``: returns 0 on success, 2 on bad arguments or data."""
    from shapjax import data as data_lib

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help or an argparse error
        return int(e.code or 0)
    k_init, k_train = jax.random.split(jax.random.key(args.seed))
    size = None if args.size is None else (args.size[0] if len(args.size) == 1 else tuple(args.size))
    try:
        def load(source, split, n):
            return data_lib.load(source, split=split, n=n, size=size, channels=args.channels)

        train_ds = load(args.data, args.split, args.n)
        if args.eval_data is not None:
            eval_ds = load(args.eval_data, args.eval_split, args.eval_n)
        else:
            train_ds, eval_ds = _holdout(train_ds, args.holdout)
        if args.init is not None:
            clf = load_checkpoint(args.init)
        else:
            kw = {}
            if args.widths:
                if args.arch != "small_cnn":
                    raise ValueError("--widths applies to --arch small_cnn only")
                kw["widths"] = tuple(int(w) for w in args.widths.split(","))
            clf = create(args.arch, key=k_init, input_shape=train_ds.input_shape,
                         class_names=train_ds.class_names or None,
                         num_classes=None if train_ds.class_names else int(train_ds.labels.max()) + 1, **kw)
        adv = None
        if args.adversarial:
            adv = PGDConfig(eps=args.eps, n_steps=args.pgd_steps, norm=args.adversarial,
                            step_size=args.pgd_step_size or 2.5 * args.eps / args.pgd_steps)
        meta = {"training_command": "shapjax train " + shlex.join(argv),
                "data": {"train": args.data, "split": args.split, "n_train": len(train_ds),
                         "eval": args.eval_data or f"last {len(eval_ds)} examples of {args.data}",
                         "n_eval": len(eval_ds)},
                "seed": args.seed}
        result = train(clf, train_ds, key=k_train, epochs=args.epochs, batch_size=args.batch_size,
                       learning_rate=args.lr, weight_decay=args.weight_decay, eval_data=eval_ds,
                       shift=args.shift, flip=args.flip, adversarial=adv, checkpoint=args.out,
                       metadata=meta, progress=not args.no_progress,
                       log=lambda m: print(m, file=sys.stderr))
    except FloatingPointError as e:  # the run failed (diverged), the arguments were fine
        print(f"shapjax train: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"shapjax train: error: {e}", file=sys.stderr)
        return 2
    final = result.history[-1]
    print(json.dumps({"checkpoint": str(_paths(args.out)[0]), "eval_accuracy": final["eval_accuracy"],
                      "epochs": len(result.history)}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
