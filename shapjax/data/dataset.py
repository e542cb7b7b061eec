"""The :class:`Dataset` container and the conversions every source shares (float [0, 1], resize, channels)."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

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
