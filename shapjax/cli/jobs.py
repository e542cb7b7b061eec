"""The in-memory job behind ``shapjax demo`` and the helpers of ``shapjax explain``.

``shapjax explain`` streams whole datasets through :func:`shapjax.explain_dataset`
(:mod:`shapjax.cli.explain_job`); :func:`run_job` explains a few in-memory images
in batches with :func:`shapjax.explain` (the demo), writes one figure per batch
(:func:`shapjax.plot.image_plot`) and the raw results (``.npz``), every file
written to a temporary name and moved into place (``os.replace``), so an
interrupted job never leaves a partial file.

Errors caused by the user's input (missing or unreadable file, unknown model,
shape mismatch, bad spec) raise :class:`UsageError`, a ``ValueError`` whose
one-line message the CLI prints as ``shapjax: error: ...``.

References:
  Lundberg & Lee (2017), "A Unified Approach to Interpreting Model
  Predictions", NeurIPS (the image-plot style of the figures).
"""
from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import numpy as np

from shapjax._util.io import atomic_write

RESULTS_NAME = "explanations.npz"


class UsageError(ValueError):
    """Bad input from the user (a file, a name, a spec): a one-line message naming the problem."""


# --------------------------------------------------------------------------- inputs


@functools.lru_cache(maxsize=4)
def _pretrained(name: str):
    """One Classifier object per shipped model, so repeated jobs in a process reuse jax's compiled programs."""
    from shapjax import models

    return models.pretrained(name)


def resolve_model(spec: str, **options):
    """``--model`` (+ ``--arch/--class-names/--normalize/--input-size``) -> :class:`shapjax.models.Classifier`.

    Every spec of :func:`shapjax.models.importers.load_model`: a shipped name, a checkpoint, an orbax folder,
    ``torch:FILE``, ``keras:FILE``, ``onnx:FILE`` or ``module:function``.
    """
    from shapjax import models
    from shapjax.models.importers import load_model

    options = {k: v for k, v in options.items() if v is not None}
    if spec in models.available() and not options:
        return _pretrained(spec)
    try:
        return load_model(spec, **options)
    except (FileNotFoundError, ValueError, TypeError, ImportError) as e:
        raise UsageError(f"--model: {e}") from None


def check_channels(c: int, who: str) -> None:
    if c not in (1, 3):
        raise UsageError(f"model/image shape mismatch: {who} expects {c}-channel images; "
                         "image files can only be converted to 1 (grey) or 3 (RGB) channels")


def read_image(path, input_shape, *, resize: bool = True) -> np.ndarray:
    """Read a PNG/JPEG/... file as a model input ``[H, W, C]`` float32 in [0, 1] (:func:`shapjax.data.files.load_image`).

    Grey/RGB/alpha/palette images are converted to the model's C channels (1 or
    3) and resized (bilinear) to its (H, W); with ``resize=False`` a size
    mismatch is an error.
    """
    from shapjax.data.files import load_image

    H, W, C = input_shape
    check_channels(C, "the model")
    try:
        return load_image(path, size=(H, W), channels=C, resize=resize)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None


# --------------------------------------------------------------------------- the job


def _atomic_write(path: Path, write) -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then ``os.replace`` it."""
    return Path(atomic_write(path, write))


def write_json(path: Path, obj) -> Path:
    return _atomic_write(Path(path), lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def default_model_batch(input_shape) -> int | None:
    """Model batch per evaluated chunk: small chunks are faster on a CPU (cache); None = explain's choice."""
    import jax

    if jax.default_backend() != "cpu":
        return None
    n = max(16, min(256, (1 << 18) // max(1, int(np.prod(input_shape)))))
    return 1 << (n.bit_length() - 1)


class _Probs:
    """Softmax probabilities of a classifier, with ``apply(params, x)`` and ``params`` like the classifier
    itself, so :func:`shapjax.explain` passes the weights as arguments rather than compiled constants."""

    def __init__(self, clf):
        self.clf, self.params = clf, clf.params

    def apply(self, params, x):
        import jax

        return jax.nn.softmax(self.clf.apply(params, x), axis=-1)

    def __call__(self, x):
        return self.apply(self.params, x)


def build_figure(exp, *, class_names, probs, names, labels=None, masks=None, title=None):
    """The batch figure (:func:`shapjax.plot.image_plot`): per image the original, then one overlay per class.

    ``masks [B, H, W]`` (ground truth), when given, are outlined in green on every panel.
    Returns a matplotlib Figure with ``B * (1 + K)`` image panels.
    """
    from shapjax import plot

    B = exp.values.shape[0]
    titles = []
    for b in range(B):
        t = names[b] if len(names[b]) <= 26 else "..." + names[b][-23:]
        if labels is not None and labels[b] >= 0:
            t += f"\nlabel {class_names[labels[b]] if labels[b] < len(class_names) else labels[b]}"
        titles.append(t)
    fig = plot.image_plot(exp, class_names=class_names, probs=probs, max_images=B, image_titles=titles, title=title)
    if masks is not None:  # ground truth outlined on every panel of the row
        ncols = 1 + exp.values.shape[2]
        panels = [ax for ax in fig.axes if ax.images][: B * ncols]
        for i, ax in enumerate(panels):
            ax.contour(masks[i // ncols].astype(float), levels=[0.5], colors=["#00c853"], linewidths=1.0)
    return fig


def run_job(clf, images, names, *, method, n_evals, segments, masker, top_k=3, classes=None, batch_size=8,
            model_batch=None, seed=0, score="logit", out, fig_stem="figure", results_name=RESULTS_NAME,
            labels=None, masks=None, progress=True, dpi=120, metadata=None):
    """Explain ``images [N, H, W, C]`` in batches; write one figure per batch and the ``.npz`` results.

    Returns ``(summary, arrays)``: the summary dict (files, timing, per-image top
    classes and top segments; the caller writes it as JSON, last) and the
    arrays written to ``out/results_name``.
    The batch ``i`` uses the key ``fold_in(key(seed), i)``. Every batch reuses one
    compiled program: superpixels are computed for all images first and every batch
    uses the largest segment count M (smaller images have empty players, valued 0),
    and a short last batch is padded with copies of its last image (dropped from the
    results).
    """
    import jax
    from tqdm.auto import tqdm

    import shapjax
    from shapjax.image.maskers import get_masker
    from shapjax.image.segment import get_segmenter

    check_specs(method, segments, masker)
    segmenter = get_segmenter(segments)
    msk = get_masker(masker, images=images)
    if n_evals < 2:
        raise UsageError(f"--n-evals must be >= 2, got {n_evals}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_classes = len(clf.class_names)
    if classes:
        outputs = [class_index(c, clf.class_names) for c in classes]
    else:
        outputs = f"top-{max(1, min(int(top_k), n_classes))}"
    model_fn = clf if score == "logit" else _Probs(clf)
    mb = model_batch or default_model_batch(clf.input_shape)
    key = jax.random.key(seed)
    N = len(images)
    starts = list(range(0, N, batch_size))
    parts, figures, probs_all = [], [], []
    t0 = time.perf_counter()
    players, n_players = segmenter, None
    if segmenter.fixed_n_segments is None:  # superpixels: segment every image first, one M for all batches
        with tqdm(total=N, desc="segment", unit="img", leave=False, disable=not progress or N < 8) as bar:
            players = np.concatenate([bar.update(1) or segmenter(images[j:j + 1]) for j in range(N)])
        # M = largest count + 1: every batch then has an empty player, so all batches take the same
        # compiled path (explain specialises batches whose images all use every id).
        n_players = int(players.max()) + 2
    with tqdm(total=N, desc="images", unit="img", disable=not progress or len(starts) < 2) as bar:
        for i, s in enumerate(starts):
            x = images[s:s + batch_size]
            seg = players if n_players is None else players[s:s + batch_size]
            n = len(x)
            if len(starts) > 1 and n < batch_size:  # pad the last batch: same shapes, no recompilation
                x = np.concatenate([x, np.repeat(x[-1:], batch_size - n, axis=0)])
                seg = seg if n_players is None else np.concatenate([seg, np.repeat(seg[-1:], batch_size - n, 0)])
            exp = shapjax.explain(model_fn, x, key=jax.random.fold_in(key, i), segments=seg, masker=msk,
                                  method=method, n_evals=n_evals, outputs=outputs, batch_size=mb,
                                  n_segments=n_players, progress=progress)
            x, exp = x[:n], jax.tree_util.tree_map(lambda a: a[:n], exp)
            probs = np.asarray(jax.nn.softmax(clf(jax.numpy.asarray(x)), axis=-1))
            name = f"{fig_stem}.png" if len(starts) == 1 else f"{fig_stem}_{i:03d}.png"
            title = f"{method} | {exp.masker} | {segmenter.describe()} | {exp.n_evals} evals | {score}"
            fig = build_figure(exp, class_names=clf.class_names, probs=probs, names=names[s:s + batch_size],
                               labels=None if labels is None else labels[s:s + batch_size],
                               masks=None if masks is None else masks[s:s + batch_size], title=title)
            shapjax.plot.save_figure(fig, out / name, dpi=dpi)
            K = exp.values.shape[2]
            figures.append({"file": name, "images": list(range(s, s + n)), "rows": n, "panels": n * (1 + K)})
            parts.append(jax.tree_util.tree_map(np.asarray, exp))
            probs_all.append(probs)
            bar.update(len(x))
    seconds = time.perf_counter() - t0
    M = max(int(p.segments.max()) + 1 for p in parts)
    pad = lambda a: np.pad(a[:, :M], ((0, 0), (0, M - min(M, a.shape[1])), (0, 0)))  # noqa: E731
    values = np.concatenate([pad(p.values) for p in parts]).astype(np.float32)
    seg = np.concatenate([p.segments for p in parts]).astype(np.int32)
    out_idx = np.concatenate([p.output_indexes for p in parts]).astype(np.int32)
    probs = np.concatenate(probs_all).astype(np.float32)
    evals = int(parts[0].n_evals) * N
    meta = dict(metadata or {}, model=getattr(clf, "name", "") or "checkpoint", method=method,
                n_evals=int(parts[0].n_evals), segments=segmenter.describe(), masker=parts[0].masker, score=score,
                seed=seed, batch_size=batch_size, class_names=list(clf.class_names),
                shapjax_version=shapjax.__version__)
    arrays = dict(values=values, base_values=np.concatenate([p.base_values for p in parts]).astype(np.float32),
                  full_values=np.concatenate([p.full_values for p in parts]).astype(np.float32), segments=seg,
                  output_indexes=out_idx, n_segments=np.asarray([int(s_.max()) + 1 for s_ in seg], np.int32),
                  images=images.astype(np.float32), probs=probs, names=np.asarray(names),
                  labels=np.asarray(labels if labels is not None else [-1] * N, np.int32),
                  metadata=np.asarray(json.dumps(meta)))
    if all(p.std is not None for p in parts):
        arrays["std"] = np.concatenate([pad(p.std) for p in parts]).astype(np.float32)
    if masks is not None:
        arrays["masks"] = np.asarray(masks, bool)
    _atomic_write(out / results_name, lambda f: np.savez_compressed(f, **arrays))
    summary = {**meta, "n_images": N, "evaluations": evals, "seconds": round(seconds, 3),
               "evaluations_per_second": round(evals / max(seconds, 1e-9), 1), "results": results_name,
               "figures": figures, "images": image_summaries(arrays, clf.class_names)}
    return summary, arrays


def image_summaries(arrays, class_names, *, n_classes: int = 3, n_segments: int = 5) -> list[dict]:
    """Per image: the most probable classes, and for each explained class its highest-valued segments."""
    def cls(b, c):
        return {"class": int(c), "name": class_names[c], "probability": round(float(arrays["probs"][b, c]), 6)}

    out = []
    for b, name in enumerate(arrays["names"]):
        explained = []
        for k, c in enumerate(arrays["output_indexes"][b]):
            v = arrays["values"][b, : arrays["n_segments"][b], k]
            top = np.argsort(-v)[:n_segments]
            explained.append({**cls(b, c), "top_segments": [{"segment": int(j), "value": round(float(v[j]), 6)}
                                                            for j in top]})
        entry = {"name": str(name), "top_classes": [cls(b, c) for c in np.argsort(-arrays["probs"][b])[:n_classes]],
                 "explained": explained}
        if arrays["labels"][b] >= 0:
            entry["label"] = int(arrays["labels"][b])
        out.append(entry)
    return out


def class_index(c: str, class_names) -> int:
    if c in class_names:
        return list(class_names).index(c)
    if c.lstrip("-").isdigit() and 0 <= int(c) < len(class_names):
        return int(c)
    raise UsageError(f"--classes: unknown class {c!r}; classes: {', '.join(class_names)}")


def positive_fraction_in_mask(values, segments, masks) -> np.ndarray:
    """Share of the positive attribution that lies inside a ground-truth mask, per image.

    Each segment's value is spread evenly over its pixels (as in
    :meth:`shapjax.Explanation.to_pixels`); with :math:`a_p` the value of pixel
    :math:`p` for the first explained output and :math:`G` the mask,

    .. math:: f = \\sum_{p \\in G} \\max(a_p, 0) \\big/ \\sum_p \\max(a_p, 0).

    Args:
      values: ``[B, M, K]``; segments: ``[B, H, W]`` int; masks: ``[B, H, W]`` bool.

    Returns:
      ``[B]`` fractions in [0, 1] (0 where nothing is positive).
    """
    values, segments, masks = np.asarray(values), np.asarray(segments), np.asarray(masks, bool)
    out = np.zeros(len(values))
    for b in range(len(values)):
        M = values.shape[1]
        count = np.bincount(segments[b].ravel(), minlength=M)
        inside = np.bincount(segments[b].ravel(), weights=masks[b].ravel().astype(float), minlength=M)
        pos = np.maximum(values[b, :, 0], 0.0)
        tot = pos.sum()
        out[b] = (pos * inside / np.maximum(count, 1)).sum() / tot if tot > 0 else 0.0
    return out


def check_specs(method: str, segments: str, masker: str) -> None:
    """Validate --method/--segments/--masker before any image is read."""
    from shapjax.engine.estimators import get_estimator
    from shapjax.image.maskers import get_masker
    from shapjax.image.segment import get_segmenter

    for opt, fn in (("--method", lambda: get_estimator(method)), ("--segments", lambda: get_segmenter(segments)),
                    ("--masker", lambda: get_masker(masker, images=np.zeros((1, 1, 1, 1), np.float32)))):
        try:
            fn()
        except ValueError as e:
            raise UsageError(f"{opt}: {e}") from None
