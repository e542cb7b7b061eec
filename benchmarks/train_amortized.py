"""Train the amortized explainers (FastSHAP) that shapjax ships.

    python benchmarks/train_amortized.py                        # all three
    python benchmarks/train_amortized.py mnist-cnn-grid4x4      # one of them

Writes ``shapjax/amortized/weights/NAME.{msgpack,json}`` (commit-ready):

- ``mnist-cnn-grid4x4-constant0`` / ``mnist-cnn-grid7x7-constant0``: the shipped ``mnist-cnn``,
  ``segment.grid(4, 4)`` / ``grid(7, 7)``, ``maskers.constant(0)``, all 10 classes, trained on the
  classifier's own training images (MNIST t10k images 0-7999, /work/shared/data/mnist; the last
  10% of them, 7200-7999, are the explainer's early-stopping split). Images 8000-9999 stay unseen
  by both the classifier and the explainers (benchmarks/amortized.py evaluates there).
- ``planted-patch-grid8x8-blur3``: the shipped ``planted-patch``, ``grid(8, 8)``, ``blur(3)`` (the
  demo's setting), all 4 classes, on ``planted_patch(fold_in(key(0), 0), 8000)`` (its training set).

The game is the classifier itself (its logits) with the masker; no surrogate. The explainer's trunk
starts from the classifier's convolutions (warm start); one table of 16 coalition pairs per image is
evaluated once (``resample=False``: 8,000 x 34 model evaluations) and reused by every epoch, so the
CPU time goes into explainer steps. Seeded; CPU-only.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shapjax import amortized, maskers, models, segment  # noqa: E402
from shapjax import data as data_lib  # noqa: E402

MNIST_DIR = Path("/work/shared/data/mnist")
WEIGHTS = ROOT / "shapjax" / "amortized" / "weights"
N_TRAIN = 8000
WIDTHS, HIDDEN = None, 128  # None: the classifier's conv widths, its trunk copied in (warm start)

CONFIGS = {
    "mnist-cnn-grid4x4-constant0": dict(model="mnist-cnn", grid=(4, 4), masker="constant:0"),
    "mnist-cnn-grid7x7-constant0": dict(model="mnist-cnn", grid=(7, 7), masker="constant:0"),
    "planted-patch-grid8x8-blur3": dict(model="planted-patch", grid=(8, 8), masker="blur:3"),
}


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__} " \
           f"({jax.default_backend()})"


def training_images(model: str) -> tuple[np.ndarray, str]:
    if model == "mnist-cnn":
        ds = data_lib.load(f"idx:{MNIST_DIR / 't10k-images-idx3-ubyte.gz'},{MNIST_DIR / 't10k-labels-idx1-ubyte.gz'}")
        return ds.images[:N_TRAIN], ("MNIST official test set images 0-7999 (the classifier's training images), "
                                     "loaded with shapjax.data.load('idx:...'); images 8000-9999 never seen")
    kw = dict(size=32, n_classes=4, patch_size=8, channels=3)
    ds = data_lib.planted_patch(N_TRAIN, key=jax.random.fold_in(jax.random.key(0), 0), **kw)
    return ds.images, "planted_patch(fold_in(key(0), 0), 8000) (the classifier's training set)"


def train_one(name: str, *, epochs: int, batch_size: int, n_pairs: int, learning_rate: float, n_images: int) -> None:
    cfg = CONFIGS[name]
    clf = models.pretrained(cfg["model"])
    x, desc = training_images(cfg["model"])
    x = x[:n_images]
    masker = maskers.get_masker(cfg["masker"])
    t0 = time.perf_counter()
    res = amortized.train(clf, x, key=jax.random.key(0), segments=segment.grid(*cfg["grid"]), masker=masker,
                          epochs=epochs, batch_size=batch_size, n_pairs=n_pairs, learning_rate=learning_rate,
                          widths=WIDTHS, hidden=HIDDEN, resample=False, patience=3, progress=False, log=lambda m: print(f"[{name}] {m}", flush=True))
    seconds = time.perf_counter() - t0
    meta = {**res.metadata, "name": name, "data": desc, "training_command":
            f"python benchmarks/train_amortized.py {name}", "machine": machine(),
            "wall_seconds": round(seconds, 1)}
    path = amortized.save(WEIGHTS / name, res.explainer, metadata=meta)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB) in {seconds:.0f} s, "
          f"{res.metadata['training_model_evals']:,} model evaluations", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", nargs="*", help=f"some of {sorted(CONFIGS)} (default: all)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-pairs", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--n-images", type=int, default=N_TRAIN)
    args = p.parse_args(argv)
    which = args.which or sorted(CONFIGS)
    bad = set(which) - set(CONFIGS)
    if bad:
        p.error(f"unknown explainer(s) {sorted(bad)}; valid: {sorted(CONFIGS)}")
    logging.basicConfig(level=logging.WARNING)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    for name in which:
        train_one(name, epochs=args.epochs, batch_size=args.batch_size, n_pairs=args.n_pairs,
                  learning_rate=args.learning_rate, n_images=args.n_images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
