"""Segmenters: how an image is split into the players of the Shapley game.

Each segmenter is a small frozen, hashable object (usable as a static argument
to ``jax.jit``) called on images ``[B, H, W, C]`` (or one image ``[H, W, C]``)
and returning segment ids ``[B, H, W]`` int32 with contiguous ids ``0..M_b-1``
in each image:

* :func:`grid` - a regular grid. It depends on the static shape only, so it is a
  numpy constant and works inside ``jax.jit`` on traced images.
* :func:`slic`, :func:`quickshift`, :func:`felzenszwalb` - superpixels from
  scikit-image. They run on the host (numpy) and must be called *before* any
  jitted code, on concrete images.

Also here: :func:`check_segments` (validate user segments once, outside the hot
path) and :func:`get_segmenter` (CLI specs). The binary hierarchy over segments
of the Owen / partition explainer is :func:`shapjax.image.hierarchy.partition_tree`.

References:
  Achanta et al. (2012), "SLIC Superpixels Compared to State-of-the-Art
  Superpixel Methods", IEEE TPAMI 34(11).
  Vedaldi & Soatto (2008), "Quick Shift and Kernel Methods for Mode Seeking",
  ECCV.
  Felzenszwalb & Huttenlocher (2004), "Efficient Graph-Based Image
  Segmentation", IJCV 59(2).
  Ribeiro, Singh & Guestrin (2016), "Why Should I Trust You?", KDD (LIME's
  quickshift defaults).
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import numpy as np

__all__ = [
    "Segmenter",
    "Grid",
    "Slic",
    "Quickshift",
    "Felzenszwalb",
    "grid",
    "slic",
    "quickshift",
    "felzenszwalb",
    "check_segments",
    "relabel",
    "get_segmenter",
]


# --------------------------------------------------------------------------- helpers


def _image_shape(images: Any, name: str = "images") -> tuple[int, int, int, int]:
    """Return (B, H, W, C) of ``[B,H,W,C]`` or ``[H,W,C]`` images (shape only)."""
    shape = tuple(np.shape(images))
    if len(shape) == 3:
        return (1, *shape)
    if len(shape) == 4:
        return shape  # type: ignore[return-value]
    raise ValueError(
        f"`{name}` must be [B, H, W, C] or one image [H, W, C], got shape {shape} "
        "(a grayscale [H, W] image needs a channel axis: image[..., None])."
    )


def _host_images(images: Any, who: str) -> np.ndarray:
    """Concrete float numpy images ``[B, H, W, C]``; a clear error for tracers."""
    if isinstance(images, jax.core.Tracer):
        raise TypeError(
            f"{who} runs on the host (scikit-image) and cannot segment traced images: "
            "segment the images before entering jax.jit / vmap, or use grid(rows, cols)."
        )
    arr = np.asarray(images)
    _image_shape(arr)
    if arr.ndim == 3:
        arr = arr[None]
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    return arr


def relabel(segments: np.ndarray) -> np.ndarray:
    """Map the ids of one label image to contiguous ``0..M-1`` (order kept), int32."""
    _, inverse = np.unique(np.asarray(segments), return_inverse=True)
    return inverse.reshape(np.shape(segments)).astype(np.int32)


# --------------------------------------------------------------------------- segmenters


class Segmenter:
    """Base class: ``seg(images [B,H,W,C] | [H,W,C]) -> segments [B,H,W] int32``."""

    name: str = "segmenter"

    @property
    def fixed_n_segments(self) -> int | None:
        """M known from the segmenter alone (grid), or None (superpixels: depends on the image)."""
        return None

    def describe(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))  # type: ignore[arg-type]
        return f"{self.name}({fields})"

    def __call__(self, images: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Grid(Segmenter):
    """Regular ``rows x cols`` grid (see :func:`grid`)."""

    rows: int
    cols: int
    name = "grid"

    def __post_init__(self):
        for f in ("rows", "cols"):
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"grid `{f}` must be a positive int, got {v!r}.")

    @property
    def n_segments(self) -> int:
        """M = rows * cols, for every image size."""
        return int(self.rows * self.cols)

    @property
    def fixed_n_segments(self) -> int:
        return self.n_segments

    def describe(self) -> str:
        return f"grid({self.rows}x{self.cols})"

    def __call__(self, images: Any) -> np.ndarray:
        B, H, W, _ = _image_shape(images)
        if self.rows > H or self.cols > W:
            raise ValueError(
                f"grid {self.rows}x{self.cols} has more rows/cols than the image has pixels "
                f"({H}x{W}); use at most {H} rows and {W} cols."
            )
        r = (np.arange(H) * self.rows) // H  # floor(i * rows / H), hits every id
        c = (np.arange(W) * self.cols) // W
        seg = (r[:, None] * self.cols + c[None, :]).astype(np.int32)
        return np.broadcast_to(seg, (B, H, W)).copy()


def _number(value, name: str, *, minimum: float, integer: bool = False, inclusive: bool = True,
            maximum: float | None = None):
    """A real (or int) parameter of a segmenter, checked: a ``ValueError`` names it and the range."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value) == int(value)
    if ok:
        v = float(value)
        ok = np.isfinite(v) and (v >= minimum if inclusive else v > minimum) and (maximum is None or v <= maximum)
    if not ok:
        rng = (f">= {minimum}" if inclusive else f"> {minimum}") + (f" and <= {maximum}" if maximum is not None else "")
        raise ValueError(f"{name}: expected {'an int' if integer else 'a number'} {rng}, got {value!r}")
    return int(value) if integer else float(value)


def _per_image(fn, images: np.ndarray) -> np.ndarray:
    return np.stack([relabel(fn(img)) for img in images]).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Slic(Segmenter):
    """SLIC superpixels (see :func:`slic`)."""

    n_segments: int = 50
    compactness: float = 10.0
    sigma: float = 1.0
    name = "slic"

    def __call__(self, images: Any) -> np.ndarray:
        from skimage.segmentation import slic as _slic

        imgs = _host_images(images, "slic")

        def one(img):
            if img.shape[-1] == 1:
                return _slic(img[..., 0], n_segments=self.n_segments, compactness=self.compactness,
                             sigma=self.sigma, start_label=0, channel_axis=None)
            return _slic(img, n_segments=self.n_segments, compactness=self.compactness,
                         sigma=self.sigma, start_label=0, channel_axis=-1)

        return _per_image(one, imgs)


@dataclasses.dataclass(frozen=True)
class Quickshift(Segmenter):
    """Quickshift superpixels (see :func:`quickshift`)."""

    kernel_size: float = 4.0
    max_dist: float = 200.0
    ratio: float = 0.2
    name = "quickshift"

    def __call__(self, images: Any) -> np.ndarray:
        from skimage.segmentation import quickshift as _qs

        imgs = _host_images(images, "quickshift")

        def one(img):
            C = img.shape[-1]
            if C == 1:  # gray -> RGB so the Lab colour distance (and LIME's defaults) apply
                img = np.repeat(img, 3, axis=-1)
                C = 3
            img = img.astype(np.float64)
            if C != 3:  # no Lab conversion: scale [0, 1] to Lab's 0..100 so the defaults mean the same
                img = img * 100.0
            return _qs(img, kernel_size=self.kernel_size, max_dist=self.max_dist,
                       ratio=self.ratio, convert2lab=(C == 3), rng=0, channel_axis=-1)

        return _per_image(one, imgs)


@dataclasses.dataclass(frozen=True)
class Felzenszwalb(Segmenter):
    """Felzenszwalb-Huttenlocher graph segmentation (see :func:`felzenszwalb`)."""

    scale: float = 100.0
    sigma: float = 0.5
    min_size: int = 50
    name = "felzenszwalb"

    def __call__(self, images: Any) -> np.ndarray:
        from skimage.segmentation import felzenszwalb as _fz

        imgs = _host_images(images, "felzenszwalb")

        def one(img):
            if img.shape[-1] == 1:
                return _fz(img[..., 0], scale=self.scale, sigma=self.sigma, min_size=self.min_size,
                           channel_axis=None)
            with warnings.catch_warnings():  # C != 3 is intended as multichannel
                warnings.filterwarnings("ignore", message=".*interpreted as a multichannel", category=RuntimeWarning)
                return _fz(img, scale=self.scale, sigma=self.sigma, min_size=self.min_size, channel_axis=-1)

        return _per_image(one, imgs)


def grid(rows: int, cols: int | None = None) -> Grid:
    """A regular ``rows x cols`` grid of rectangular segments (``M = rows * cols``).

    Works for any image size, including sizes the grid does not divide: pixel
    ``(i, j)`` of an ``H x W`` image gets

    .. math::

       s(i, j) = \\lfloor i \\cdot \\text{rows} / H \\rfloor \\cdot \\text{cols}
                 + \\lfloor j \\cdot \\text{cols} / W \\rfloor ,

    so cell sizes differ by at most one pixel and every id ``0..M-1`` is used
    (needs ``rows <= H`` and ``cols <= W``). The ids depend only on the static
    shape: the result is a numpy array, i.e. a constant under ``jax.jit``.

    Args:
      rows: number of rows of cells.
      cols: number of columns (default: ``rows``).
    """
    return Grid(rows, rows if cols is None else cols)


def slic(n_segments: int = 50, *, compactness: float = 10.0, sigma: float = 1.0) -> Slic:
    """SLIC superpixels (k-means in colour + position space), via scikit-image.

    Runs on the host (numpy, one image at a time) BEFORE any jitted code; call
    it on concrete images, not inside ``jax.jit``. Grayscale (C=1) and colour
    (C=3) images are supported; ids are relabelled to ``0..M_b-1`` per image
    (``M_b`` can differ from ``n_segments`` and between images; the
    ``n_segments`` field is this *target*, ``fixed_n_segments`` is None).

    Args:
      n_segments: approximate number of superpixels.
      compactness: colour vs. space trade-off (higher = squarer segments).
      sigma: Gaussian pre-smoothing width in pixels.

    References:
      Achanta et al. (2012), IEEE TPAMI 34(11).
    """
    return Slic(_number(n_segments, "slic n_segments", minimum=1, integer=True),
                _number(compactness, "slic compactness", minimum=0, inclusive=False),
                _number(sigma, "slic sigma", minimum=0))


def quickshift(*, kernel_size: float = 4, max_dist: float = 200, ratio: float = 0.2) -> Quickshift:
    """Quickshift superpixels with LIME's defaults, via scikit-image.

    Runs on the host (numpy) BEFORE any jitted code. Colour distances are in
    CIELAB; grayscale images are converted to RGB first (other channel counts
    are scaled to 0..100, Lab's lightness range, so the defaults still apply). Ids are relabelled to
    ``0..M_b-1`` per image. Tie-breaking uses a fixed seed (deterministic).

    Args:
      kernel_size: Gaussian kernel width for the density estimate.
      max_dist: cut-off distance for linking pixels (larger = fewer segments).
      ratio: colour vs. space balance in ``[0, 1]``.

    References:
      Vedaldi & Soatto (2008), ECCV; Ribeiro et al. (2016), KDD.
    """
    return Quickshift(_number(kernel_size, "quickshift kernel_size", minimum=0, inclusive=False),
                      _number(max_dist, "quickshift max_dist", minimum=0, inclusive=False),
                      _number(ratio, "quickshift ratio", minimum=0, maximum=1))


def felzenszwalb(scale: float = 100, *, sigma: float = 0.5, min_size: int = 50) -> Felzenszwalb:
    """Felzenszwalb-Huttenlocher graph-based segmentation, via scikit-image.

    Runs on the host (numpy) BEFORE any jitted code. Grayscale and colour
    images are supported; ids are relabelled to ``0..M_b-1`` per image.
    Note the images are in ``[0, 1]``, so ``scale`` is relative to that range.

    Args:
      scale: larger = larger segments.
      sigma: Gaussian pre-smoothing width.
      min_size: minimum segment size in pixels (enforced by merging).

    References:
      Felzenszwalb & Huttenlocher (2004), IJCV 59(2).
    """
    return Felzenszwalb(_number(scale, "felzenszwalb scale", minimum=0, inclusive=False),
                        _number(sigma, "felzenszwalb sigma", minimum=0),
                        _number(min_size, "felzenszwalb min_size", minimum=1, integer=True))


# --------------------------------------------------------------------------- validation


def check_segments(segments: Any, images: Any, *, n_segments: int | None = None):
    """Validate segment ids against images, once, outside the hot path.

    Args:
      segments: ``[H, W]`` (shared by all images) or ``[B, H, W]`` (or
        ``[1, H, W]``) integer segment ids.
      images: ``[B, H, W, C]`` or ``[H, W, C]`` images (only the shape is used).
      n_segments: number of players M. Required when ``segments`` is a traced
        array (inside ``jax.jit``), where ids cannot be inspected: then the
        caller promises ids in ``0..n_segments-1``. With concrete segments it
        may be given to pad M (ids ``>= max id + 1`` are then empty players,
        which get zero attribution); it must be ``> max id``.

    Returns:
      ``(segments [B, H, W] int32, n_segments int)``. With concrete segments,
      ``n_segments = max id + 1`` unless given.

    Raises:
      TypeError: non-integer dtype.
      ValueError: shape mismatch with ``images``, negative ids, ids that are
        not contiguous ``0..M_b-1`` within an image (the missing ids are
        listed), or ``n_segments`` missing for traced segments / too small.

    Images of one batch may have different numbers of segments ``M_b``
    (superpixels): each must use ``0..M_b-1``, and ``M = max_b M_b``.
    """
    B, H, W, _ = _image_shape(images)
    traced = isinstance(segments, jax.core.Tracer)
    seg = segments if traced else np.asarray(segments)
    shape = tuple(seg.shape)
    if len(shape) == 2:
        shape3 = (1, *shape)
    elif len(shape) == 3:
        shape3 = shape
    else:
        raise ValueError(f"`segments` must be [H, W] or [B, H, W], got shape {shape}.")
    if shape3[1:] != (H, W) or shape3[0] not in (1, B):
        raise ValueError(
            f"`segments` shape {shape} does not match `images` [B, H, W, C] = {(B, H, W, _image_shape(images)[3])}: "
            f"expected [{H}, {W}] or [{B}, {H}, {W}]."
        )
    if not np.issubdtype(seg.dtype, np.integer):
        raise TypeError(f"`segments` must have an integer dtype, got {seg.dtype}.")
    if n_segments is not None and (not isinstance(n_segments, (int, np.integer)) or n_segments < 1):
        raise ValueError(f"`n_segments` must be a positive int, got {n_segments!r}.")

    if traced:
        if n_segments is None:
            raise ValueError(
                "`segments` is a traced array (inside jax.jit/vmap), so its ids cannot be checked: "
                "pass n_segments=M and make sure the ids are contiguous 0..M-1."
            )
        import jax.numpy as jnp

        seg = jnp.broadcast_to(seg.reshape(shape3).astype(jnp.int32), (B, H, W))
        return seg, int(n_segments)

    seg = np.broadcast_to(seg.reshape(shape3), (B, H, W))
    if seg.size and seg.min() < 0:
        raise ValueError(f"`segments` ids must be >= 0, found {int(seg.min())}.")
    m = 0
    for b in range(seg.shape[0] if shape3[0] == B else 1):
        ids = np.unique(seg[b])  # sorted; memory ~ the number of pixels, whatever the id values
        mb = int(ids[-1]) + 1
        if ids.size != mb:
            missing = []  # the first 20 missing ids, found from the gaps (never an arange of the max id)
            prev = -1
            for i in ids.tolist():
                missing.extend(range(prev + 1, min(i, prev + 1 + 20 - len(missing))))
                prev = i
                if len(missing) >= 20:
                    break
            shown = ", ".join(map(str, missing)) + (" ..." if mb - ids.size > len(missing) else "")
            raise ValueError(
                f"`segments` ids of image {b} must be contiguous 0..{mb - 1}; {mb - ids.size:,} missing ids: "
                f"[{shown}] (relabel with shapjax.image.segment.relabel)."
            )
        m = max(m, mb)
    if n_segments is not None:
        if n_segments < m:
            raise ValueError(f"`n_segments`={n_segments} is smaller than max segment id + 1 = {m}.")
        m = int(n_segments)
    return np.ascontiguousarray(seg, dtype=np.int32), m


# --------------------------------------------------------------------------- CLI specs

_SPECS = {
    "grid": "grid:RxC (e.g. grid:8x8, grid:4 = 4x4)",
    "slic": "slic[:n_segments] (e.g. slic:50)",
    "quickshift": "quickshift[:kernel_size]",
    "felzenszwalb": "felzenszwalb[:scale] (e.g. felzenszwalb:100)",
}


def _spec_args(name: str, rest: str, primary: str, allowed: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    if not rest:
        return out
    for i, item in enumerate(rest.split(",")):
        key, sep, val = item.partition("=")
        if not sep:
            if i != 0:
                raise ValueError(f"segmenter spec {name!r}: only the first option may be positional, got {item!r}.")
            key, val = primary, item
        key = key.strip()
        if key not in allowed:
            raise ValueError(f"segmenter {name!r} has no option {key!r}; options: {', '.join(allowed)}.")
        try:
            out[key] = float(val)
        except ValueError:
            raise ValueError(f"segmenter {name!r}: option {key}={val!r} is not a number.") from None
    return out


def get_segmenter(spec: str) -> Segmenter:
    """Parse a CLI segmenter spec.

    Valid specs: ``grid:RxC`` (``grid:8x8``; ``grid:N`` = ``NxN``),
    ``slic[:n_segments]``, ``quickshift[:kernel_size]``,
    ``felzenszwalb[:scale]``. Options may also be named:
    ``slic:n_segments=50,compactness=20``.

    Raises:
      ValueError: unknown name or malformed options (the message lists the
        valid specs).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"`spec` must be a non-empty string like 'grid:8x8', got {spec!r}.")
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    valid = "; ".join(_SPECS.values())
    if name == "grid":
        parts = rest.lower().replace(" ", "").split("x") if rest else []
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            nums = []
        if len(nums) not in (1, 2):
            raise ValueError(f"bad grid spec {spec!r}: expected {_SPECS['grid']}.")
        return grid(*nums)
    if name == "slic":
        kw = _spec_args(name, rest, "n_segments", ("n_segments", "compactness", "sigma"))
        if "n_segments" in kw:
            kw["n_segments"] = int(kw["n_segments"])
        return slic(**kw)
    if name == "quickshift":
        return quickshift(**_spec_args(name, rest, "kernel_size", ("kernel_size", "max_dist", "ratio")))
    if name == "felzenszwalb":
        kw = _spec_args(name, rest, "scale", ("scale", "sigma", "min_size"))
        if "min_size" in kw:
            kw["min_size"] = int(kw["min_size"])
        return felzenszwalb(**kw)
    raise ValueError(f"unknown segmenter {name!r} in spec {spec!r}; valid specs: {valid}.")

