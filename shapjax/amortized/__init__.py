"""Amortized explanations: an explainer network trained once (FastSHAP) explains each further image
in one forward pass.

Every Shapley estimator spends hundreds to thousands of model evaluations per image. An explainer
network :math:`\\phi_\\theta(x) \\in \\mathbb{R}^{M \\times K}` trained on the FastSHAP objective
(:mod:`~shapjax.amortized.objective`: Shapley-kernel weighted least squares over sampled, paired
coalitions, efficiency by additive normalisation) outputs Shapley value estimates directly.

- :func:`train` trains one with optax (held-out early stopping, checkpoints, progress bar);
  :func:`make_train_step` / :func:`fastshap_loss` put the objective inside your own training step.
- :class:`Explainer`: ``explainer(images, outputs=...) -> Explanation``, batched and jittable.
- :func:`save` / :func:`load`: flax msgpack + JSON with the model's weight fingerprint, the
  segmentation and the masker beside the weights; :func:`pretrained` / :func:`available` /
  :func:`find`: the shipped explainers (``mnist-cnn`` grid 4x4 and 7x7, ``planted-patch`` grid 4x4,
  all with ``constant(0)``).
- :func:`explain` is what ``shapjax.explain(model, images, method="amortized", ...)`` runs.

References:
  N. Jethani, M. Sudarshan, I. Covert, S.-I. Lee, R. Ranganath. "FastSHAP: Real-time Shapley value
  estimation." ICLR 2022.
  I. Covert, C. Kim, S.-I. Lee. "Learning to estimate Shapley values with vision transformers." ICLR 2023.
"""
from __future__ import annotations

from shapjax.amortized.checkpoint import available, find, load, masker_spec, pretrained, read_metadata, save
from shapjax.amortized.explainer import Explainer, build, fingerprint
from shapjax.amortized.network import ExplainerNet, init_params
from shapjax.amortized.objective import fastshap_loss, normalize, sample_coalitions
from shapjax.amortized.surrogate import train_surrogate
from shapjax.amortized.train import TrainResult, make_train_step, resolve_segments, train


def explain(model, images, *, segments, masker, outputs=None, explainer=None, **ignored):
    """``shapjax.explain(..., method="amortized")``: explain ``images`` with a trained explainer.

    ``explainer`` (an :class:`Explainer`, or the path of an explainer checkpoint) is used when given,
    after checking that it was trained for ``model``'s weights, ``segments`` and ``masker``;
    otherwise the shipped explainer that matches them (:func:`find`), or a ``ValueError`` that says
    none does. ``key`` and ``n_evals`` are accepted and unused (nothing is sampled).
    """
    import numpy as np

    from shapjax._util.checks import check_images

    bad = sorted(set(ignored) - {"key", "n_evals", "batch_size", "progress", "check_result", "n_segments", "checks"})
    if bad:
        raise TypeError(f"explain(method='amortized') got unexpected arguments {bad}")
    x = check_images(images, "images", single_ok=True)
    if explainer is None:
        explainer = find(model, x.shape, segments=segments, masker=masker)
    else:
        if not isinstance(explainer, Explainer):
            explainer = load(explainer, model, masker=masker)
        seg, _, desc = resolve_segments(segments, np.zeros((1,) + tuple(x.shape[1:]), np.float32))
        meta = explainer.meta
        if fingerprint(model) != meta.get("value_model_fingerprint", meta.get("model_fingerprint")):
            raise ValueError(f"explainer: trained for model {meta.get('model_name')!r} (fingerprint "
                             f"{meta.get('model_fingerprint')}), not for the model given (fingerprint "
                             f"{fingerprint(model)})")
        if not np.array_equal(seg, np.asarray(explainer.segments)):
            raise ValueError(f"segments: the explainer was trained on {meta.get('segments')}; got {desc}")
        if masker.describe() != meta.get("masker"):
            raise ValueError(f"masker: the explainer was trained with {meta.get('masker')}; got {masker.describe()}")
    return explainer(x, outputs=outputs)


__all__ = ["train", "TrainResult", "make_train_step", "fastshap_loss", "normalize", "sample_coalitions", "Explainer",
           "ExplainerNet", "init_params", "build", "fingerprint", "save", "load", "read_metadata", "available",
           "find", "pretrained", "masker_spec", "resolve_segments", "train_surrogate", "explain"]
