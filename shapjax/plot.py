"""Figures: segment attributions overlaid on the images (shap-style image plot).

One row per image: the original image, then one panel per explained output
with the image in light gray underneath and the attribution overlaid in a
diverging colormap - red where the region raises the output, blue where it
lowers it, transparent near zero - on a symmetric colour scale, with a colour
bar. :func:`pixel_map_plot` draws pixel-level maps (gradient methods) the same
way.

Figures are plain :class:`matplotlib.figure.Figure` objects created without
``pyplot``: no backend is chosen on import and nothing is registered in
pyplot's global state (so making many figures in a loop does not leak). A
notebook displays a returned figure; :func:`save_figure` writes it with the
Agg canvas, atomically.

References:
  Lundberg & Lee (2017), "A Unified Approach to Interpreting Model
  Predictions", NeurIPS (the image plot style).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "red_transparent_blue",
    "red_white_blue",
    "image_plot",
    "pixel_map_plot",
    "save_figure",
    "save_image_plot",
]

_BLUE = np.array([30, 136, 229]) / 255.0  # negative attributions
_RED = np.array([255, 13, 87]) / 255.0  # positive attributions


def red_transparent_blue(n: int = 256):
    """Diverging colormap blue (-) -> transparent (0) -> red (+), for overlays."""
    from matplotlib.colors import ListedColormap

    t = np.linspace(-1.0, 1.0, n)
    rgb = np.where(t[:, None] < 0, _BLUE, _RED)
    alpha = np.abs(t) ** 0.8
    return ListedColormap(np.concatenate([rgb, alpha[:, None]], axis=1), name="red_transparent_blue")


def red_white_blue(n: int = 256):
    """Opaque diverging colormap blue (-) -> white (0) -> red (+)."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("red_white_blue", [_BLUE, (1.0, 1.0, 1.0), _RED], N=n)


# --------------------------------------------------------------------------- helpers


def _gray(image: np.ndarray) -> np.ndarray:
    """``[H, W, C] -> [H, W]`` luminance in [0, 1]."""
    if image.shape[-1] >= 3:
        return image[..., :3] @ np.array([0.299, 0.587, 0.114])
    return image.mean(axis=-1)


def _show_image(ax, image: np.ndarray) -> None:
    img = np.clip(image, 0.0, 1.0)
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    elif img.shape[-1] == 3:
        ax.imshow(img, interpolation="nearest")
    else:
        ax.imshow(_gray(img), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")


def _boundary_lines(seg: np.ndarray) -> np.ndarray:
    """``[L, 2, 2]`` line segments on the pixel edges between different segments (imshow coords)."""
    i, j = np.nonzero(seg[:, :-1] != seg[:, 1:])  # vertical edge right of (i, j)
    v = np.stack([np.stack([j + 0.5, i - 0.5], -1), np.stack([j + 0.5, i + 0.5], -1)], 1)
    i, j = np.nonzero(seg[:-1, :] != seg[1:, :])  # horizontal edge below (i, j)
    h = np.stack([np.stack([j - 0.5, i + 0.5], -1), np.stack([j + 0.5, i + 0.5], -1)], 1)
    return np.concatenate([v, h]).astype(np.float64)


def _limit(maps: np.ndarray, clip_percentile: float | None) -> float:
    a = np.abs(maps[np.isfinite(maps)])
    if a.size == 0:
        return 1.0
    v = np.percentile(a, clip_percentile) if clip_percentile is not None else a.max()
    return float(v) if v > 0 else 1.0


def _new_figure(fig, figsize):
    from matplotlib.figure import Figure

    if fig is None:
        return Figure(figsize=figsize, layout="constrained")
    fig.clear()
    fig.set_layout_engine("constrained")
    return fig


def _grid_figure(
    images: np.ndarray,  # [n, H, W, C]
    maps: np.ndarray,  # [n, H, W, k]
    *,
    col_titles: Sequence[Sequence[str]],  # [n][k]
    image_titles: Sequence[str] | None,
    segments: np.ndarray | None,  # [n, H, W] for boundaries
    scale: str,
    clip_percentile: float | None,
    cbar_label: str,
    title: str | None,
    panel_size: float,
    fig,
    cmap,
    background_alpha: float,
):
    n, H, W, k = maps.shape
    if scale not in ("row", "figure"):
        raise ValueError(f"`scale` must be 'row' or 'figure', got {scale!r}.")
    cmap = red_transparent_blue() if cmap is None else cmap
    aspect = H / W
    ncols = 1 + k
    figsize = (panel_size * ncols + 0.9, panel_size * aspect * n + 0.45 * n + (0.5 if title else 0.0)
               + (0.6 if scale == "figure" else 0.0))
    fig = _new_figure(fig, figsize)
    axes = np.atleast_2d(fig.subplots(n, ncols, squeeze=False))
    vfig = _limit(maps, clip_percentile)
    mappable = None
    for i in range(n):
        ax0 = axes[i, 0]
        _show_image(ax0, images[i])
        ax0.set_title(image_titles[i] if image_titles is not None else "image", fontsize=9)
        v = _limit(maps[i], clip_percentile) if scale == "row" else vfig
        gray = _gray(np.clip(images[i], 0.0, 1.0))
        for j in range(k):
            ax = axes[i, j + 1]
            ax.imshow(gray, cmap="gray", vmin=0.0, vmax=1.0, alpha=background_alpha, interpolation="nearest")
            mappable = ax.imshow(maps[i, :, :, j], cmap=cmap, vmin=-v, vmax=v, interpolation="nearest")
            if segments is not None:
                from matplotlib.collections import LineCollection

                ax.add_collection(LineCollection(_boundary_lines(segments[i]), colors=[(0.3, 0.3, 0.3, 0.45)],
                                                 linewidths=0.5))
                ax.set_xlim(-0.5, W - 0.5)
                ax.set_ylim(H - 0.5, -0.5)
            ax.set_title(col_titles[i][j], fontsize=9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
        if scale == "row" and k > 0:
            cb = fig.colorbar(mappable, ax=list(axes[i, 1:]), location="right", shrink=0.9, aspect=12, pad=0.02)
            cb.ax.tick_params(labelsize=7)
            cb.outline.set_visible(False)
            cb.set_label(cbar_label, fontsize=8)
    if scale == "figure" and k > 0:
        cb = fig.colorbar(mappable, ax=list(axes.ravel()), location="bottom", shrink=0.5,
                          aspect=40, pad=0.02)
        cb.ax.tick_params(labelsize=8)
        cb.outline.set_visible(False)
        cb.set_label(cbar_label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _output_title(idx: int, b: int, class_names, probs) -> str:
    name = str(class_names[idx]) if class_names is not None and 0 <= idx < len(class_names) else f"class {idx}"
    if probs is not None:
        return f"{name} (p={float(probs[b, idx]):.2f})"
    return name


# --------------------------------------------------------------------------- public


def image_plot(
    explanation: Any,
    *,
    class_names: Sequence[str] | None = None,
    probs: Any = None,
    max_images: int = 8,
    max_outputs: int | None = None,
    title: str | None = None,
    image_titles: Sequence[str] | None = None,
    scale: str = "row",
    show_boundaries: bool = True,
    clip_percentile: float | None = None,
    cbar_label: str | None = None,
    panel_size: float = 2.2,
    background_alpha: float = 0.3,
    cmap: Any = None,
    fig: Any = None,
):
    """Plot segment attributions over the images, one row per image.

    Each output panel shows ``values[b, j, k]`` on every pixel of segment ``j``
    (the segment's value itself, not divided by its pixel count), over the
    image in light gray, with segment boundaries faintly drawn.

    Args:
      explanation: a :class:`shapjax.explain.Explanation` (``values [B,M,K]``,
        ``segments [B,H,W]``, ``images [B,H,W,C]``, ``output_indexes [B,K]``).
      class_names: names indexed by class id (``output_indexes`` values).
      probs: ``[B, n_classes]`` model probabilities, indexed by class id;
        shown in the panel titles.
      max_images: plot at most this many images (rows).
      max_outputs: plot at most this many outputs per image (default: all K).
      title: figure title.
      image_titles: ``[B]`` titles for the original-image column.
      scale: ``"row"`` - a symmetric colour scale and colour bar per image
        row; ``"figure"`` - one scale for all rows and one colour bar below.
      show_boundaries: draw segment boundaries.
      clip_percentile: set the scale to this percentile of ``|value|``
        (default: the maximum).
      cbar_label: colour bar label (default from ``explanation.method``).
      panel_size: inches per panel.
      background_alpha: opacity of the gray image under the overlay.
      cmap: a matplotlib colormap (default :func:`red_transparent_blue`).
      fig: draw into this existing Figure (cleared) instead of a new one.

    Returns:
      A :class:`matplotlib.figure.Figure` with ``n_rows * (1 + n_outputs)``
      image axes plus the colour-bar axes.
    """
    values = np.asarray(explanation.values, dtype=np.float64)
    segments = np.asarray(explanation.segments)
    images = np.asarray(explanation.images, dtype=np.float64)
    out_idx = np.asarray(explanation.output_indexes)
    if values.ndim != 3 or segments.ndim != 3 or images.ndim != 4:
        raise ValueError(
            "`explanation` must have values [B,M,K], segments [B,H,W], images [B,H,W,C]; got "
            f"{values.shape}, {segments.shape}, {images.shape}."
        )
    B, _, K = values.shape
    if max_images < 1:
        raise ValueError(f"`max_images` must be >= 1, got {max_images}.")
    n = min(B, max_images)
    k = K if max_outputs is None else max(0, min(K, int(max_outputs)))
    if probs is not None:
        probs = np.asarray(probs)
        if probs.ndim != 2 or probs.shape[0] != B or (out_idx.size and probs.shape[1] <= out_idx.max()):
            raise ValueError(
                f"`probs` must be [B, n_classes] = [{B}, > {int(out_idx.max()) if out_idx.size else 0}] "
                f"indexed by class id, got shape {probs.shape}."
            )
    if image_titles is not None and len(image_titles) < n:
        raise ValueError(f"`image_titles` needs at least {n} entries, got {len(image_titles)}.")
    maps = np.stack([values[b][:, :k][segments[b]] for b in range(n)])  # [n, H, W, k]
    col_titles = [[_output_title(int(out_idx[b, j]), b, class_names, probs) for j in range(k)] for b in range(n)]
    method = getattr(explanation, "method", "")
    label = cbar_label if cbar_label is not None else (f"value ({method})" if method else "segment value")
    return _grid_figure(
        images[:n], maps, col_titles=col_titles, image_titles=image_titles,
        segments=segments[:n] if show_boundaries else None, scale=scale, clip_percentile=clip_percentile, cbar_label=label, title=title, panel_size=panel_size,
        fig=fig, cmap=cmap, background_alpha=background_alpha,
    )


def pixel_map_plot(
    attributions: Any,
    images: Any,
    *,
    titles: Sequence[str] | Sequence[Sequence[str]] | None = None,
    max_images: int = 8,
    max_outputs: int | None = None,
    title: str | None = None,
    image_titles: Sequence[str] | None = None,
    scale: str = "row",
    clip_percentile: float | None = 99.5,
    cbar_label: str = "attribution",
    panel_size: float = 2.2,
    background_alpha: float = 0.3,
    cmap: Any = None,
    fig: Any = None,
):
    """Plot pixel-level attribution maps (e.g. gradients) with the image-plot styling.

    Args:
      attributions: ``[B, H, W]`` or ``[B, H, W, K]`` per-pixel attributions
        (sum over channels first for ``[B, H, W, C]`` gradients).
      images: ``[B, H, W, C]`` the explained images in [0, 1].
      titles: one title per output column (``[K]``) or per panel (``[B][K]``).
      clip_percentile: colour scale at this percentile of ``|attribution|``
        (gradient maps are heavy-tailed; ``None`` = maximum).
      Other arguments as in :func:`image_plot`.

    Returns:
      A :class:`matplotlib.figure.Figure`.
    """
    a = np.asarray(attributions, dtype=np.float64)
    imgs = np.asarray(images, dtype=np.float64)
    if imgs.ndim != 4:
        raise ValueError(f"`images` must be [B, H, W, C], got shape {imgs.shape}.")
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[:3] != imgs.shape[:3]:
        raise ValueError(
            f"`attributions` must be [B, H, W] or [B, H, W, K] with B, H, W = {imgs.shape[:3]}, "
            f"got shape {np.shape(attributions)}."
        )
    n = min(a.shape[0], max_images)
    k = a.shape[3] if max_outputs is None else max(0, min(a.shape[3], int(max_outputs)))
    if titles is None:
        col_titles = [["attribution" if a.shape[3] == 1 else f"output {j}" for j in range(k)]] * n
    elif len(titles) and not isinstance(titles[0], str):
        col_titles = [list(t)[:k] for t in titles][:n]
    else:
        col_titles = [list(titles)[:k]] * n
    if len(col_titles) < n or any(len(t) < k for t in col_titles):
        raise ValueError(f"`titles` must give {k} column titles (or [{n}][{k}]), got {titles!r}.")
    return _grid_figure(
        imgs[:n], a[:n, :, :, :k], col_titles=col_titles, image_titles=image_titles, segments=None, scale=scale,
        clip_percentile=clip_percentile, cbar_label=cbar_label, title=title, panel_size=panel_size, fig=fig,
        cmap=cmap, background_alpha=background_alpha,
    )


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 150) -> str:
    """Write ``fig`` with the Agg canvas, atomically (temp file + ``os.replace``).

    The format follows the file suffix (PNG when there is none). Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    FigureCanvasAgg(fig)
    from shapjax._util.io import atomic_write

    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))


def save_image_plot(explanation: Any, path: str | os.PathLike, *, dpi: int = 150, **kwargs) -> str:
    """:func:`image_plot` then :func:`save_figure` (atomic PNG write). Returns the path."""
    return save_figure(image_plot(explanation, **kwargs), path, dpi=dpi)
