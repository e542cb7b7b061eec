"""Image datasets behind one interface: :func:`load` returns a :class:`Dataset`.

Sources (the ``source`` string of :func:`load`):

- ``"tfds:NAME"`` -- a tensorflow-datasets dataset (``mnist``, ``fashion_mnist``,
  ``cifar10``, ``imagenette``...) read with :func:`tfds.data_source` (no
  TensorFlow needed); ``split`` picks the split (default ``"train"``).
- ``"folder:PATH"`` -- one sub-folder per class (ImageFolder layout), read with PIL.
- ``"idx:IMAGES[,LABELS]"`` -- IDX files (the MNIST format, gzip or plain).
- ``"digits"`` -- scikit-learn's 8x8 digits (1797 images, offline).
- ``"skimage"`` or ``"skimage:astronaut,chelsea"`` -- scikit-image sample photos.
- ``"planted-patch:SEED"`` -- synthetic images with a known ground truth
  (:func:`planted_patch` with ``jax.random.key(SEED)``; needs ``n``).
- ``"samples:NAME"`` -- the small sample sets shipped in ``shapjax/data/assets``
  (:func:`samples`).

Every source gives float32 images in [0, 1], NHWC ``[N, H, W, C]``, int32
labels ``[N]`` and class names; ``size`` resizes, ``channels`` converts between
grey and RGB, ``n`` keeps the first ``n`` examples.
"""
from __future__ import annotations

from typing import Any

import jax

from shapjax.data.dataset import Dataset, _as_size, _finish
from shapjax.data.sources import (
    SKIMAGE_PHOTOS,
    _load_digits,
    _load_folder,
    _load_idx,
    _load_skimage,
    _load_tfds,
    read_idx,
    samples,
)
from shapjax.data.synthetic import PATCH_PATTERNS, planted_patch

SOURCES = ("tfds:<name>", "folder:<path>", "idx:<images>[,<labels>]", "digits",
           "skimage[:<photo>,...]", "planted-patch:<seed>", "samples:<name>")


def load(source: str, *, split: str | None = None, n: int | None = None, size: Any = None,
         channels: int | None = None, data_dir: str | None = None, download: bool = True,
         key: jax.Array | None = None, **options: Any) -> Dataset:
    """Load images from any supported source as a :class:`Dataset`.

    Args:
      source: one of :data:`SOURCES`: ``"tfds:mnist"``, ``"folder:/path"``,
        ``"idx:/path/images[,/path/labels]"``, ``"digits"``,
        ``"skimage[:astronaut,...]"``, ``"planted-patch:SEED"``, ``"samples:mnist"``.
        ``"planted-patch:7"`` is ``planted_patch(jax.random.key(7), n)``;
        ``"planted-patch"`` with ``key=`` is ``planted_patch(key, n)``.
      split: tfds split (``"train"``, ``"test"``, ``"train[:10%]"``...;
        default ``"train"``). Only tfds has splits; passing one for another
        source is an error rather than silently ignored.
      n: keep only the first ``n`` examples (tfds reads only those); for
        ``planted-patch`` the number of images to generate (required).
      size: resize to ``(H, W)`` (or an int for square); bilinear. Required
        for tfds datasets with images of varying size (e.g. imagenette).
        skimage photos are centre-cropped to the aspect ratio and default to 224.
      channels: convert to 1 (grey) or 3 (RGB) channels; default as stored.
      data_dir, download: forwarded to :func:`tfds.data_source`.
      key: PRNG key of ``"planted-patch"`` (the only random source; give
        either a key or a seed in the source string, never neither).
      **options: extra options of :func:`planted_patch` (``n_classes``,
        ``patch_size``).

    Returns:
      Dataset with images ``[N, H, W, C]`` float32 in [0, 1] and labels ``[N]`` int32.

    Raises:
      ValueError: unknown source (the message lists valid ones) or bad data.
      FileNotFoundError: a path that does not exist.
    """
    if not isinstance(source, str):
        raise TypeError(f"source: expected a str such as 'tfds:mnist', got {type(source).__name__}")
    kind, _, arg = source.partition(":")
    valid_kinds = ("tfds", "folder", "idx", "digits", "skimage", "planted-patch", "samples")
    if kind not in valid_kinds:
        raise ValueError(f"source: unknown data source {source!r}; valid sources: {', '.join(SOURCES)}")
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f"n: expected a positive int or None, got {n!r}")
    size = _as_size(size)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels: expected 1, 3 or None, got {channels!r}")
    if split is not None and kind != "tfds":
        raise ValueError(f"split: only tfds sources have splits; got split={split!r} for {source!r}")
    if options and kind != "planted-patch":
        raise TypeError(f"load() got unexpected options {sorted(options)} for source {source!r}")
    if key is not None and kind != "planted-patch":
        raise ValueError(f"key: only the planted-patch source is random; got a key for {source!r}")
    if kind == "planted-patch" and (key is None) == (not arg):
        raise ValueError("source: give the planted-patch generator a seed ('planted-patch:<seed>') "
                         f"or a key (key=jax.random.key(...)), not {'both' if arg else 'neither'}")
    if kind in ("tfds", "folder", "idx") and not arg:
        raise ValueError(f"source: {kind!r} needs an argument, e.g. {SOURCES[valid_kinds.index(kind)]!r}")
    if kind == "digits" and arg:
        raise ValueError(f"source: {kind!r} takes no argument, got {source!r}")

    if kind == "tfds":
        return _load_tfds(arg, split=split, n=n, size=size, channels=channels, data_dir=data_dir,
                          download=download)
    if kind == "folder":
        return _load_folder(arg, n=n, size=size, channels=channels)
    if kind == "idx":
        return _load_idx(arg, n=n, size=size, channels=channels)
    if kind == "digits":
        return _load_digits(n=n, size=size, channels=channels)
    if kind == "skimage":
        return _load_skimage(arg, n=n, size=size, channels=channels)
    if kind == "samples":
        ds = samples(arg)
        return _finish(ds.images, ds.labels, ds.class_names, ds.masks, n=n, size=size, channels=channels)
    # planted-patch:SEED, or planted-patch with key=
    if key is None:
        try:
            key = jax.random.key(int(arg))
        except ValueError:
            raise ValueError(f"source: expected 'planted-patch:<int seed>', got {source!r}") from None
    if n is None:
        raise ValueError("n: the planted-patch source needs n (the number of images to generate)")
    if size is not None and size[0] != size[1]:
        raise ValueError(f"size: planted-patch images are square, got {size}")
    return planted_patch(n, key=key, size=size[0] if size else 32, channels=channels or 3, **options)


__all__ = ["Dataset", "SOURCES", "SKIMAGE_PHOTOS", "PATCH_PATTERNS", "load", "samples", "read_idx", "planted_patch"]
