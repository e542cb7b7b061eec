"""Reading one image file, or converting one array, to a model's input ``[H, W, C]`` float32 in [0, 1].

The one image reader of the package: the folder source of :func:`shapjax.data.load`,
the streaming sources of :mod:`shapjax.pipeline` and the ``shapjax explain`` command
all read files through :func:`load_image` and convert arrays through
:func:`convert_image`. Conversions that change what the model sees - a colour
image turned grey, a large downscale, an aspect-ratio squash - are recorded in a
:class:`ConversionNotes` and reported once per kind (``logging`` warnings).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from shapjax.data.dataset import _IMAGE_EXTENSIONS, _convert_channels, _resize_one, _to_float

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = tuple(sorted(_IMAGE_EXTENSIONS))
#: a resize by more than this factor (either side) is reported
DOWNSCALE_WARN = 4.0
#: an aspect-ratio change by more than this factor is reported
ASPECT_WARN = 1.2


class ConversionNotes:
    """Counts conversions that change what the model sees; :meth:`report` logs one warning per kind."""

    MESSAGES = {
        "colour-to-grey": "{n} colour image(s) converted to grey for a 1-channel model (e.g. {first}): the model "
                          "never sees their colours",
        "downscale": "{n} image(s) downscaled by more than {f:g}x to the model's {hw} input (e.g. {first}: {what}): "
                     "fine detail is lost",
        "aspect": "{n} image(s) squashed to the model's {hw} aspect ratio (e.g. {first}: {what}): shapes are "
                  "distorted (crop them first to keep proportions)",
    }

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.first: dict[str, tuple[str, str]] = {}
        self.reported: set[str] = set()

    def note(self, kind: str, name: str, what: str = "") -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.first.setdefault(kind, (str(name), what))

    def messages(self, hw=None) -> list[str]:
        out = []
        for kind, n in self.counts.items():
            first, what = self.first[kind]
            out.append(self.MESSAGES[kind].format(n=n, first=first, what=what, f=DOWNSCALE_WARN,
                                                  hw="x".join(map(str, hw)) if hw else "input"))
        return out

    def report(self, hw=None) -> list[str]:
        """Log a warning for every kind not reported yet; returns the new messages."""
        new = [m for k, m in zip(self.counts, self.messages(hw)) if k not in self.reported]
        self.reported |= set(self.counts)
        for m in new:
            log.warning(m)
        return new


def _check_resize(src_hw, dst_hw, name, notes: ConversionNotes | None) -> None:
    if notes is None or tuple(src_hw) == tuple(dst_hw):
        return
    (h, w), (H, W) = src_hw, dst_hw
    what = f"{h}x{w} -> {H}x{W}"
    if max(h / H, w / W) > DOWNSCALE_WARN:
        notes.note("downscale", name, what)
    ratio = (w / h) / (W / H)
    if max(ratio, 1 / ratio) > ASPECT_WARN:
        notes.note("aspect", name, what)


def _is_colour(rgb: np.ndarray) -> bool:
    """True when an ``[H, W, 3]`` image is not grey (its channels differ by more than 2/255 somewhere)."""
    a = np.asarray(rgb, np.float32)
    step = max(1, int(np.sqrt(a.shape[0] * a.shape[1] / 4096)))  # look at ~4096 pixels
    a = a[::step, ::step]
    return bool(np.abs(a - a.mean(-1, keepdims=True)).max() > 2 / 255)


def load_image(path, *, size=None, channels=None, resize: bool = True, notes: ConversionNotes | None = None):
    """Read a PNG/JPEG/... file with PIL as ``[H, W, C]`` float32 in [0, 1].

    Grey/RGB/alpha/palette/16-bit images are converted to ``channels`` (1 or 3;
    None keeps grey files grey and makes the others RGB) and resized (bilinear)
    to ``size = (H, W)``; with ``resize=False`` a size mismatch is an error.

    Raises:
      FileNotFoundError: no such file. ValueError: a folder, an unreadable
      file, or a size mismatch with ``resize=False``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an image file")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grey
                a = np.asarray(im, np.float32)
                a = a / (65535.0 if a.max() > 255 else 255.0)
                im = Image.fromarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8))
            grey_file = im.mode in ("L", "1", "LA")
            if channels is None:
                channels = 1 if grey_file else 3
            if channels == 1 and not grey_file and notes is not None and _is_colour(np.asarray(im.convert("RGB"))):
                notes.note("colour-to-grey", path.name)
            im = im.convert("L" if channels == 1 else "RGB")
    except Image.DecompressionBombError:
        raise ValueError(f"image {path} is too large to read safely (more than {2 * Image.MAX_IMAGE_PIXELS:,} "
                         "pixels, PIL's decompression-bomb limit): downscale it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot read image {path}: {msg}") from None
    if size is not None and (im.height, im.width) != tuple(size):
        H, W = size
        if not resize:
            raise ValueError(f"model/image shape mismatch: {path} is {im.height}x{im.width} but the model "
                             f"expects {H}x{W}x{channels} images (drop --no-resize to resize)")
        _check_resize((im.height, im.width), (H, W), path.name, notes)
        im = im.resize((W, H), Image.BILINEAR)
    a = np.asarray(im, np.float32) / 255.0
    return a[..., None] if a.ndim == 2 else a


def convert_image(img, *, size=None, channels=None, resize: bool = True, name: str = "image",
                  notes: ConversionNotes | None = None) -> np.ndarray:
    """One image array (``[H, W]``, ``[H, W, C]``; uint8 or float in [0, 1]) -> ``[H, W, C]`` float32 in [0, 1].

    The same conversions as :func:`load_image` (channels, bilinear resize), for
    images that come from a dataset rather than a file.
    """
    a = _to_float(np.asarray(img), name)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"{name}: expected an image [H, W] or [H, W, C], got shape {a.shape}")
    if channels == 1 and a.shape[-1] in (3, 4) and notes is not None and _is_colour(a[..., :3]):
        notes.note("colour-to-grey", name)
    a = _convert_channels(a[None], channels)[0]
    if size is not None and a.shape[:2] != tuple(size):
        if not resize:
            raise ValueError(f"model/image shape mismatch: {name} is {a.shape[0]}x{a.shape[1]} but the model "
                             f"expects {size[0]}x{size[1]} images (drop --no-resize to resize)")
        _check_resize(a.shape[:2], size, name, notes)
        a = _resize_one(a, tuple(size))
    return np.ascontiguousarray(a, np.float32)


def folder_files(folder) -> list[Path]:
    """Every image file under ``folder`` (recursively, sorted; hidden files and folders skipped)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise ValueError(f"folder {folder} contains no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files
