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

import dataclasses
import difflib
import gzip
import os
import struct
from importlib import resources
from itertools import chain, zip_longest
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.api import keyword_key

SOURCES = ("tfds:<name>", "folder:<path>", "idx:<images>[,<labels>]", "digits",
           "skimage[:<photo>,...]", "planted-patch:<seed>", "samples:<name>")

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                  "hubble_deep_field", "camera", "coins", "moon", "clock", "page", "colorwheel")
_SKIMAGE_DEFAULT = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                    "hubble_deep_field", "camera", "coins")

_IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Images with labels (and optional ground-truth masks).

    Attributes:
      images: ``[N, H, W, C]`` float32 in [0, 1].
      labels: ``[N]`` int32 (``-1`` where unknown).
      class_names: one name per class id.
      masks: ``[N, H, W]`` bool ground-truth relevance masks, or None.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    masks: np.ndarray | None = None

    def __post_init__(self):
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        if images.ndim != 4:
            raise ValueError(f"images: expected [N, H, W, C], got shape {images.shape}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels: expected shape [{images.shape[0]}], got {labels.shape}")
        object.__setattr__(self, "images", images.astype(np.float32, copy=False))
        object.__setattr__(self, "labels", labels.astype(np.int32, copy=False))
        object.__setattr__(self, "class_names", [str(c) for c in self.class_names])
        if self.masks is not None:
            masks = np.asarray(self.masks).astype(bool, copy=False)
            if masks.shape != images.shape[:3]:
                raise ValueError(f"masks: expected shape {images.shape[:3]}, got {masks.shape}")
            object.__setattr__(self, "masks", masks)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: Any) -> "Dataset":
        """Subset by slice, int array or bool array (a new Dataset)."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 if index != -1 else None)
        return Dataset(self.images[index], self.labels[index], self.class_names,
                       None if self.masks is None else self.masks[index])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)``."""
        return tuple(int(s) for s in self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# ----------------------------------------------------------------- helpers
def _as_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size: expected an int or (height, width) of positive ints, got {size}")
    return size


def _to_float(img: np.ndarray, what: str) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == bool:
        return img.astype(np.float32)
    if np.issubdtype(img.dtype, np.floating):
        if img.size and (np.nanmin(img) < 0 or np.nanmax(img) > 1):
            raise ValueError(f"{what}: float images must lie in [0, 1]")
        return img.astype(np.float32)
    raise ValueError(f"{what}: unsupported pixel dtype {img.dtype} (expected uint8 or float in [0, 1])")


def _resize_one(img: np.ndarray, size: tuple[int, int], *, crop: bool = False) -> np.ndarray:
    """``[H, W, C]`` float in [0, 1] -> ``[h, w, C]`` (bilinear, antialiased, via PIL)."""
    from PIL import Image

    if crop:  # centre-crop to the target aspect ratio first
        h, w = img.shape[:2]
        target = size[1] / size[0]
        if w / h > target:
            nw = max(1, int(round(h * target)))
            img = img[:, (w - nw) // 2:(w - nw) // 2 + nw]
        else:
            nh = max(1, int(round(w / target)))
            img = img[(h - nh) // 2:(h - nh) // 2 + nh]
    if img.shape[:2] == size:
        return img.astype(np.float32)
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c], np.float32))
                        .resize((size[1], size[0]), Image.BILINEAR)) for c in range(img.shape[-1])]
    return np.clip(np.stack(chans, -1), 0.0, 1.0).astype(np.float32)


def _convert_channels(images: np.ndarray, channels: int | None) -> np.ndarray:
    c = images.shape[-1]
    if channels is None or channels == c:
        return images[..., :3] if c == 4 and channels is None else images
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1, 3 or None, got {channels!r}")
    if c == 4:
        images, c = images[..., :3], 3
    if channels == 3 and c == 1:
        return np.repeat(images, 3, axis=-1)
    if channels == 1 and c == 3:
        luma = np.asarray([0.299, 0.587, 0.114], np.float32)
        return (images @ luma)[..., None].astype(np.float32)
    if channels == c:
        return images
    raise ValueError(f"channels: cannot convert {c}-channel images to {channels}")


def _stack(images: list[np.ndarray], what: str) -> np.ndarray:
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"{what}: images have different sizes {sorted(shapes)[:4]}...; "
                         "pass size=(height, width) to resize them")
    return np.stack(images).astype(np.float32)


def _finish(images, labels, class_names, masks=None, *, n=None, size=None, channels=None,
            crop=False) -> Dataset:
    if n is not None:
        images, labels = images[:n], labels[:n]
        masks = None if masks is None else masks[:n]
    if size is not None and images.shape[1:3] != size:
        images = np.stack([_resize_one(im, size, crop=crop) for im in images]) if len(images) else \
            np.zeros((0, *size, images.shape[-1]), np.float32)
        if masks is not None:
            masks = np.stack([_resize_one(m[..., None].astype(np.float32), size, crop=crop)[..., 0] > 0.5
                              for m in masks])
    images = _convert_channels(images, channels)
    return Dataset(images, labels, class_names, masks)


# --------------------------------------------------------------------- IDX
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or plain.

    The header is ``0x00 0x00 TYPE NDIM`` followed by NDIM big-endian uint32
    sizes; TYPE is 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32
    or 0x0E float64.

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
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"IDX file {path}: corrupt gzip data ({e})") from None
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
    if len(raw) - header != expected:
        raise ValueError(f"IDX file {path}: header says shape {dims} ({expected} bytes of data) "
                         f"but the file holds {len(raw) - header} bytes after the header")
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


# ------------------------------------------------------------------ folder
def _load_folder(root: str, *, n=None, size=None, channels=None) -> Dataset:
    from PIL import Image, UnidentifiedImageError

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
    pil = []
    for p, _ in files:
        try:
            with Image.open(p) as im:
                im.load()
                pil.append(im.copy())
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"folder source: cannot read image {p}: {e}") from None
    if channels is None:
        channels = 1 if all(im.mode in ("L", "1", "I", "I;16", "F") for im in pil) else 3
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1, 3 or None, got {channels!r}")
    arrays = []
    for im in pil:
        im = im.convert("L" if channels == 1 else "RGB")
        if size is not None and (im.height, im.width) != size:
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im, np.float32) / 255.0
        arrays.append(a[..., None] if a.ndim == 2 else a)
    images = _stack(arrays, f"folder {root}")
    labels = np.asarray([ci for _, ci in files], np.int32)
    return Dataset(images, labels, classes)


# ------------------------------------------------------------------- tfds
def _load_tfds(name: str, *, split, n, size, channels, data_dir, download) -> Dataset:
    import tensorflow_datasets as tfds

    split = "train" if split is None else split
    try:
        ds = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
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
        labels.append(int(ex[label_key]) if label_key in ex else -1)
    if not images:
        raise ValueError(f"tfds dataset {name!r} split {split!r} is empty")
    images = _convert_channels(_stack(images, f"tfds {name}"), channels)
    labels = np.asarray(labels, np.int32)
    if not class_names and labels.max() >= 0:
        class_names = [str(i) for i in range(int(labels.max()) + 1)]
    return Dataset(images, labels, class_names)


# ---------------------------------------------------------- offline samples
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


# ------------------------------------------------------------- synthetic
PATCH_PATTERNS = ("vertical-stripes", "horizontal-stripes", "checkerboard", "diagonal-stripes",
                  "ring", "cross", "dot", "anti-diagonal-stripes")


def _pattern(kind: int, p: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    w = max(1, p // 4)  # stripe width
    c = (p - 1) / 2.0
    pats = [
        (j // w) % 2,
        (i // w) % 2,
        ((i // w) + (j // w)) % 2,
        ((i + j) // w) % 2,
        np.minimum(np.minimum(i, j), np.minimum(p - 1 - i, p - 1 - j)) < w,
        (np.abs(i - c) < w / 2 + 0.5) | (np.abs(j - c) < w / 2 + 0.5),
        (i - c) ** 2 + (j - c) ** 2 <= (p / 3.0) ** 2,
        ((i - j + p) // w) % 2,
    ]
    return np.asarray(pats[kind], np.float32)


@keyword_key
def planted_patch(n: int, *, key, size: int = 32, n_classes: int = 4, patch_size: int = 8,
                  channels: int = 3) -> Dataset:
    """Synthetic images whose class is decided only by a planted texture patch.

    Each image is a smooth random background (low-resolution uniform noise,
    bilinearly upsampled, plus fine Gaussian noise) with one
    ``patch_size x patch_size`` patch at a uniformly random position. The
    patch shows the binary pattern of its class (vertical stripes, horizontal
    stripes, checkerboard, ...; see :data:`PATCH_PATTERNS`) painted with a
    random bright colour on a random dark colour:

    .. math::

        x_{\\text{patch}} = P_y \\cdot c_{\\text{hi}} + (1 - P_y) \\cdot c_{\\text{lo}},
        \\quad c_{\\text{hi}} \\sim U[0.75, 1]^C,\\; c_{\\text{lo}} \\sim U[0, 0.25]^C.

    Nothing outside the patch depends on the label, so the ground-truth
    relevance mask is the patch area: a faithful attribution puts its mass there
    (a pointing-game / mask-overlap test with known answer).

    Args:
      key: PRNG key.
      n: number of images.
      size: image height and width.
      n_classes: number of classes (2..8), balanced.
      patch_size: side of the square patch (<= size).
      channels: 1 or 3.

    Returns:
      Dataset with images ``[n, size, size, channels]``, labels ``[n]``,
      class_names (pattern names) and masks ``[n, size, size]`` bool.

    References:
      J. Adebayo, M. Muelly, I. Liccardi, B. Kim. "Debugging tests for model
      explanations." NeurIPS 2020 (spurious-signal planting).
      J. Yang, B. Kim. "Benchmarking attribution methods with relative feature
      importance." arXiv:1907.09701, 2019.
    """
    n, size, patch_size = int(n), int(size), int(patch_size)
    if n < 1:
        raise ValueError(f"n: expected a positive int, got {n}")
    if not 2 <= n_classes <= len(PATCH_PATTERNS):
        raise ValueError(f"n_classes: expected 2..{len(PATCH_PATTERNS)}, got {n_classes}")
    if not 2 <= patch_size <= size:
        raise ValueError(f"patch_size: expected 2 <= patch_size <= size ({size}), got {patch_size}")
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 or 3, got {channels!r}")
    patterns = np.stack([_pattern(k, patch_size) for k in range(n_classes)])
    images, labels, masks = _planted(key, patterns, n=n, size=size, channels=channels)
    return Dataset(images, labels, list(PATCH_PATTERNS[:n_classes]), masks)


def _linear_interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` bilinear (half-pixel centres, edge-clamped) resampling matrix."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] += 1 - (pos - lo)
    m[np.arange(n_out), hi] += pos - lo
    return m


def _host_rng(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded by a JAX key (host-side data generation, no compilation)."""
    if not hasattr(key, "dtype"):
        raise TypeError(f"key: expected a jax PRNG key (jax.random.key(seed)), got {type(key).__name__}")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    data = np.asarray(key)
    if data.dtype != np.uint32 or data.ndim != 1:
        raise TypeError(f"key: expected a single jax PRNG key, got dtype {data.dtype} shape {data.shape}")
    return np.random.default_rng([int(v) for v in data])


def _planted(key, patterns, *, n, size, channels):
    rng = _host_rng(key)
    n_classes, p = patterns.shape[0], patterns.shape[1]
    labels = rng.permutation(np.arange(n) % n_classes)
    low = max(2, size // 4)
    interp = _linear_interp_matrix(low, size)
    coarse = rng.uniform(size=(n, low, low, channels)).astype(np.float32)
    bg = np.einsum("ia,nabc,jb->nijc", interp, coarse, interp, optimize=True)  # bilinear upsampling
    bg = np.clip(bg + 0.05 * rng.standard_normal(bg.shape, dtype=np.float32), 0.0, 1.0)
    cols = rng.uniform(size=(n, 2, 1, 1, channels)).astype(np.float32) * 0.25
    hi, lo = 1.0 - cols[:, 0], cols[:, 1]
    pat = patterns[labels][..., None]
    patches = pat * hi + (1.0 - pat) * lo
    pos = rng.integers(0, size - p + 1, size=(n, 2))
    masks = np.zeros((n, size, size), bool)
    for i, (r, c) in enumerate(pos):
        bg[i, r:r + p, c:c + p] = patches[i]
        masks[i, r:r + p, c:c + p] = True
    return bg.astype(np.float32), labels.astype(np.int32), masks


# -------------------------------------------------------------------- load
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
