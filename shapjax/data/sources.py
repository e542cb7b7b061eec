"""The file and library sources behind :func:`shapjax.data.load`: IDX, image folders, tfds, scikit-learn digits,
scikit-image photos and the shipped samples."""
from __future__ import annotations

import difflib
import gzip
import os
import struct
from importlib import resources
from itertools import chain, zip_longest
from pathlib import Path

import numpy as np

from shapjax.data.dataset import _IMAGE_EXTENSIONS, Dataset, _convert_channels, _finish, _resize_one, _stack, _to_float  # noqa: F401,E501
from shapjax.data.files import load_image

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                  "hubble_deep_field", "camera", "coins", "moon", "clock", "page", "colorwheel")


_SKIMAGE_DEFAULT = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                    "hubble_deep_field", "camera", "coins")


_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _idx_header(raw: bytes, path, size: int):
    """``(dtype, dims, header_bytes)`` of an IDX file whose (decompressed) payload has ``size`` bytes."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"IDX file {path}: bad magic number {raw[:4].hex() or '(empty)'}; "
                         "expected 0x0000TTDD (TT = type code, DD = number of dimensions)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"IDX file {path}: unknown type code 0x{code:02x}; "
                         f"valid: {', '.join(f'0x{c:02x}' for c in _IDX_TYPES)}")
    if ndim < 1:
        raise ValueError(f"IDX file {path}: number of dimensions is 0")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path}: truncated header (needs {header} bytes, has {len(raw)})")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_TYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if size - header != expected:
        raise ValueError(f"IDX file {path}: header says shape {dims} ({expected} bytes of data) "
                         f"but the file holds {size - header} bytes after the header")
    return dtype, dims, header


def read_idx(path: str | os.PathLike, *, mmap: bool = False) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or plain.

    The header is ``0x00 0x00 TYPE NDIM`` followed by NDIM big-endian uint32
    sizes; TYPE is 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32
    or 0x0E float64. With ``mmap=True`` a plain (not gzipped) file is
    memory-mapped (read-only, in the file's big-endian dtype), so streaming it
    costs no memory; a gzipped one is decompressed into memory.

    Raises:
      FileNotFoundError: no such file.
      ValueError: bad magic number, unknown type code, or a payload whose
        length does not match the header's sizes.

    References:
      Y. LeCun, C. Cortes, C. Burges. "The MNIST database of handwritten
      digits" (file format section). http://yann.lecun.com/exdb/mnist/
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} not found")
    with open(path, "rb") as f:
        head = f.read(4 + 4 * 255)
    if mmap and head[:2] != b"\x1f\x8b":
        dtype, dims, header = _idx_header(head, path, path.stat().st_size)
        return np.memmap(path, dtype=dtype, mode="r", offset=header, shape=tuple(dims))
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"IDX file {path}: corrupt gzip data ({e})") from None
    dtype, dims, header = _idx_header(raw, path, len(raw))
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _load_idx(spec: str, **kw) -> Dataset:
    parts = [p for p in spec.split(",") if p]
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"source: expected 'idx:<images>[,<labels>]', got 'idx:{spec}'")
    arr = read_idx(parts[0])
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"IDX file {parts[0]}: expected images of shape [N, H, W] or [N, H, W, C], "
                         f"got {arr.shape}")
    images = _to_float(arr, f"IDX file {parts[0]}")
    if len(parts) == 2:
        labels = read_idx(parts[1])
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"IDX file {parts[1]}: expected 1-D integer labels, got shape {labels.shape} "
                             f"dtype {labels.dtype}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"IDX files: {images.shape[0]} images in {parts[0]} but "
                             f"{labels.shape[0]} labels in {parts[1]}")
        labels = labels.astype(np.int64)
        class_names = [str(i) for i in range(int(labels.max(initial=-1)) + 1)]
    else:
        labels = np.full(images.shape[0], -1, np.int32)
        class_names = []
    return _finish(images, labels, class_names, **kw)


def _file_mode(path) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"folder source: cannot read image {path}: {e}") from None


def _load_folder(root: str, *, n=None, size=None, channels=None) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder source: {root} is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"folder source: {root} has no class sub-folders (expected ROOT/<class>/<image>)")
    files = [(p, ci) for ci, c in enumerate(classes) for p in sorted((root / c).iterdir())
             if p.suffix.lower() in _IMAGE_EXTENSIONS]
    if not files:
        raise ValueError(f"folder source: no image files ({', '.join(sorted(_IMAGE_EXTENSIONS))}) under {root}")
    if n is not None:  # first n of a class-interleaved order, so a small n sees every class
        per_class = [[f for f in files if f[1] == ci] for ci in range(len(classes))]
        files = [f for f in chain.from_iterable(zip_longest(*per_class)) if f is not None][:n]
    if channels is None:  # grey only when every file is grey
        channels = 1 if all(_file_mode(p) in ("L", "1", "I", "I;16", "F") for p, _ in files) else 3
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1, 3 or None, got {channels!r}")
    try:
        arrays = [load_image(p, size=size, channels=channels) for p, _ in files]
    except ValueError as e:
        raise ValueError(f"folder source: {e}") from None
    images = _stack(arrays, f"folder {root}")
    labels = np.asarray([ci for _, ci in files], np.int32)
    return Dataset(images, labels, classes)


class TfdsNotPrepared(FileNotFoundError):
    """A tfds dataset that is neither prepared on disk nor downloadable here (offline)."""


def _data_source(tfds, name, split, data_dir, download):
    """``tfds.data_source``; offline, a dataset that is not prepared raises :class:`TfdsNotPrepared`."""
    try:  # what is already on disk first: no network, no builder code
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise
    except (KeyError, FileNotFoundError, ValueError, AssertionError) as e:
        first = e
    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    hint = (f"tfds dataset {name!r} (split {split!r}) is not prepared in {where}: prepare it once on a machine "
            f"with network access (python -c \"import tensorflow_datasets as tfds; tfds.data_source('{name}', "
            f"split='{split}')\"), then copy the folder, or point TFDS_DATA_DIR / data_dir at a prepared copy")
    if not download:
        raise TfdsNotPrepared(f"{hint} ({type(first).__name__}: {str(first).splitlines()[0] if str(first) else ''})")
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=True)
    except tfds.core.registered.DatasetNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - downloading raises many types (network, missing modules)
        msg = str(e).splitlines()[0] if str(e) else ""
        raise TfdsNotPrepared(f"{hint}; downloading it failed ({type(e).__name__}: {msg})") from None


def open_tfds(name: str, *, split=None, data_dir=None, download: bool = True):
    """Open a tfds split for random access: ``(source, image_key, label_key | None, class_names)``.

    ``source`` is :func:`tfds.data_source` (``len``, ``source[i]`` a dict of numpy
    arrays; no TensorFlow needed), read lazily. A dataset that is not prepared on
    disk is downloaded when ``download`` (and the network allows it); otherwise a
    :class:`TfdsNotPrepared` error says how to prepare it.
    """
    import tensorflow_datasets as tfds

    split = "train" if split is None else split
    try:
        ds = _data_source(tfds, name, split, data_dir, download)
    except tfds.core.registered.DatasetNotFoundError:
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name.split("/")[0], known, n=5)
        raise ValueError(f"source: unknown tfds dataset {name!r}"
                         + (f"; did you mean {close}?" if close else "")
                         + " (image classification datasets include mnist, fashion_mnist, cifar10, "
                           "cifar100, imagenette, oxford_iiit_pet; all: tfds.list_builders())") from None
    info = ds.dataset_info
    keys = tuple(info.supervised_keys or ("image", "label"))
    image_key, label_key = (keys[0], keys[1]) if len(keys) >= 2 else ("image", "label")
    features = info.features
    if image_key not in features:
        raise ValueError(f"tfds dataset {name!r} has no image feature {image_key!r} "
                         f"(features: {list(features.keys())})")
    label_feature = features[label_key] if label_key in features else None
    class_names = list(getattr(label_feature, "names", None) or [])
    return ds, image_key, (label_key if label_feature is not None else None), class_names


def _load_tfds(name: str, *, split, n, size, channels, data_dir, download) -> Dataset:
    ds, image_key, label_key, class_names = open_tfds(name, split=split, data_dir=data_dir, download=download)
    split = "train" if split is None else split
    count = len(ds) if n is None else min(int(n), len(ds))
    images, labels = [], []
    for i in range(count):
        ex = ds[i]
        img = _to_float(np.asarray(ex[image_key]), f"tfds {name}")
        if img.ndim == 2:
            img = img[..., None]
        if size is not None:
            img = _resize_one(img, size)
        images.append(img)
        labels.append(int(ex[label_key]) if label_key is not None and label_key in ex else -1)
    if not images:
        raise ValueError(f"tfds dataset {name!r} split {split!r} is empty")
    images = _convert_channels(_stack(images, f"tfds {name}"), channels)
    labels = np.asarray(labels, np.int32)
    if not class_names and labels.max() >= 0:
        class_names = [str(i) for i in range(int(labels.max()) + 1)]
    return Dataset(images, labels, class_names)


def _load_digits(*, n=None, size=None, channels=None) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images.astype(np.float32) / 16.0)[..., None]
    return _finish(images, d.target, [str(i) for i in range(10)], n=n, size=size, channels=channels)


def _load_skimage(spec: str, *, n=None, size=None, channels=None) -> Dataset:
    import skimage.data

    names = [s for s in spec.split(",") if s] if spec else list(_SKIMAGE_DEFAULT)
    bad = [s for s in names if s not in SKIMAGE_PHOTOS]
    if bad:
        raise ValueError(f"source: unknown skimage photo(s) {bad}; valid: {list(SKIMAGE_PHOTOS)}")
    size = (224, 224) if size is None else size
    channels = 3 if channels is None else channels
    images = []
    for name in names:
        img = _to_float(getattr(skimage.data, name)(), f"skimage.data.{name}")
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, -1)
        images.append(_resize_one(img[..., :3], size, crop=True))
    return _finish(np.stack(images), np.arange(len(names)), names, n=n, channels=channels)


def samples(name: str) -> Dataset:
    """A small sample set shipped in ``shapjax/data/assets/samples.npz`` (offline).

    Args:
      name: ``"mnist"`` (16 held-out MNIST test digits, never trained on by
        the shipped ``mnist-cnn``) or ``"planted-patch"`` (8 held-out
        planted-patch images with their ground-truth masks).
    """
    path = resources.files(__package__ or "shapjax").joinpath("assets", "samples.npz")
    with resources.as_file(path) as p, np.load(p) as z:
        names = sorted({k.split("__")[0] for k in z.files})
        if name not in names:
            raise ValueError(f"name: unknown sample set {name!r}; valid names: {names}")
        images = z[f"{name}__images"]
        masks = z[f"{name}__masks"] if f"{name}__masks" in z.files else None
        return Dataset(_to_float(images, name), z[f"{name}__labels"],
                       [str(c) for c in z[f"{name}__class_names"]], masks)
