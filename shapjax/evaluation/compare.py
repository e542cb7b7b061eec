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
the gradient family ``gradient``, ``gradxinput``, ``ig``, ``smoothgrad``,
``eg`` (expected gradients), ``gradcam``, and the peer libraries on the same
model, players, absence and budget (:mod:`shapjax.evaluation.peers`;
``pip install "shapjax[peers]"``): ``shap:kernel``, ``shap:permutation``,
``shap:partition``, ``captum:kernelshap``, ``captum:shapleyvaluesampling``,
``captum:lime``, ``captum:ig``, ``lime:image``.

Metrics (:data:`METRICS`, each with its direction and full name): deletion /
insertion, ROAD (MoRF, LeRF), region perturbation, IROF, faithfulness
correlation, infidelity, monotonicity (Arya) and monotonicity correlation
(Nguyen & Martinez), the completeness gap, sparseness and complexity, the
pointing game and the mass inside a mask; and, costing a method run each,
max- / avg-sensitivity, random logit and model randomisation.

The command line ``shapjax compare ...`` (:mod:`shapjax.cli.compare`) writes
``results.csv`` (full column names with their direction), ``results.json``
(rows, mean/std per method and metric, rankings) and ``compare.png``.

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

import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.checks import _check_images, _check_key
from shapjax.evaluation._runners import _Ctx, run_method, score
from shapjax.evaluation.peers import PEERS, check_peer
from shapjax.evaluation.registry import (  # noqa: F401 - re-exported: compare's names live in the registry
    _MASK_METRICS,
    _METRIC_ALIASES,
    ALIASES,
    DEFAULT_METHODS,
    DEFAULT_METRICS,
    EXACT_MAX_SEGMENTS,
    METHODS,
    METRICS,
    PEER_METHODS,
    _resolve,
    column_title,
    metric_title,
    resolve_methods,
    resolve_metrics,
)
from shapjax.evaluation.report import CompareResult
from shapjax.image.maskers import Background, Masker
from shapjax.image.segment import Segmenter, check_segments

__all__ = ["METHODS", "ALIASES", "METRICS", "DEFAULT_METHODS", "DEFAULT_METRICS", "PEER_METHODS", "EXACT_MAX_SEGMENTS",
           "CompareResult", "compare", "resolve_methods", "resolve_metrics", "column_title", "metric_title"]


# ----------------------------------------------------------------------------- compare

def compare(model, images, *, key, methods: str | Sequence[str] = DEFAULT_METHODS, segments, masker: Masker,
            n_evals: int = 1024, metrics: str | Sequence[str] = DEFAULT_METRICS, masks=None, labels=None,
            background=None, method_options: dict | None = None, metric_options: dict | None = None,
            batch_size: int | None = None, warmup: bool = False, progress: bool = True) -> CompareResult:
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
      metric_options: ``{metric: {option: value}}`` passed on (e.g. ``{"sensitivity": {"n_samples": 8}}``
        for both sensitivities, ``{"road_morf": {"fractions": [0.1, 0.5]}}``).
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
    for m in methods:
        if METHODS[m].library != "shapjax":
            check_peer(m)
    metrics = resolve_metrics(metrics)
    if "model_randomisation" in metrics and not all(hasattr(model, a) for a in ("params", "replace")):
        raise ValueError("metrics: 'model_randomisation' needs a model with params/replace (a shapjax.models.Classifier)")
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
        mkey = jax.random.fold_in(key, names.index(name))
        opts = method_options.get(name, {})
        if METHODS[name].library != "shapjax":
            ctx.host()  # compile the host callable's chunk shapes before any timing
        if warmup:
            jax.block_until_ready(run_method(name, ctx, mkey, opts)[:2])
        t0 = time.perf_counter()
        pix, segv, evals = run_method(name, ctx, mkey, opts)
        pix, segv = jax.block_until_ready((pix, segv))
        timing[name] = (time.perf_counter() - t0) / B
        evals_per[name] = int(evals)
        if not (bool(jnp.all(jnp.isfinite(pix))) and bool(jnp.all(jnp.isfinite(segv)))):
            raise ValueError(f"method {name!r} returned NaN or infinite attributions")
        maps[name], segvals[name] = np.asarray(pix), np.asarray(segv)
        scores[name] = score(metrics, name, ctx, opts, pix, segv, metric_key, masks, batch_size, metric_options)
        for b in range(B):
            row = {"image": b, "method": name, "library": METHODS[name].library, "family": METHODS[name].family,
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
            "metrics": {m: {"on": METRICS[m].on, "better": METRICS[m].better, "name": METRICS[m].name,
                            "title": metric_title(m)} for m in metrics},
            "peers": {m: {"library": METHODS[m].library, "budget": PEERS[m].budget} for m in methods if m in PEERS},
            "timing": "warm (compilation excluded)" if warmup else "cold (compilation included)",
            "method_options": method_options, "metric_options": metric_options or {}, "jax": jax.__version__, "backend": jax.default_backend()}
    return CompareResult(rows=rows, columns=columns, summary=summary, methods=methods, metrics=metrics, maps=maps,
                         segment_values=segvals, images=np.asarray(images), segments=np.asarray(seg),
                         predicted=np.asarray(pred), probs=probs, labels=labels, masks=masks,
                         class_names=list(getattr(model, "class_names", None) or []) or None, meta=meta)


def _stats(v) -> dict:
    v = np.asarray(v, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}
