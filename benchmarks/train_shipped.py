"""Train the models whose weights shapjax ships, and the sample/test data that go with them.

    python benchmarks/train_shipped.py                 # both models
    python benchmarks/train_shipped.py mnist-cnn       # one of them

Writes (commit-ready):

- ``shapjax/models/weights/{mnist-cnn,planted-patch}.{msgpack,json}`` -- weights and
  metadata (architecture, classes, input shape, command, data, split, accuracy);
- ``shapjax/data/assets/samples.npz`` -- 16 held-out MNIST digits and 8 held-out
  planted-patch images with masks (``shapjax.data.samples``);
- ``tests/data/mnist_heldout.npz`` and ``tests/data/planted_heldout.npz`` --
  held-out slices (never trained on) the tests use to check the stated accuracy.

mnist-cnn: the official MNIST *test* set (10,000 images, the only MNIST files on
this machine, /work/shared/data/mnist) split by position: first 8,000 train,
last 2,000 held out. planted-patch: 8,000 generated training images
(``planted_patch(fold_in(key(0), 0), 8000)``) and 2,000 held-out ones
(``fold_in(key(0), 1)``). Everything is seeded (seed 0); CPU-only.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shapjax import data as data_lib  # noqa: E402
from shapjax import models  # noqa: E402
from shapjax.models.train import evaluate, train  # noqa: E402

# the MNIST test set in IDX form: point SHAPJAX_MNIST_DIR at the folder holding t10k-*-ubyte.gz
MNIST_DIR = Path(os.environ.get("SHAPJAX_MNIST_DIR", "/work/shared/data/mnist"))
WEIGHTS = ROOT / "shapjax" / "models" / "weights"
ASSETS = ROOT / "shapjax" / "data" / "assets"
TESTS_DATA = ROOT / "tests" / "data"
SEED = 0
N_TRAIN, N_HELDOUT = 8000, 2000
N_TEST_SLICE = 300  # held-out MNIST images committed under tests/data
N_TEST_SLICE_PLANTED = 64  # planted-patch images are noisy RGB: keep the committed file small


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__} " \
           f"({jax.default_backend()})"


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def _save(clf, name, *, command, data_desc, split, heldout_acc, slice_acc, slice_file, slice_n, seconds,
          config):
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(clf.params["params"]))
    meta = {
        "name": name,
        "training_command": command,
        "data": data_desc,
        "split": split,
        "heldout_accuracy": round(heldout_acc, 4),
        "test_slice": {"file": slice_file, "n": slice_n, "accuracy": round(slice_acc, 4)},
        "n_parameters": n_params,
        "training": config,
        "training_seconds": round(seconds, 1),
        "machine": _machine(),
    }
    path = models.save_checkpoint(WEIGHTS / name, clf.replace(name=name), metadata=meta)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB), held-out accuracy {100 * heldout_acc:.2f}%")


def train_mnist(epochs: int) -> dict:
    images = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    labels = MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    ds = data_lib.load(f"idx:{images},{labels}")
    assert len(ds) == N_TRAIN + N_HELDOUT, len(ds)
    train_ds, held = ds[:N_TRAIN], ds[N_TRAIN:]
    key = jax.random.key(SEED)
    k_init, k_train = jax.random.split(key)
    clf = models.small_cnn(key=k_init, num_classes=10, input_shape=(28, 28, 1), widths=(32, 64, 128), hidden=128)
    config = {"optimizer": "adamw, warmup + cosine decay", "learning_rate": 3e-3, "weight_decay": 1e-4,
              "epochs": epochs, "batch_size": 128, "augmentation": "random shifts up to 2 px", "seed": SEED}
    t0 = time.perf_counter()
    result = train(clf, train_ds, key=k_train, epochs=epochs, batch_size=128, learning_rate=3e-3,
                   weight_decay=1e-4, shift=2, eval_data=held)
    seconds = time.perf_counter() - t0
    clf = result.classifier
    acc = evaluate(clf, held.images, held.labels)
    sl = held[:N_TEST_SLICE]
    slice_acc = evaluate(clf, sl.images, sl.labels)
    TESTS_DATA.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(TESTS_DATA / "mnist_heldout.npz", images=_to_uint8(sl.images), labels=sl.labels,
                        indices=np.arange(N_TRAIN, N_TRAIN + N_TEST_SLICE))
    _save(clf, "mnist-cnn", command="python benchmarks/train_shipped.py mnist-cnn",
          data_desc="MNIST official test set (t10k-images-idx3-ubyte.gz / t10k-labels-idx1-ubyte.gz, "
                    "10,000 images), loaded with shapjax.data.load('idx:...')",
          split=f"by position: images 0-{N_TRAIN - 1} train, {N_TRAIN}-{N_TRAIN + N_HELDOUT - 1} held out",
          heldout_acc=acc, slice_acc=slice_acc, slice_file="tests/data/mnist_heldout.npz "
          f"(held-out images {N_TRAIN}-{N_TRAIN + N_TEST_SLICE - 1})", slice_n=N_TEST_SLICE, seconds=seconds,
          config=config)
    # 16 held-out digits for demos, disjoint from the test slice: the first of each class, then more
    rest = np.arange(N_TEST_SLICE, N_HELDOUT)
    firsts = [rest[held.labels[rest] == c][0] for c in range(10)]
    extra = [i for i in rest if i not in firsts][:6]
    pick = np.asarray(firsts + extra)
    return {"mnist__images": _to_uint8(held.images[pick]), "mnist__labels": held.labels[pick],
            "mnist__class_names": np.asarray(held.class_names),
            "mnist__indices": (N_TRAIN + pick).astype(np.int32)}


def train_planted(epochs: int) -> dict:
    key = jax.random.key(SEED)
    kw = dict(size=32, n_classes=4, patch_size=8, channels=3)
    train_ds = data_lib.planted_patch(N_TRAIN, key=jax.random.fold_in(key, 0), **kw)
    held = data_lib.planted_patch(N_HELDOUT, key=jax.random.fold_in(key, 1), **kw)
    k_init, k_train = jax.random.split(jax.random.fold_in(key, 2))
    clf = models.small_cnn(key=k_init, num_classes=4, input_shape=(32, 32, 3), widths=(32, 64, 64), hidden=64,
                           class_names=train_ds.class_names)
    config = {"optimizer": "adamw, warmup + cosine decay", "learning_rate": 3e-3, "weight_decay": 1e-4,
              "epochs": epochs, "batch_size": 128, "augmentation": "none", "seed": SEED,
              "planted_patch": kw}
    t0 = time.perf_counter()
    result = train(clf, train_ds, key=k_train, epochs=epochs, batch_size=128, learning_rate=3e-3,
                   weight_decay=1e-4, eval_data=held)
    seconds = time.perf_counter() - t0
    clf = result.classifier
    acc = evaluate(clf, held.images, held.labels)
    sl = held[:N_TEST_SLICE_PLANTED]
    q = data_lib.Dataset(_to_uint8(sl.images) / 255.0, sl.labels, sl.class_names, sl.masks)
    slice_acc = evaluate(clf, q.images, q.labels)
    np.savez_compressed(TESTS_DATA / "planted_heldout.npz", images=_to_uint8(sl.images), labels=sl.labels,
                        masks=sl.masks)
    _save(clf, "planted-patch", command="python benchmarks/train_shipped.py planted-patch",
          data_desc="synthetic planted-patch images: shapjax.data.planted_patch(key, n, size=32, n_classes=4, "
                    "patch_size=8, channels=3); the class is decided only by the 8x8 patch pattern",
          split=f"train: planted_patch(fold_in(key({SEED}), 0), {N_TRAIN}); held out: "
                f"planted_patch(fold_in(key({SEED}), 1), {N_HELDOUT})",
          heldout_acc=acc, slice_acc=slice_acc,
          slice_file=f"tests/data/planted_heldout.npz (first {N_TEST_SLICE_PLANTED} held-out images, uint8)",
          slice_n=N_TEST_SLICE_PLANTED, seconds=seconds, config=config)
    rest = np.arange(N_TEST_SLICE_PLANTED, N_HELDOUT)
    pick = np.asarray([i for c in range(4) for i in rest[held.labels[rest] == c][:2]])
    return {"planted-patch__images": _to_uint8(held.images[pick]), "planted-patch__labels": held.labels[pick],
            "planted-patch__masks": held.masks[pick],
            "planted-patch__class_names": np.asarray(held.class_names)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", nargs="*", help="mnist-cnn and/or planted-patch (default: both)")
    p.add_argument("--mnist-epochs", type=int, default=12)
    p.add_argument("--planted-epochs", type=int, default=4)
    args = p.parse_args(argv)
    args.which = args.which or ["mnist-cnn", "planted-patch"]
    bad = set(args.which) - {"mnist-cnn", "planted-patch"}
    if bad:
        p.error(f"unknown model(s) {sorted(bad)}; valid: mnist-cnn, planted-patch")
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    ASSETS.mkdir(parents=True, exist_ok=True)
    samples_path = ASSETS / "samples.npz"
    arrays = dict(np.load(samples_path)) if samples_path.exists() else {}
    if "mnist-cnn" in args.which:
        arrays.update(train_mnist(args.mnist_epochs))
    if "planted-patch" in args.which:
        arrays.update(train_planted(args.planted_epochs))
    np.savez_compressed(samples_path, **arrays)
    print(f"wrote {samples_path} ({samples_path.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
