"""The comparison table: rows per (image, method), summary, rankings, CSV/JSON with full column names, figure."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from typing import Any, Sequence

import numpy as np

from shapjax.evaluation.registry import METHODS, METRICS, column_title, metric_title, resolve_methods

__all__ = ["CompareResult"]


@dataclasses.dataclass(frozen=True, eq=False)
class CompareResult:
    """The comparison table plus the maps behind it (host-side numpy).

    Attributes:
      rows: one dict per (image, method), keys :attr:`columns`.
      columns: ``image, method, library, family, label, predicted, prob, correct``, the
        metric columns, ``seconds`` (wall-clock per image, the batch time / B)
        and ``model_evals`` (model evaluations per image; a gradient counts as one).
        :func:`column_title` gives each its full name (metrics with their direction).
      summary: ``{method: {metric: {"mean", "std", "n"}}}`` over the images.
      methods, metrics: canonical names, in run order.
      maps: ``{method: [B, H, W]}`` pixel maps of the explained class.
      segment_values: ``{method: [B, M]}`` attributions of the same players.
      images: ``[B, H, W, C]``; segments: ``[B, H, W]``; predicted: ``[B]``
        explained (predicted) class; probs: ``[B]`` its softmax probability;
        labels: ``[B]`` or None; masks: ``[B, H, W]`` or None.
      class_names: names of the model's classes, or None.
      meta: settings of the run (segments, masker, budget, timing, ...).
    """

    rows: list
    columns: tuple
    summary: dict
    methods: tuple
    metrics: tuple
    maps: dict
    segment_values: dict
    images: np.ndarray
    segments: np.ndarray
    predicted: np.ndarray
    probs: np.ndarray
    labels: Any
    masks: Any
    class_names: Any
    meta: dict

    def column(self, name: str, method: str | None = None) -> np.ndarray:
        """One column of the table as an array (only the rows of ``method`` if given)."""
        if name not in self.columns:
            raise ValueError(f"name: no column {name!r}; columns: {', '.join(self.columns)}")
        return np.asarray([r[name] for r in self.rows if method is None or r["method"] == method])

    def to_csv(self, path, *, header: str = "full") -> str:
        """Write the table as CSV with the :mod:`csv` module (RFC 4180 quoting; atomically). Returns the path.

        ``header="full"`` names each column in full with its direction
        (``"Deletion AUC (Petsiuk 2018), lower is better"``); ``"keys"`` uses the column keys.
        """
        if header not in ("full", "keys"):
            raise ValueError(f"header: expected 'full' or 'keys', got {header!r}")
        def cell(v):
            if isinstance(v, float):
                return "" if math.isnan(v) else f"{v:.6g}"
            return v
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([column_title(c) for c in self.columns] if header == "full" else self.columns)
        writer.writerows([cell(r[c]) for c in self.columns] for r in self.rows)
        return _atomic_write(path, buf.getvalue())

    def to_dict(self) -> dict:
        """JSON-ready dict: ``meta``, ``columns`` (key, full name, direction), ``rows``, ``summary``,
        ``rankings`` (NaN -> None)."""
        cols = [{"key": c, "name": column_title(c), "better": METRICS[c].better if c in METRICS else
                 ("lower" if c == "seconds" else "")} for c in self.columns]
        return _nan_to_none({"meta": self.meta, "columns": cols, "rows": self.rows, "summary": self.summary,
                             "rankings": self.rankings()})

    def rankings(self) -> dict:
        """``{metric: [method, ...]}`` best first (by the mean over images) for every metric with a direction."""
        out = {}
        for m in self.metrics:
            better = METRICS[m].better
            if not better:
                continue
            means = [(self.summary[k][m]["mean"], k) for k in self.methods if np.isfinite(self.summary[k][m]["mean"])]
            out[m] = [k for _, k in sorted(means, reverse=better == "higher")]
        return out

    def summary_text(self) -> str:
        """Per metric (full name and direction), the methods ranked best first with mean ± std over the images."""
        lines = []
        for m in self.metrics:
            lines.append(metric_title(m) + ":")
            order = self.rankings().get(m, list(self.methods))
            for i, k in enumerate(order, 1):
                s = self.summary[k][m]
                lines.append(f"  {i:2d}. {k:<28s} {s['mean']:10.4g} \u00b1 {s['std']:.2g}")
        lines.append(column_title("seconds") + ":")
        for k in sorted(self.methods, key=lambda k: self.summary[k]["seconds"]["mean"]):
            lines.append(f"      {k:<28s} {self.summary[k]['seconds']['mean']:10.4g}"
                         f"   ({self.summary[k]['model_evals']['mean']:.0f} model evaluations)")
        return "\n".join(lines)

    def to_json(self, path) -> str:
        """Write :meth:`to_dict` as JSON (atomically). Returns the path."""
        return _atomic_write(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    def figure(self, *, max_images: int = 8, methods: Sequence[str] | None = None, panel_size: float = 1.7,
               clip_percentile: float = 99.5, title: str | None = None):
        """Rows = images; columns = the image, then one overlay per method.

        Every overlay shows the pixel map of the same (predicted) class: red
        raises the class, blue lowers it, on a symmetric scale. Each panel is
        scaled to ``±`` its own ``clip_percentile`` of ``|attribution|``, since
        the methods' units differ (logit changes, gradients, ...). Panel titles
        carry the deletion / insertion AUC when they were computed.

        Returns:
          a :class:`matplotlib.figure.Figure` with ``n * (1 + len(methods))``
          image axes and one colour bar.
        """
        from shapjax.plot import pixel_map_plot

        methods = self.methods if methods is None else resolve_methods(methods)
        missing = [m for m in methods if m not in self.maps]
        if missing:
            raise ValueError(f"methods: {missing} were not run (have {list(self.methods)})")
        n = min(int(max_images), self.images.shape[0])
        if n < 1:
            raise ValueError(f"max_images: expected a positive int, got {max_images!r}")
        maps = np.stack([self.maps[m][:n] for m in methods], -1).astype(np.float64)  # [n, H, W, K]
        flat = np.abs(maps).reshape(n, -1, len(methods))
        scale = np.percentile(flat, clip_percentile, axis=1)  # [n, K]
        scale = np.where(scale > 0, scale, np.maximum(flat.max(1), 1e-30))
        maps = np.clip(maps / scale[:, None, None, :], -1.0, 1.0)
        by = {(r["image"], r["method"]): r for r in self.rows}
        titles = []
        for b in range(n):
            row = []
            for m in methods:
                r, t = by[(b, m)], METHODS[m].label
                parts = [f"{k[:3]} {r[k]:.2f}" for k in ("deletion", "insertion") if k in r and np.isfinite(r[k])]
                row.append(t + ("\n" + "  ".join(parts) if parts else ""))
            titles.append(row)
        fig = pixel_map_plot(maps, self.images[:n], titles=titles, image_titles=self._image_titles(n),
                             scale="figure", clip_percentile=None, panel_size=panel_size, max_images=n,
                             cbar_label="attribution to the predicted class (each panel scaled to ±"
                                        f"{clip_percentile:g}th percentile |value|; red raises, blue lowers)",
                             title=title)
        return fig

    def _image_titles(self, n):
        name = lambda k: self.class_names[k] if self.class_names is not None else str(k)  # noqa: E731
        out = []
        for b in range(n):
            k, t = int(self.predicted[b]), f"p={self.probs[b]:.2f}"
            if self.labels is not None and int(self.labels[b]) >= 0:
                t += " \u2713" if int(self.labels[b]) == k else f", true {name(int(self.labels[b]))}"
            out.append(f"pred {name(k)}\n{t}")
        return out

    def save(self, out_dir, *, max_images: int = 8, dpi: int = 110) -> dict:
        """Write ``results.csv``, ``results.json`` and ``compare.png`` into ``out_dir``."""
        from shapjax.plot import save_figure

        os.makedirs(out_dir, exist_ok=True)
        return {"csv": self.to_csv(os.path.join(out_dir, "results.csv")),
                "json": self.to_json(os.path.join(out_dir, "results.json")),
                "png": save_figure(self.figure(max_images=max_images), os.path.join(out_dir, "compare.png"),
                                   dpi=dpi)}


def _atomic_write(path, text: str) -> str:
    from shapjax._util.io import atomic_write

    return atomic_write(path, lambda f: f.write(text.encode()))


def _nan_to_none(x):
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    return x.item() if isinstance(x, np.generic) else x
