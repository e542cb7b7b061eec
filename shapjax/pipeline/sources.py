"""Streaming data sources for :func:`shapjax.explain_dataset`: random access to images, converted on read.

A source has ``len(source)`` and ``source.read(indexes) -> Batch``: only the
requested images are read (memory stays flat in the dataset's size), converted
to the model's input ``[H, W, C]`` float32 in [0, 1] by the one converter of
:mod:`shapjax.data.files`. :func:`as_source` builds one from

* a folder (every image file inside, sorted) or an image file path;
* ``"idx:IMAGES[,LABELS]"`` - IDX files (MNIST format; plain files are memory-mapped);
* ``"tfds:NAME[:SPLIT[:N]]"`` - a prepared tensorflow-datasets split through
  :func:`tfds.data_source` (no TensorFlow; offline a clear error says how to prepare it);
* ``"samples:NAME[:N]"`` - the shipped samples;
* a Grain ``MapDataset`` or any indexable ``(len, getitem)`` object whose items
  are images, ``(image, label)`` pairs or dicts with ``"image"`` (and ``"label"``);
* a list of the above (concatenated).

Conversions that change what the model sees (colour to grey, a large downscale,
an aspect-ratio squash) are counted in ``source.notes`` and reported once per kind.
"""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from shapjax.data.files import IMAGE_EXTENSIONS, ConversionNotes, convert_image, folder_files, load_image


class Batch(NamedTuple):
    """Images read from a source: ``images [b, H, W, C]`` float32, ``ids [b]`` str, ``labels [b]`` int32 (-1 unknown)."""

    images: np.ndarray
    ids: list
    labels: np.ndarray


class Source:
    """Base class: ``len(source)``; ``read(indexes)`` -> :class:`Batch` for an input ``shape = (H, W, C)``."""

    shape: Optional[tuple] = None
    resize: bool = True
    class_names: Optional[list] = None

    def __init__(self):
        self.notes = ConversionNotes()

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_one(self, i: int):  # -> (image [H, W, C] float32, id, label)
        raise NotImplementedError  # pragma: no cover

    def native_shape(self) -> Optional[tuple]:
        """``(H, W, C)`` of the first image as stored (for models without an ``input_shape``)."""
        saved = self.shape
        self.shape = (None, None, None)
        try:
            img = self.read_one(0)[0]
        finally:
            self.shape = saved
        return tuple(int(v) for v in img.shape)

    def with_shape(self, shape, *, resize: bool = True) -> "Source":
        """Set the model's input ``(H, W, C)`` the images are converted to."""
        self.shape, self.resize = tuple(int(s) for s in shape), bool(resize)
        return self

    def read(self, indexes) -> Batch:
        if self.shape is None:
            raise ValueError("source: call with_shape((H, W, C)) first (explain_dataset does)")
        out = [self.read_one(int(i)) for i in np.asarray(indexes).reshape(-1)]
        H, W, C = self.shape
        images = np.stack([o[0] for o in out]) if out else np.zeros((0, H, W, C), np.float32)
        return Batch(images.astype(np.float32, copy=False), [str(o[1]) for o in out],
                     np.asarray([o[2] for o in out], np.int32))

    def _convert(self, img, name):
        H, W, C = self.shape
        size = None if H is None else (H, W)
        return convert_image(img, size=size, channels=C, resize=self.resize, name=name, notes=self.notes)


class Files(Source):
    """Image files (PNG, JPEG, ...) read with PIL; ``ids`` are the paths."""

    def __init__(self, paths: Sequence, *, labels: Optional[Sequence[int]] = None, root: Optional[str] = None):
        super().__init__()
        self.paths = [Path(p) for p in paths]
        for p in self.paths:
            if not p.exists():
                raise FileNotFoundError(f"image file not found: {p}")
        self.labels = None if labels is None else np.asarray(labels, np.int32)
        self.root = root

    def __len__(self):
        return len(self.paths)

    def describe(self):
        return f"folder:{self.root} ({len(self)} files)" if self.root else f"files ({len(self)}: {self.paths[0]}, ...)"

    def read_one(self, i):
        H, W, C = self.shape
        img = load_image(self.paths[i], size=None if H is None else (H, W), channels=C, resize=self.resize,
                         notes=self.notes)
        return img, str(self.paths[i]), -1 if self.labels is None else int(self.labels[i])


class Indexable(Source):
    """Any ``(len, getitem)`` object (a Grain ``MapDataset``, ``tfds.data_source``, a list, an array).

    Items are an image, an ``(image, label)`` pair or a dict with ``image_key``
    (and ``label_key``). Images are uint8 or float in [0, 1], ``[H, W]`` or ``[H, W, C]``.
    """

    def __init__(self, data, *, labels=None, name: Optional[str] = None, image_key: str = "image",
                 label_key: Optional[str] = "label", class_names=None, id_prefix: Optional[str] = None):
        super().__init__()
        if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
            raise TypeError(f"source: expected a folder, a spec string or an indexable (len, getitem) object; "
                            f"got {type(data).__name__}")
        self.data = data
        self.labels = None if labels is None else np.asarray(labels, np.int32)
        if self.labels is not None and len(self.labels) != len(data):
            raise ValueError(f"labels: {len(self.labels)} labels for {len(data)} images")
        self.name = name or type(data).__name__
        self.image_key, self.label_key = image_key, label_key
        self.class_names = class_names
        self.id_prefix = self.name if id_prefix is None else id_prefix

    def __len__(self):
        return len(self.data)

    def describe(self):
        return f"{self.name} ({len(self)} images)"

    def read_one(self, i):
        item = self.data[i]
        label = -1 if self.labels is None else int(self.labels[i])
        if isinstance(item, dict):
            if self.image_key not in item:
                raise ValueError(f"source {self.name}: item {i} has no {self.image_key!r} field "
                                 f"(fields: {sorted(item)})")
            if self.label_key is not None and self.label_key in item and self.labels is None:
                label = int(np.asarray(item[self.label_key]))
            item = item[self.image_key]
        elif isinstance(item, (tuple, list)) and len(item) == 2 and np.ndim(item[1]) == 0:
            item, lab = item
            label = int(lab) if self.labels is None else label
        return self._convert(item, f"{self.name}#{i}"), f"{self.id_prefix}#{i}", label


class Concat(Source):
    """Several sources one after the other (the ``SOURCE...`` arguments of ``shapjax explain``)."""

    def __init__(self, sources: Sequence[Source]):
        super().__init__()
        self.sources = list(sources)
        if not self.sources:
            raise ValueError("source: no images to explain")
        self.starts = list(np.cumsum([0] + [len(s) for s in self.sources]))
        for s in self.sources:
            s.notes = self.notes
        names = [s.class_names for s in self.sources]
        self.class_names = names[0] if all(n == names[0] for n in names) else None

    def __len__(self):
        return int(self.starts[-1])

    def with_shape(self, shape, *, resize=True):
        for s in self.sources:
            s.with_shape(shape, resize=resize)
        return super().with_shape(shape, resize=resize)

    def describe(self):
        return " + ".join(s.describe() for s in self.sources)

    def native_shape(self):
        return self.sources[0].native_shape()

    def read_one(self, i):
        j = bisect.bisect_right(self.starts, i) - 1
        return self.sources[j].read_one(i - int(self.starts[j]))


class Head(Source):
    """The first ``n`` images of a source (``tfds:mnist:test:16``, ``--limit``)."""

    def __init__(self, source: Source, n: int):
        super().__init__()
        self.source, self.n = source, int(min(n, len(source)))
        self.source.notes = self.notes
        self.class_names = source.class_names

    def __len__(self):
        return self.n

    def with_shape(self, shape, *, resize=True):
        self.source.with_shape(shape, resize=resize)
        return super().with_shape(shape, resize=resize)

    def describe(self):
        return f"first {self.n} of {self.source.describe()}"

    def native_shape(self):
        return self.source.native_shape()

    def read_one(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.source.read_one(i)


def _split_count(spec: str):
    kind, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    n = None
    if parts and parts[-1].isdigit():
        n = int(parts.pop())
        if n < 1:
            raise ValueError(f"{spec!r}: the number of images must be >= 1")
    return kind, parts, n


def idx_source(images_path, *, labels=None) -> Indexable:
    """IDX image (and label) files; a plain file is memory-mapped, so only the read rows are loaded."""
    from shapjax.data import read_idx

    arr = read_idx(images_path, mmap=True)
    if arr.ndim not in (3, 4):
        raise ValueError(f"IDX file {images_path}: expected images [N, H, W] or [N, H, W, C], got {arr.shape}")
    labels_path, labels = labels, None
    if labels_path:
        labels = np.asarray(read_idx(labels_path)).astype(np.int32)
        if labels.shape != arr.shape[:1]:
            raise ValueError(f"IDX files: {arr.shape[0]} images in {images_path} but {labels.shape} labels in "
                             f"{labels_path}")
    src = Indexable(arr, labels=labels, name=f"idx:{images_path}")
    if labels is not None:
        src.class_names = [str(i) for i in range(int(labels.max(initial=-1)) + 1)]
    return src


def tfds_source(name: str, *, split: Optional[str] = None, data_dir=None, download: bool = False) -> Indexable:
    """A tfds split through :func:`tfds.data_source` (random access, read lazily; ``download=True`` fetches a
    split that is not prepared, where the network allows)."""
    from shapjax.data.sources import open_tfds

    split = split or "test"
    ds, image_key, label_key, class_names = open_tfds(name, split=split, data_dir=data_dir, download=download)
    return Indexable(ds, name=f"tfds:{name}:{split}", image_key=image_key, label_key=label_key,
                     class_names=class_names or None)


def as_source(spec: Any, *, data_dir=None, download: bool = False) -> Source:
    """A :class:`Source` from a path, a spec string, an indexable object or a list of them (see the module doc)."""
    if isinstance(spec, Source):
        return spec
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(s, (str, Path)) for s in spec):
        parts = [as_source(s, data_dir=data_dir, download=download) for s in spec]
        return parts[0] if len(parts) == 1 else Concat(parts)
    if isinstance(spec, Path) or isinstance(spec, str):
        s = str(spec)
        p = Path(s)
        if p.exists():
            if p.is_dir():
                return Files(folder_files(p), root=s)
            return Files([p])
        if s.startswith("tfds:"):
            _, parts, n = _split_count(s)
            if not parts or not parts[0] or len(parts) > 2:
                raise ValueError(f"bad dataset spec {s!r}: expected tfds:NAME:SPLIT[:N], e.g. tfds:mnist:test:16")
            src = tfds_source(parts[0], split=parts[1] if len(parts) > 1 and parts[1] else "test", data_dir=data_dir,
                              download=download)
            return src if n is None else Head(src, n)
        if s.startswith("samples:"):
            from shapjax.data import samples

            _, parts, n = _split_count(s)
            if len(parts) != 1 or not parts[0]:
                raise ValueError(f"bad sample spec {s!r}: expected samples:NAME[:N], e.g. samples:mnist:8")
            ds = samples(parts[0])
            src = Indexable(ds.images, labels=ds.labels, name=f"samples:{parts[0]}", class_names=ds.class_names)
            return src if n is None else Head(src, n)
        if s.startswith("idx:"):
            paths = [q for q in s[4:].split(",") if q]
            if not 1 <= len(paths) <= 2:
                raise ValueError(f"bad IDX spec {s!r}: expected idx:IMAGES[,LABELS]")
            return idx_source(paths[0], labels=paths[1] if len(paths) > 1 else None)
        if s.startswith("folder:"):
            return Files(folder_files(s[7:]), root=s[7:])
        if Path(s).suffix.lower() in IMAGE_EXTENSIONS or "/" in s or "\\" in s:
            raise FileNotFoundError(f"image file not found: {s}")
        raise ValueError(f"source: {s!r} is neither a file, a folder nor a spec (tfds:NAME:SPLIT[:N], "
                         "samples:NAME[:N], idx:IMAGES[,LABELS], folder:PATH)")
    if hasattr(spec, "dtype") and hasattr(spec, "ndim") and not isinstance(spec, np.memmap):
        if not np.issubdtype(np.dtype(spec.dtype), np.floating):  # an in-memory array: the library convention
            raise TypeError(f"source: an image array must be float in [0, 1], got dtype {spec.dtype}; convert it "
                            "with x.astype(np.float32) / 255 (files, IDX, tfds and Grain sources convert uint8 "
                            "themselves)")
        if spec.ndim in (3, 4):
            return Indexable(spec, name=f"array{list(spec.shape)}")
    return Indexable(spec)
