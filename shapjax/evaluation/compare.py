r"""SHAP against the traditional attribution methods, on the same images, players and class.

:func:`compare` runs every requested method on a batch of images, explaining
for each image the class the model predicts on it, and scores every
(image, method) pair with the metrics of :mod:`shapjax.metrics`. Every method
is brought to the same two forms:

* a **pixel map** ``[B, H, W]`` — Shapley/LIME/occlusion segment values spread
  over their pixels (:meth:`Explanation.to_pixels`, value / pixel count); the
  channel-summed heatmap of the pixel methods
  (:meth:`PixelAttribution.heatmap`). Deletion, insertion, the pointing game
  and the mass inside the mask are computed on it;
* a **segment vector** ``[B, M]`` on the same players — the segment values of
  the Shapley-style methods; the pixel methods summed per segment
  (:meth:`PixelAttribution.to_segments`). Faithfulness correlation (random
  subsets of segments), sparseness and complexity are computed on it.

Absence means the same thing for every method: the masker's replacement image
(mean over its R replacements) is the baseline of gradient x input,
integrated gradients and sliding-window occlusion, and the deletion /
faithfulness baseline.

Methods (aliases in :data:`ALIASES`): the Shapley estimators of
:func:`shapjax.explain` (``kernel``, ``leverage``, ``permutation``,
``antithetic``, ``stratified``, ``partition``, ``exact`` for at most
:data:`EXACT_MAX_SEGMENTS` segments), ``lime``, ``occlusion`` (segment
leave-one-out), ``window-occlusion`` (sliding window, Zeiler & Fergus 2014),
and the gradient family ``gradient``, ``gradxinput``, ``ig``, ``smoothgrad``,
``eg`` (expected gradients), ``gradcam``.

The command line ``shapjax compare ...`` (:mod:`shapjax.cli.compare`) writes
``results.csv``, ``results.json`` (rows + mean/std per method and metric) and
``compare.png``.

References:
  Lundberg & Lee (2017), A unified approach to interpreting model predictions, NeurIPS.
  Ribeiro, Singh & Guestrin (2016), "Why should I trust you?", KDD.
  Zeiler & Fergus (2014), Visualizing and understanding convolutional networks, ECCV.
  Petsiuk, Das & Saenko (2018), RISE, BMVC (deletion / insertion).
  Bhatt, Weller & Moura (2020), Evaluating and aggregating feature-based model
  explanations, IJCAI (faithfulness correlation, complexity).
  Zhang et al. (2018), Top-down neural attention by excitation backprop, IJCV (pointing game).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.checks import _check_images, _check_key
from shapjax.baselines import gradients as G
from shapjax.evaluation import metrics as Mx
from shapjax.image.maskers import Background, Masker
from shapjax.image.segment import Segmenter, check_segments

__all__ = ["METHODS", "ALIASES", "METRICS", "DEFAULT_METHODS", "DEFAULT_METRICS", "EXACT_MAX_SEGMENTS",
           "CompareResult", "compare", "resolve_methods"]


class _Method(NamedTuple):
    label: str  # shown in figures
    family: str  # "shapley" | "surrogate" | "perturbation" | "gradient"


#: Canonical method name -> (label, family). The order fixes each method's PRNG stream.
METHODS: dict[str, _Method] = {n: _Method(lab, fam) for n, lab, fam in (
    ("kernel", "KernelSHAP", "shapley"), ("leverage", "LeverageSHAP", "shapley"),
    ("permutation", "Permutation", "shapley"), ("antithetic", "Antithetic perm.", "shapley"),
    ("stratified", "Stratified perm.", "shapley"), ("partition", "Partition (Owen)", "shapley"),
    ("exact", "Exact Shapley", "shapley"), ("lime", "LIME", "surrogate"),
    ("occlusion", "Occlusion (segments)", "perturbation"), ("window-occlusion", "Occlusion (window)", "perturbation"),
    ("gradient", "Gradient", "gradient"), ("gradxinput", "Gradient x input", "gradient"),
    ("ig", "Integrated grad.", "gradient"), ("smoothgrad", "SmoothGrad", "gradient"),
    ("eg", "Expected grad.", "gradient"), ("gradcam", "Grad-CAM", "gradient"))}
ALIASES = {
    "kernelshap": "kernel", "leverageshap": "leverage", "owen": "partition",
    "sliding-occlusion": "window-occlusion", "occlusion-window": "window-occlusion", "window": "window-occlusion",
    "vanilla": "gradient", "vanilla_gradient": "gradient", "saliency": "gradient",
    "gradient_x_input": "gradxinput", "gxi": "gradxinput", "integrated_gradients": "ig",
    "expected_gradients": "eg", "gradient_shap": "eg", "gradientshap": "eg", "grad_cam": "gradcam",
}
DEFAULT_METHODS = ("kernel", "leverage", "permutation", "antithetic", "partition", "lime", "occlusion",
                   "window-occlusion", "gradient", "gradxinput", "ig", "smoothgrad", "eg", "gradcam")
EXACT_MAX_SEGMENTS = 14  # 2**14 = 16,384 model evaluations per image

#: Metric name -> (what it is computed on, "higher" / "lower" is better, or "" for neither).
METRICS = {
    "deletion": ("pixels", "lower"), "insertion": ("pixels", "higher"),
    "deletion_segments": ("segments", "lower"), "insertion_segments": ("segments", "higher"),
    "faithfulness": ("segments", "higher"), "sparseness": ("segments", ""), "complexity": ("segments", ""),
    "pointing_game": ("pixels", "higher"), "mass": ("pixels", "higher"),
}
DEFAULT_METRICS = ("deletion", "insertion", "faithfulness", "sparseness", "complexity", "pointing_game", "mass")
_MASK_METRICS = ("pointing_game", "mass")


def _resolve(names, valid, aliases, what: str, expand=None) -> tuple[str, ...]:
    names = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for raw in names:
        if not isinstance(raw, str):
            raise TypeError(f"{what}: expected names (str), got {type(raw).__name__}")
        n = raw.strip().lower().replace(" ", "")
        n = next((aliases.get(c, c) for c in (n, n.replace("-", "_"), n.replace("_", "-"))
                  if c in valid or c in aliases), n)
        for m in (expand if n == "all" and expand is not None else [n] if n else []):
            if m not in valid:
                raise ValueError(f"{what}: unknown name {raw.strip()!r}; valid: {', '.join(valid)}"
                                 + (f" (aliases: {', '.join(sorted(aliases))})" if aliases else ""))
            out += [m] if m not in out else []
    return tuple(out)


def resolve_methods(methods: str | Sequence[str], *, n_segments: int | None = None) -> tuple[str, ...]:
    """Canonical method names from names/aliases (a list or a comma-separated string).

    ``"all"`` means :data:`DEFAULT_METHODS` plus ``exact`` when ``n_segments``
    is at most :data:`EXACT_MAX_SEGMENTS`. Duplicates are dropped.
    """
    extra = ("exact",) if n_segments is not None and n_segments <= EXACT_MAX_SEGMENTS else ()
    out = _resolve(methods, METHODS, ALIASES, "methods", DEFAULT_METHODS + extra)
    if not out:
        raise ValueError("methods: expected at least one method name")
    return out


_METRIC_ALIASES = {"pointing": "pointing_game", "faithfulness_correlation": "faithfulness", "attribution_mass": "mass"}


# ----------------------------------------------------------------------------- result

@dataclasses.dataclass(frozen=True, eq=False)
class CompareResult:
    """The comparison table plus the maps behind it (host-side numpy).

    Attributes:
      rows: one dict per (image, method), keys :attr:`columns`.
      columns: ``image, method, family, label, predicted, prob, correct``, the
        metric columns, ``seconds`` (wall-clock per image, the batch time / B)
        and ``model_evals`` (model evaluations per image; a gradient counts as one).
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

    def to_csv(self, path) -> str:
        """Write the table as CSV with the :mod:`csv` module (RFC 4180 quoting; atomically). Returns the path."""
        def cell(v):
            if isinstance(v, float):
                return "" if math.isnan(v) else f"{v:.6g}"
            return v
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([cell(r[c]) for c in self.columns] for r in self.rows)
        return _atomic_write(path, buf.getvalue())

    def to_dict(self) -> dict:
        """JSON-ready dict: ``meta``, ``columns``, ``rows``, ``summary`` (NaN -> None)."""
        return _nan_to_none({"meta": self.meta, "columns": list(self.columns), "rows": self.rows,
                             "summary": self.summary})

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


# ----------------------------------------------------------------------------- runners

@dataclasses.dataclass
class _Ctx:
    model: Any
    images: jax.Array  # [B, H, W, C]
    seg: np.ndarray  # [B, H, W]
    M: int
    masker: Masker
    baseline: jax.Array  # [B, H, W, C] the masker's replacement (mean over R)
    background: jax.Array  # [N, H, W, C] for expected gradients
    pred: jax.Array  # [B] int32
    n_evals: int
    batch_size: Any


def _run_explain(name, ctx, key, opts):
    from shapjax.image.explain import explain

    n_evals = max(ctx.n_evals, ctx.M + 2) if name not in ("exact", "occlusion") else ctx.n_evals
    e = explain(ctx.model, ctx.images, key=key, segments=ctx.seg, masker=ctx.masker, method=name,
                n_evals=n_evals, outputs=ctx.pred[:, None], batch_size=ctx.batch_size, n_segments=ctx.M,
                **opts)
    return e.to_pixels()[..., 0], e.values[..., 0], e.n_evals * ctx.masker.n_replacements()


def _window(ctx, opts):
    H, W = ctx.images.shape[1:3]
    side = max(1, int(round(math.sqrt(H * W / ctx.M))))
    win = opts.get("window", (min(side, H), min(side, W)))
    stride = opts.get("stride", tuple(max(1, w // 2) for w in (win if isinstance(win, tuple) else (win, win))))
    return win, stride


def _run_pixel(name, ctx, key, opts):
    f, x, k, bs = ctx.model, ctx.images, ctx.pred[:, None], ctx.batch_size  # one class per image: [B, 1]
    if name == "gradient":
        a, n = G.vanilla_gradient(f, x, outputs=k, batch_size=bs, **opts), 1
    elif name == "gradxinput":
        a, n = G.gradient_x_input(f, x, outputs=k, baseline=ctx.baseline, batch_size=bs, **opts), 1
    elif name == "ig":
        opts = {"steps": 32, **opts}
        a = G.integrated_gradients(f, x, outputs=k, baseline=ctx.baseline, batch_size=bs, **opts)
        n = opts["steps"] + (1 if opts.get("rule", "trapezoid") == "trapezoid" else 0)
    elif name == "smoothgrad":
        opts = {"n_samples": 32, **opts}
        a, n = G.smoothgrad(f, x, key=key, outputs=k, batch_size=bs, **opts), opts["n_samples"]
    elif name == "eg":
        opts = {"n_samples": 64, **opts}
        a = G.expected_gradients(f, x, ctx.background, key=key, outputs=k, batch_size=bs, **opts)
        n = opts["n_samples"]
    elif name == "gradcam":
        feats = jax.tree_util.Partial(f.features, f.params)
        head = jax.tree_util.Partial(f.head, f.params)
        a, n = G.grad_cam(feats, head, x, outputs=k, batch_size=bs, **opts), 1
    elif name == "window-occlusion":
        win, stride = _window(ctx, opts)
        a = G.occlusion(f, x, outputs=k, window=win, stride=stride, baseline=ctx.baseline, batch_size=bs)
        H, W = x.shape[1:3]
        wp, sp = G._pair(win, "window"), G._pair(stride, "stride")
        n = len(G._window_starts(H, wp[0], sp[0])) * len(G._window_starts(W, wp[1], sp[1])) + 1
    else:  # pragma: no cover - guarded by resolve_methods
        raise ValueError(name)
    return a.heatmap(), a.to_segments(ctx.seg, n_segments=ctx.M), n


def _score(metrics, ctx, pix, segv, key, masks, bs):
    f, x, k, base, seg = ctx.model, ctx.images, ctx.pred[:, None], ctx.baseline, ctx.seg  # [B, 1]
    fns = {
        "deletion": lambda: Mx.deletion(f, x, pix, outputs=k, baseline=base, batch_size=bs).auc,
        "insertion": lambda: Mx.insertion(f, x, pix, outputs=k, batch_size=bs).auc,
        "deletion_segments": lambda: Mx.deletion(f, x, segv, segments=seg, outputs=k, baseline=base,
                                                 batch_size=bs).auc,
        "insertion_segments": lambda: Mx.insertion(f, x, segv, segments=seg, outputs=k, batch_size=bs).auc,
        "faithfulness": lambda: Mx.faithfulness_correlation(f, x, segv, key=key, segments=seg, outputs=k,
                                                            baseline=base, batch_size=bs),
        "sparseness": lambda: Mx.sparseness(segv),
        "complexity": lambda: Mx.complexity(segv),
        "pointing_game": lambda: Mx.pointing_game(pix, masks),
        "mass": lambda: Mx.attribution_mass(pix, masks),
    }
    return {m: np.asarray(fns[m](), np.float64) for m in metrics}


# ----------------------------------------------------------------------------- compare

def compare(model, images, *, key, methods: str | Sequence[str] = DEFAULT_METHODS, segments, masker: Masker,
            n_evals: int = 1024, metrics: str | Sequence[str] = DEFAULT_METRICS, masks=None, labels=None,
            background=None, method_options: dict | None = None, batch_size: int | None = None,
            warmup: bool = False, progress: bool = True) -> CompareResult:
    r"""Run methods x images x metrics and collect a comparison table.

    Each image is explained for the class the model predicts on it,
    :math:`k_b = \arg\max_k f(x_b)_k`, by every method. See the module
    docstring for how maps become comparable and what "absent" means.

    Args:
      model: a :class:`shapjax.models.Classifier` (needed for ``gradcam``) or any
        callable ``images [N, H, W, C] -> logits [N, K]``.
      images: ``[B, H, W, C]`` float in [0, 1].
      key: PRNG key; method ``i`` of :data:`METHODS` uses ``fold_in(key, i)``,
        so a method's result does not depend on which others run.
      methods: names or aliases (list or comma-separated), or ``"all"``.
      segments: the players: a segmenter of :mod:`shapjax.segment` or int ids
        ``[H, W]`` / ``[B, H, W]``.
      masker: what an absent segment becomes (:mod:`shapjax.maskers`).
      n_evals: model-evaluation budget per image of the sampling estimators.
      metrics: names from :data:`METRICS`; ``pointing_game`` and ``mass`` are
        computed only when ``masks`` is given.
      masks: ``[B, H, W]`` (or ``[H, W]``) bool ground-truth regions, or None.
      labels: ``[B]`` int true labels (recorded), or None.
      background: ``[N, H, W, C]`` references of expected gradients; default:
        the masker's background set if it has one, else ``images``.
      method_options: ``{method: {option: value}}`` passed on (e.g.
        ``{"ig": {"steps": 64}}``, ``{"window-occlusion": {"window": 6}}``).
      batch_size: model inputs per chunk (None: each function's default).
      warmup: run each method once before timing it, so ``seconds`` excludes
        compilation (costs a second run); otherwise compilation is included.
      progress: a tqdm progress bar over the methods.

    Returns:
      :class:`CompareResult`.

    Example:
      >>> import jax, shapjax
      >>> from shapjax import maskers, segment
      >>> clf = shapjax.models.pretrained("mnist-cnn")
      >>> x = shapjax.data.samples("mnist").images[:2]
      >>> res = shapjax.compare.compare(clf, x, key=jax.random.key(0), methods="kernel,ig",
      ...                               segments=segment.grid(4, 4), masker=maskers.constant(0.0),
      ...                               n_evals=128, progress=False)
      >>> len(res.rows), res.maps["ig"].shape
      (4, (2, 28, 28))
    """
    key = _check_key(key)
    images = _check_images(images).astype(jnp.float32)
    if not bool(jnp.all(jnp.isfinite(images))):
        raise ValueError("images: contain NaN or infinite values")
    B, H, W, C = images.shape
    if not callable(model):
        raise TypeError(f"model: expected a callable images [N, H, W, C] -> [N, K], got {type(model).__name__}")
    if not isinstance(masker, Masker):
        raise TypeError(f"masker: expected a masker from shapjax.maskers, got {type(masker).__name__}")
    masker.check(images)
    if isinstance(n_evals, bool) or not isinstance(n_evals, (int, np.integer)) or n_evals < 4:
        raise ValueError(f"n_evals: expected an int >= 4, got {n_evals!r}")
    seg_arr = segments(np.asarray(images)) if isinstance(segments, Segmenter) else segments
    if callable(seg_arr):
        raise TypeError("segments: expected a segmenter from shapjax.segment or an int array [H, W] / [B, H, W]")
    seg, M = check_segments(seg_arr, images)
    if M < 2:
        raise ValueError("segments: at least 2 segments are needed")
    methods = resolve_methods(methods, n_segments=M)
    metrics = _resolve(metrics, METRICS, _METRIC_ALIASES, "metrics")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape == (H, W):
            masks = np.broadcast_to(masks, (B, H, W))
        if masks.shape != (B, H, W):
            raise ValueError(f"masks: expected shape {(B, H, W)} or {(H, W)}, got {masks.shape}")
        masks = masks.astype(bool)
    else:
        metrics = tuple(m for m in metrics if m not in _MASK_METRICS)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (B,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels: expected {B} int labels, got {labels.dtype} {labels.shape}")
    if "exact" in methods and M > EXACT_MAX_SEGMENTS:
        raise ValueError(f"methods: 'exact' needs 2**M evaluations; M={M} segments is more than "
                         f"{EXACT_MAX_SEGMENTS} (use a coarser segmentation or drop 'exact')")
    if "gradcam" in methods and not all(hasattr(model, a) for a in ("features", "head", "params")):
        raise ValueError("methods: 'gradcam' needs a model with features/head/params "
                         "(a shapjax.models.Classifier)")
    method_options = dict(method_options or {})
    for m in method_options:
        if resolve_methods([m])[0] not in methods:
            raise ValueError(f"method_options: {m!r} is not among the methods run ({', '.join(methods)})")
    method_options = {resolve_methods([m])[0]: dict(v) for m, v in method_options.items()}

    repl = masker.replacement(images, jnp.asarray(seg), M)  # [B, R, H, W, C]
    baseline = repl.mean(axis=1)
    if background is None:
        background = masker.images if isinstance(masker, Background) else images
    background = _check_images(background, "background").astype(jnp.float32)
    if background.shape[1:] != images.shape[1:]:
        raise ValueError(f"background: expected [N, {H}, {W}, {C}], got {background.shape}")
    logits = jnp.asarray(model(images), jnp.float32)
    if logits.ndim != 2 or logits.shape[0] != B:
        raise ValueError(f"model: expected outputs [B, K] = [{B}, K], got {logits.shape}")
    pred = jnp.argmax(logits, -1).astype(jnp.int32)
    probs = np.asarray(jnp.take_along_axis(jax.nn.softmax(logits, -1), pred[:, None], 1)[:, 0])
    ctx = _Ctx(model, images, seg, M, masker, baseline, background, pred, int(n_evals), batch_size)
    metric_key = jax.random.fold_in(key, 10_000)  # the same random subsets for every method

    from tqdm.auto import tqdm

    names = list(METHODS)
    maps, segvals, rows = {}, {}, []
    scores, timing, evals_per = {}, {}, {}
    bar = tqdm(methods, desc="compare", unit="method", disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        run = _run_explain if METHODS[name].family != "gradient" and name != "window-occlusion" else _run_pixel
        mkey = jax.random.fold_in(key, names.index(name))
        opts = method_options.get(name, {})
        if warmup:
            jax.block_until_ready(run(name, ctx, mkey, opts)[:2])
        t0 = time.perf_counter()
        pix, segv, evals = run(name, ctx, mkey, opts)
        pix, segv = jax.block_until_ready((pix, segv))
        timing[name] = (time.perf_counter() - t0) / B
        evals_per[name] = int(evals)
        if not (bool(jnp.all(jnp.isfinite(pix))) and bool(jnp.all(jnp.isfinite(segv)))):
            raise ValueError(f"method {name!r} returned NaN or infinite attributions")
        maps[name], segvals[name] = np.asarray(pix), np.asarray(segv)
        scores[name] = _score(metrics, ctx, pix, segv, metric_key, masks, batch_size)
        for b in range(B):
            row = {"image": b, "method": name, "family": METHODS[name].family,
                   "label": int(labels[b]) if labels is not None else -1, "predicted": int(pred[b]),
                   "prob": float(probs[b]),
                   "correct": (int(labels[b]) == int(pred[b])) if labels is not None and labels[b] >= 0 else "",
                   **{m: float(scores[name][m][b]) for m in metrics},
                   "seconds": float(timing[name]), "model_evals": int(evals)}
            rows.append(row)
    bar.close()
    columns = tuple(rows[0].keys())
    summary = {m: {**{k: _stats(scores[m][k]) for k in metrics}, "seconds": _stats([timing[m]]),
                   "model_evals": _stats([evals_per[m]])} for m in methods}
    meta = {"n_images": B, "image_shape": [H, W, C], "n_segments": M,
            "segments": segments.describe() if isinstance(segments, Segmenter) else "user array",
            "masker": masker.describe(), "n_evals": int(n_evals), "methods": list(methods),
            "metrics": {m: {"on": METRICS[m][0], "better": METRICS[m][1]} for m in metrics},
            "timing": "warm (compilation excluded)" if warmup else "cold (compilation included)",
            "method_options": method_options, "jax": jax.__version__, "backend": jax.default_backend()}
    return CompareResult(rows=rows, columns=columns, summary=summary, methods=methods, metrics=metrics, maps=maps,
                         segment_values=segvals, images=np.asarray(images), segments=np.asarray(seg),
                         predicted=np.asarray(pred), probs=probs, labels=labels, masks=masks,
                         class_names=list(getattr(model, "class_names", None) or []) or None, meta=meta)


def _stats(v) -> dict:
    v = np.asarray(v, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}
