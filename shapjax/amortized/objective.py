r"""The FastSHAP objective: Shapley-kernel weighted least squares over sampled coalitions.

For an image :math:`x` with game :math:`v_x(S)` (the model's outputs on the image
with the segments outside :math:`S` masked) the explainer :math:`\phi_\theta(x)
\in \mathbb{R}^{M \times K}` minimises

.. math::

    \mathcal{L}(\theta) = \mathbb{E}_x\, \mathbb{E}_{S \sim p}
        \big\| v_x(S) - v_x(\emptyset) - \mathbf{1}_S^\top \tilde\phi_\theta(x) \big\|^2,
    \qquad p(S) \propto \frac{M-1}{\binom{M}{|S|}\,|S|\,(M-|S|)},

where :math:`\tilde\phi` is :math:`\phi` after additive normalisation,
:math:`\tilde\phi_i = \phi_i + \frac{1}{M}\big(v_x(\mathbf 1) - v_x(\emptyset) - \sum_j \phi_j\big)`,
so that efficiency holds exactly. For one image the unique minimiser of the inner
expectation under that constraint is the Shapley value (Charnes et al. 1988;
Lundberg & Lee 2017), so a network trained on the expectation over images learns
to output Shapley values. Coalitions are sampled in pairs :math:`(S, \bar S)`
(paired sampling, Covert & Lee 2021), which lowers the variance of the gradient.

Everything here is pure and jittable; randomness comes only from ``key``.

References:
  N. Jethani et al. "FastSHAP: Real-time Shapley value estimation." ICLR 2022.
  I. Covert, C. Kim, S.-I. Lee. "Learning to estimate Shapley values with vision
  transformers." ICLR 2023.
  I. Covert, S.-I. Lee. "Improving KernelSHAP: practical Shapley value estimation
  using linear regression." AISTATS 2021.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from shapjax.engine.samplers import random_subsets
from shapjax.kernels.masking import compose_rows
from shapjax.kernels.weights import shapley_kernel_size_mass


def sample_coalitions(n_images: int, n_players: int, n_pairs: int, *, key) -> jax.Array:
    """Paired coalitions ``[n_images, 2 * n_pairs, M]`` bool: sizes drawn from the Shapley kernel's size
    distribution, members uniform given the size; row ``2p + 1`` is the complement of row ``2p``."""
    M = int(n_players)
    mass = jnp.asarray(shapley_kernel_size_mass(M), jnp.float32)
    k_size, k_sub = jax.random.split(key)
    n = int(n_images) * int(n_pairs)
    sizes = jax.random.categorical(k_size, jnp.log(jnp.maximum(mass, 1e-30)), shape=(n,))
    Z = random_subsets(sizes, M, key=k_sub)  # [n, M]
    Z = jnp.stack([Z, ~Z], axis=1)  # [n, 2, M]
    return Z.reshape(int(n_images), 2 * int(n_pairs), M)


def replacement_images(masker, images: jax.Array, seg: jax.Array, n_players: int) -> jax.Array:
    """``masker``'s replacement images for ``images`` ``[B, H, W, C]`` under one segmentation ``seg`` ``[H, W]``:
    ``[B, ...]``, or ``[1, ...]`` when it is the same for every image."""
    repl = masker.replacement(images, jnp.broadcast_to(seg, (images.shape[0],) + seg.shape), n_players)
    return repl[:1] if masker.same_for_every_image() else repl


def shared_empty(masker) -> bool:
    """True when the fully masked image is the same for every image (constant colour, background set)."""
    from shapjax.image.maskers import Constant

    return isinstance(masker, Constant) or bool(masker.same_for_every_image())


def normalize(raw: jax.Array, v0: jax.Array, v1: jax.Array) -> jax.Array:
    """Additive efficiency normalisation: ``raw [B, M, K]`` -> values that sum to ``v1 - v0`` over M."""
    M = raw.shape[1]
    gap = (v1 - v0) - raw.sum(axis=1)  # [B, K]
    return raw + gap[:, None, :] / M


def _outputs(model_fn: Callable, x: jax.Array, classes: Optional[jax.Array]) -> jax.Array:
    """``model_fn`` on ``x [n, R, H, W, C]`` -> ``[n, K]`` (mean over the R replacements), columns ``classes``."""
    n, R = x.shape[:2]
    out = jnp.asarray(model_fn(x.reshape((n * R,) + x.shape[2:])), jnp.float32).reshape(n, R, -1).mean(1)
    return out if classes is None else out[:, classes]


def game_values(model_fn: Callable, images: jax.Array, segments: jax.Array, replacement: jax.Array,
                Z: jax.Array, *, classes: Optional[jax.Array] = None) -> jax.Array:
    """``v_x(S)`` for coalitions ``Z [B, P, M]`` of images ``[B, H, W, C]`` -> ``[B, P, K]``.

    ``segments`` is ``[H, W]`` (one segmentation for every image), ``replacement``
    ``[B or 1, R, H, W, C]`` what the masker puts in place of absent segments.
    """
    B, P, M = Z.shape
    H, W = segments.shape
    rows = jnp.repeat(jnp.arange(B), P)
    repl = replacement[rows] if replacement.shape[0] > 1 else replacement
    seg = jnp.broadcast_to(segments, (B * P, H, W))
    x = compose_rows(images[rows], repl, seg, Z.reshape(B * P, M))
    return _outputs(model_fn, x, classes).reshape(B, P, -1)


def end_values(model_fn: Callable, images: jax.Array, segments: jax.Array, replacement: jax.Array, *,
               classes: Optional[jax.Array] = None, n_players: Optional[int] = None, shared_empty: bool = False):
    """``(v(empty) [B, K], v(all) [B, K])``: the model on the fully masked and on the unmasked images.

    ``shared_empty``: the fully masked image is the same for every image (a constant colour, a
    background set), so the model runs on it once.
    """
    B = images.shape[0]
    H, W = segments.shape
    M = int(n_players) if n_players is not None else 1
    if shared_empty:  # the fully masked image does not depend on the image: one evaluation serves the batch
        empty = compose_rows(images[:1], replacement[:1], segments[None], jnp.zeros((1, M), bool))
        v0 = _outputs(model_fn, empty, classes)
        return jnp.broadcast_to(v0, (B, v0.shape[1])), _outputs(model_fn, images[:, None], classes)
    repl = replacement if replacement.shape[0] == B else jnp.broadcast_to(replacement, (B,) + replacement.shape[1:])
    empty = compose_rows(images, repl, jnp.broadcast_to(segments, (B, H, W)), jnp.zeros((B, M), bool))
    v0 = _outputs(model_fn, empty, classes)
    v1 = _outputs(model_fn, images[:, None], classes)
    return v0, v1


def fastshap_loss(net_apply: Callable, params, model_fn: Callable, images: jax.Array, *, key, segments: jax.Array,
                  masker, n_players: int, n_pairs: int = 8, classes: Optional[jax.Array] = None):
    """The FastSHAP loss of explainer variables ``params`` on a batch of ``images`` -> ``(loss, aux)``.

    Differentiable in ``params`` (the model's outputs are targets: no gradient flows into ``model_fn``),
    jittable, and usable inside your own training step next to the classifier's loss (see
    :func:`shapjax.amortized.train` for the high-level loop).

    Args:
      net_apply: ``(params, images) -> raw values [B, M, K]`` (e.g. ``ExplainerNet(...).apply``).
      params: the explainer's variables.
      model_fn: ``images [N, H, W, C] -> [N, n_classes]`` the explained model (or a surrogate).
      images: ``[B, H, W, C]``.
      key: PRNG key for the coalitions (keyword-only).
      segments: ``[H, W]`` int ids ``0..M-1``, the same players for every image.
      masker: a masker of :mod:`shapjax.maskers`.
      n_players: M.
      n_pairs: coalition pairs ``(S, complement)`` sampled per image.
      classes: which model outputs the explainer's K columns explain (None: all).

    Returns:
      ``(loss, {"values": [B, M, K], "v0": [B, K], "v1": [B, K]})``; ``loss`` is the mean squared
      residual per (image, coalition, output).
    """
    M = int(n_players)
    B = images.shape[0]
    seg = jnp.asarray(segments, jnp.int32)
    repl = replacement_images(masker, images, seg, M)
    target = jax.lax.stop_gradient
    Z = sample_coalitions(B, M, n_pairs, key=key)
    vz = target(game_values(model_fn, images, seg, repl, Z, classes=classes))  # [B, P, K]
    v0, v1 = end_values(model_fn, images, seg, repl, classes=classes, n_players=M, shared_empty=shared_empty(masker))
    v0, v1 = target(v0), target(v1)
    phi = normalize(net_apply(params, images), v0, v1)  # [B, M, K]
    pred = v0[:, None, :] + jnp.einsum("bpm,bmk->bpk", Z.astype(phi.dtype), phi)
    loss = jnp.mean((vz - pred) ** 2)
    return loss, {"values": phi, "v0": v0, "v1": v1}


def sample_values(model_fn: Callable, images: jax.Array, *, key, segments: jax.Array, masker, n_players: int,
                  n_pairs: int, classes: Optional[jax.Array] = None):
    """One table of targets for :func:`table_loss`: ``(Z [B, P, M], v(Z) [B, P, K], v0 [B, K], v1 [B, K])``
    with ``P = 2 * n_pairs`` paired coalitions per image (the model's outputs, computed once)."""
    M = int(n_players)
    B = images.shape[0]
    seg = jnp.asarray(segments, jnp.int32)
    repl = replacement_images(masker, images, seg, M)
    Z = sample_coalitions(B, M, n_pairs, key=key)
    vz = game_values(model_fn, images, seg, repl, Z, classes=classes)
    v0, v1 = end_values(model_fn, images, seg, repl, classes=classes, n_players=M, shared_empty=shared_empty(masker))
    return Z, vz, v0, v1


def table_loss(net_apply: Callable, params, images: jax.Array, Z: jax.Array, vz: jax.Array, v0: jax.Array,
               v1: jax.Array) -> jax.Array:
    """The FastSHAP loss on precomputed targets (:func:`sample_values`): no model evaluation."""
    phi = normalize(net_apply(params, images), v0, v1)
    pred = v0[:, None, :] + jnp.einsum("bpm,bmk->bpk", Z.astype(phi.dtype), phi)
    return jnp.mean((vz - pred) ** 2)
