"""Figures of counterfactuals: original, perturbation, result, class probabilities before/after."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["counterfactual_figure", "concept_grid"]


def _show(ax, img):
    img = np.clip(np.asarray(img, np.float32), 0.0, 1.0)
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def counterfactual_figure(cf, images, *, class_names: Sequence[str] | None = None,
                          names: Sequence[str] | None = None, max_images: int = 8, title: str | None = None):
    """One row per image: the original, the perturbation, the counterfactual and the class probabilities.

    Args:
      cf: a :class:`shapjax.counterfactual.Counterfactual` for ``images``.
      images: ``[B, H, W, C]`` the original images in [0, 1].
      class_names: ``K`` names (default: the indexes).
      names: ``B`` image names for the row titles.
      max_images: at most this many rows.
      title: figure title.

    The perturbation panel shows ``delta`` summed over channels on a symmetric
    red (brighter) / blue (darker) scale, with its L0 and L1 norms; the bar
    chart shows the probabilities before (grey) and after (colour), the target
    class marked.

    Returns:
      A matplotlib Figure (not attached to pyplot; save with
      :func:`shapjax.plot.save_figure`).
    """
    from matplotlib.figure import Figure

    images = np.asarray(images)
    delta = np.asarray(cf.delta)
    B = min(len(images), int(max_images))
    K = np.asarray(cf.probs).shape[-1]
    class_names = [str(i) for i in range(K)] if class_names is None else [str(c) for c in class_names]
    p0, p1 = np.asarray(cf.probs_before), np.asarray(cf.probs)
    tgt, ok = np.asarray(cf.target), np.asarray(cf.success)
    l0, l1 = np.asarray(cf.l0), np.asarray(cf.l1)
    fig = Figure(figsize=(2.2 * 3 + 0.35 * max(K, 4) + 1.0, 2.3 * B + (0.5 if title else 0.2)))
    gs = fig.add_gridspec(B, 4, width_ratios=[1, 1, 1, 0.16 * max(K, 4) + 0.4], wspace=0.25, hspace=0.55)
    for b in range(B):
        pred0, pred1 = int(p0[b].argmax()), int(p1[b].argmax())
        ax = fig.add_subplot(gs[b, 0])
        _show(ax, images[b])
        name = "" if names is None else (names[b] if len(names[b]) <= 22 else "..." + names[b][-19:]) + "\n"
        ax.set_title(f"{name}{class_names[pred0]} ({p0[b, pred0]:.2f})", fontsize=8)
        ax = fig.add_subplot(gs[b, 1])
        d = delta[b].sum(-1)
        m = max(float(np.abs(d).max()), 1e-6)
        ax.imshow(d, cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"perturbation\nL0 {int(l0[b])}, L1 {l1[b]:.1f}", fontsize=8)
        ax = fig.add_subplot(gs[b, 2])
        _show(ax, np.asarray(cf.counterfactual)[b])
        mark = "ok" if ok[b] else "failed"
        goal = f"-> {class_names[tgt[b]]}" if cf.targeted else f"not {class_names[tgt[b]]}"
        ax.set_title(f"{goal} ({mark})\n{class_names[pred1]} ({p1[b, pred1]:.2f})", fontsize=8)
        ax = fig.add_subplot(gs[b, 3])
        x = np.arange(K)
        ax.bar(x - 0.2, p0[b], width=0.4, color="#9e9e9e", label="before")
        ax.bar(x + 0.2, p1[b], width=0.4, color="#d84315", label="after")
        ax.axvline(tgt[b], color="#1565c0", lw=0.8, ls="--")
        ax.set_ylim(0, 1)
        ax.set_xticks(x)
        ax.set_xticklabels([c[:6] for c in class_names], fontsize=6, rotation=90 if K > 10 else 0)
        ax.tick_params(axis="y", labelsize=6)
        if b == 0:
            ax.legend(fontsize=6, loc="upper right", frameon=False)
            ax.set_title("probabilities", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def concept_grid(rows: Sequence[np.ndarray], *, row_labels: Sequence[str], col_labels: Sequence[str],
                 title: str | None = None, cell: float = 1.1):
    """A grid of images: ``rows[i][j]`` is the image ``[H, W, C]`` of row ``i``, column ``j``.

    Used for concept probing (rows: models, columns: target classes).
    """
    from matplotlib.figure import Figure

    R, C = len(rows), len(rows[0])
    fig = Figure(figsize=(cell * C + 1.2, cell * R + (0.6 if title else 0.3)))
    for i in range(R):
        for j in range(C):
            ax = fig.add_subplot(R, C, i * C + j + 1)
            _show(ax, rows[i][j])
            if i == 0:
                ax.set_title(col_labels[j], fontsize=8)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
