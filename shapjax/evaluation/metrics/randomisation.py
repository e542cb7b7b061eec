r"""Randomisation checks: an explanation should depend on the class it explains and on the trained weights.

* :func:`random_logit` — Sixt, Granz & Landgraf (2020): the explanation of the explained class
  against that of a random other class (similar = the method ignores the class).
* :func:`model_randomisation` — Adebayo et al. (2018): the explanation of the trained model
  against that of the model with every layer re-initialised; the layer-by-layer cascade is
  :func:`shapjax.evaluation.sanity.cascading_randomization`.

References:
  Sixt, Granz & Landgraf (2020), When explanations lie: why many modified BP attributions
  fail, ICML.
  Adebayo et al. (2018), Sanity checks for saliency maps, NeurIPS.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from shapjax._util.api import keyword_key
from shapjax._util.checks import _check_images, _check_key
from shapjax._util.modelfn import _n_outputs
from shapjax.evaluation.metrics._base import _check_choice, _explained_outputs, as_heatmap

__all__ = ["random_logit", "off_classes", "model_randomisation", "similarity", "SIMILARITIES"]

SIMILARITIES = ("ssim", "pearson", "spearman", "spearman_abs")


def similarity(a, b, *, kind: str = "ssim") -> jax.Array:
    r"""Row-wise similarity of two batches of attributions ``[B, ...]``.

    ``"ssim"`` (maps ``[B, H, W]``, each min-max scaled; :func:`shapjax.evaluation.sanity.ssim`),
    ``"pearson"``, ``"spearman"`` (ties averaged) or ``"spearman_abs"`` (of :math:`|a|`, Adebayo
    et al.'s choice) on the flattened rows.

    Args:
      a, b: ``[B, ...]`` arrays, PixelAttributions or single-output Explanations.
      kind: one of :data:`SIMILARITIES`.

    Returns:
      ``[B]``.

    References:
      Wang et al. (2004), IEEE TIP (SSIM). Spearman (1904).
    """
    from shapjax.evaluation.metrics._base import _pearson
    from shapjax.evaluation.sanity import spearman, ssim

    kind = _check_choice(kind, "kind", SIMILARITIES)
    a, b = (as_heatmap(v) if hasattr(v, "heatmap") or hasattr(v, "to_pixels") else jnp.asarray(v, jnp.float32)
            for v in (a, b))
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"b: expected the shape of a {a.shape} (a batch [B, ...]), got {b.shape}")
    if kind == "ssim":
        if a.ndim != 3:
            raise ValueError(f"kind: 'ssim' needs maps [B, H, W], got shape {a.shape}; use 'pearson' or 'spearman'")
        return ssim(a, b)
    B = a.shape[0]
    a, b = a.reshape(B, -1), b.reshape(B, -1)
    if kind == "pearson":
        return _pearson(a, b)
    if kind == "spearman_abs":
        a, b = jnp.abs(a), jnp.abs(b)
    return spearman(a, b)


@keyword_key
def random_logit(model_fn, explain_fn: Callable, images, *, key, outputs="auto", attributions=None,
                 similarity_kind: str = "ssim", batch_size=None) -> jax.Array:
    r"""Random-logit test (Sixt et al. 2020; lower is better).

    For each image the explained class :math:`k` and an off class :math:`k' \ne k` drawn
    uniformly:

    .. math:: \mathrm{RL} = \mathrm{sim}\big(a_k(x), a_{k'}(x)\big)

    A method whose map barely changes with the class (an edge detector, many modified
    back-propagation rules) scores close to 1.

    Args:
      model_fn: ``images [N, H, W, C] -> [N, K]``, K >= 2.
      explain_fn: ``(images [B, H, W, C], outputs [B, 1] int32) -> attributions``.
      images: ``[B, H, W, C]``.
      key: PRNG key of the off classes.
      outputs: the explained class (``"auto"``: ``attributions``' own, else ``"top-1"``).
      attributions: :math:`a_k(x)` if already computed.
      similarity_kind: see :func:`similarity` (Quantus' default is SSIM, on flattened maps).
      batch_size: model inputs per chunk when resolving ``"top-1"``.

    Returns:
      ``[B]`` similarity.

    References:
      Sixt, Granz & Landgraf (2020), When explanations lie: why many modified BP attributions
      fail, ICML.
    """
    key = _check_key(key)
    images = _check_images(images)
    if not callable(explain_fn):
        raise TypeError(f"explain_fn: expected a callable (images, outputs) -> attributions, "
                        f"got {type(explain_fn).__name__}")
    _check_choice(similarity_kind, "similarity_kind", SIMILARITIES)
    K = _n_outputs(model_fn, images)
    if K < 2:
        raise ValueError(f"model_fn: the random-logit test needs at least 2 outputs, got {K}")
    images, k = _explained_outputs(model_fn, images, outputs, attributions, batch_size, "model_fn")
    off = off_classes(k, K, key=key)
    a = explain_fn(images, k[:, None]) if attributions is None else attributions
    return similarity(a, explain_fn(images, off[:, None]), kind=similarity_kind)


@keyword_key
def off_classes(classes, n_classes: int, *, key) -> jax.Array:
    """``[B]`` classes drawn uniformly among the ``n_classes - 1`` that differ from ``classes [B]``.

    References:
      Sixt, Granz & Landgraf (2020), ICML (the random-logit test's off class).
    """
    key = _check_key(key)
    classes = jnp.asarray(classes, jnp.int32)
    shift = jax.random.randint(key, classes.shape, 1, n_classes)
    return (classes + shift) % n_classes


@keyword_key
def model_randomisation(model, explain_fn: Callable, images, *, key, outputs="auto", attributions=None,
                        layers=None, similarity_kind: str = "spearman_abs", batch_size=None) -> jax.Array:
    r"""Model-parameter randomisation (Adebayo et al. 2018; lower is better).

    Every layer of ``model`` (a :class:`shapjax.models.Classifier`) is re-initialised
    (:func:`shapjax.evaluation.sanity.randomize_layers`) and the explanation of the same class
    is compared with the trained model's:

    .. math:: \mathrm{MPR} = \mathrm{sim}\big(a(x; \theta), a(x; \tilde\theta)\big)

    Args:
      model: a Classifier (``params`` and ``replace(params=...)``).
      explain_fn: ``(model, images [B, H, W, C], outputs [B, 1]) -> attributions``.
      images: ``[B, H, W, C]``.
      key: PRNG key of the re-initialisation.
      outputs: the explained class (``"auto"``: ``attributions``' own, else the trained model's ``"top-1"``).
      attributions: :math:`a(x; \theta)` if already computed.
      layers: the layers to re-initialise (default: all, :func:`shapjax.evaluation.sanity.layer_order`).
      similarity_kind: see :func:`similarity` (default: Spearman of :math:`|a|`).
      batch_size: model inputs per chunk when resolving ``"top-1"``.

    Returns:
      ``[B]`` similarity.

    References:
      Adebayo et al. (2018), Sanity checks for saliency maps, NeurIPS.
    """
    from shapjax.evaluation.sanity import layer_order, randomize_layers

    key = _check_key(key)
    images = _check_images(images)
    if not (hasattr(model, "params") and hasattr(model, "replace")):
        raise TypeError(f"model: expected a shapjax.models.Classifier (params, replace), got {type(model).__name__}")
    if not callable(explain_fn):
        raise TypeError(f"explain_fn: expected a callable (model, images, outputs) -> attributions, "
                        f"got {type(explain_fn).__name__}")
    _check_choice(similarity_kind, "similarity_kind", SIMILARITIES)
    images, k = _explained_outputs(model, images, outputs, attributions, batch_size, "model")
    layers = layer_order(model.params) if layers is None else list(layers)
    rand = model.replace(params=randomize_layers(model.params, layers, key=key))
    a = explain_fn(model, images, k[:, None]) if attributions is None else attributions
    return similarity(a, explain_fn(rand, images, k[:, None]), kind=similarity_kind)
