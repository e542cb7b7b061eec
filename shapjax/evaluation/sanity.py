r"""Sanity checks for saliency maps: cascading model-parameter randomisation.

Adebayo et al. (2018) argue that an explanation which barely changes when the
model's weights are replaced by random ones cannot be explaining the model.
:func:`cascading_randomization` re-initialises the layers one by one from the
output down and compares each map with the original by Spearman rank
correlation (of :math:`|a|` and of :math:`a`) and SSIM. Both statistics are
implemented here in ``jax.numpy``: :func:`spearman` and :func:`ssim`.

References:
  Adebayo et al. (2018), Sanity checks for saliency maps, NeurIPS.
  Wang, Bovik, Sheikh & Simoncelli (2004), Image quality assessment: from
  error visibility to structural similarity, IEEE TIP.
  Spearman (1904), The proof and measurement of association between two things.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.core import FrozenDict

from shapjax._util.api import keyword_key
from shapjax._util.checks import _check_images, _check_key
from shapjax._util.chunks import _pick

__all__ = ["spearman", "ssim", "layer_order", "randomize_layers", "RandomizationResult",
           "cascading_randomization"]


# ----------------------------------------------------------------------------- statistics

def _ranks(x: jax.Array, ties: str) -> jax.Array:
    """Ranks 0..n-1 along the last axis of ``x [R, n]``."""
    R, n = x.shape
    order = jnp.argsort(x, axis=-1, stable=True)
    if ties == "ordinal":  # ties keep their index order
        return jnp.argsort(order, axis=-1, stable=True).astype(jnp.float32)
    s = jnp.take_along_axis(x, order, axis=-1)
    idx = jnp.broadcast_to(jnp.arange(n), (R, n))
    starts = jnp.concatenate([jnp.ones((R, 1), bool), s[:, 1:] != s[:, :-1]], axis=-1)
    ends = jnp.concatenate([s[:, :-1] != s[:, 1:], jnp.ones((R, 1), bool)], axis=-1)
    first = jax.lax.cummax(jnp.where(starts, idx, 0), axis=1)
    last = jax.lax.cummin(jnp.where(ends, idx, n - 1), axis=1, reverse=True)
    avg = (first + last).astype(jnp.float32) / 2.0
    return jnp.zeros((R, n), jnp.float32).at[jnp.arange(R)[:, None], order].set(avg)


def _pearson_rows(a, b):
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    den = jnp.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    r = (a * b).sum(-1) / jnp.where(den > 0, den, 1.0)
    return jnp.where(den > 0, jnp.clip(r, -1.0, 1.0), 0.0)


@functools.partial(jax.jit, static_argnames=("ties",))
def _spearman_impl(a, b, ties):
    return _pearson_rows(_ranks(a, ties), _ranks(b, ties))


def spearman(a, b, *, ties: str = "average") -> jax.Array:
    r"""Spearman rank correlation, row by row.

    .. math:: \rho = \operatorname{corr}\big(\mathrm{rank}(a), \mathrm{rank}(b)\big)

    Ranks come from :func:`jax.numpy.argsort`. ``ties="average"`` gives tied
    values their mean rank (as :func:`scipy.stats.spearmanr`);
    ``ties="ordinal"`` breaks ties by position, which is cheaper but inflates
    the correlation of maps that share large tied regions (e.g. zero gradients
    behind a dead ReLU). A row with constant ranks gives 0.

    Args:
      a, b: ``[n]`` or ``[B, ...]`` (each batch row is flattened).
      ties: ``"average"`` or ``"ordinal"``.

    Returns:
      a scalar for 1-d input, else ``[B]``.

    References:
      Spearman (1904), American Journal of Psychology 15, 72-101.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a {a.shape}, got {b.shape}")
    if ties not in ("average", "ordinal"):
        raise ValueError(f"ties: expected 'average' or 'ordinal', got {ties!r}")
    if a.ndim == 0 or a.size == 0:
        raise ValueError(f"a: expected [n] or [B, ...] with n > 0, got shape {a.shape}")
    one = a.ndim == 1
    a2 = a.reshape(1 if one else a.shape[0], -1).astype(jnp.float32)
    r = _spearman_impl(a2, b.reshape(a2.shape).astype(jnp.float32), ties)
    return r[0] if one else r


def _normalise01(x):
    lo = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - lo
    return jnp.where(span > 0, (x - lo) / jnp.where(span > 0, span, 1.0), 0.0)


def _filter_valid(x, k):
    """Separable 'valid' correlation of each channel of ``x [B, H, W, F]`` with the 1-d kernel ``k``."""
    F = x.shape[-1]
    k = jnp.asarray(k, x.dtype)
    dn = ("NHWC", "HWIO", "NHWC")
    for kern in (k[:, None, None, None], k[None, :, None, None]):
        x = jax.lax.conv_general_dilated(x, jnp.tile(kern, (1, 1, 1, F)), (1, 1), "VALID",
                                         dimension_numbers=dn, feature_group_count=F,
                                         precision=jax.lax.Precision.HIGHEST)
    return x


@functools.partial(jax.jit, static_argnames=("normalize", "sigma", "k1", "k2"))
def _ssim_impl(a, b, normalize, sigma, k1, k2):
    if normalize:
        a, b = _normalise01(a), _normalise01(b)
    H, W = a.shape[1:]
    r = min(int(3.5 * sigma + 0.5), (min(H, W) - 1) // 2)
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    m = _filter_valid(jnp.stack([a, b, a * a, b * b, a * b], -1), k)
    mu_a, mu_b = m[..., 0], m[..., 1]
    s_aa = m[..., 2] - mu_a * mu_a
    s_bb = m[..., 3] - mu_b * mu_b
    s_ab = m[..., 4] - mu_a * mu_b
    c1, c2 = k1 ** 2, k2 ** 2  # data range 1
    s = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (s_aa + s_bb + c2))
    return s.mean(axis=(1, 2))


def ssim(a, b, *, normalize: bool = True, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> jax.Array:
    r"""Structural similarity with a Gaussian window (Wang et al. 2004).

    .. math::
        \mathrm{SSIM}(a, b) = \operatorname{mean}_{p}
        \frac{(2\mu_a\mu_b + C_1)(2\sigma_{ab} + C_2)}
             {(\mu_a^2 + \mu_b^2 + C_1)(\sigma_a^2 + \sigma_b^2 + C_2)},\quad
        C_i = (k_i L)^2,\ L = 1

    Local statistics use a Gaussian window of std ``sigma`` truncated at
    ``int(3.5 sigma + 0.5)`` pixels (11 x 11 for the default, shrunk to fit
    small maps) and are averaged over the positions where the window fits
    (no padding). This matches ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, use_sample_covariance=False, data_range=1)``.

    Args:
      a, b: ``[B, H, W]`` or ``[H, W]`` maps (H, W >= 3).
      normalize: min-max scale each map to [0, 1] first (a constant map becomes 0).
      sigma, k1, k2: window std and stabilising constants.

    Returns:
      ``[B]`` (scalar for 2-d input); 1 for identical maps.

    References:
      Wang, Bovik, Sheikh & Simoncelli (2004), IEEE TIP 13(4), 600-612.
    """
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a {a.shape}, got {b.shape}")
    if a.ndim not in (2, 3) or min(a.shape[-2:]) < 3:
        raise ValueError(f"a: expected maps [B, H, W] or [H, W] with H, W >= 3, got {a.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma: expected a positive float, got {sigma!r}")
    one = a.ndim == 2
    r = _ssim_impl(a[None] if one else a, b[None] if one else b, bool(normalize), float(sigma),
                   float(k1), float(k2))
    return r[0] if one else r


# ----------------------------------------------------------------------------- randomisation

def _layer_dict(variables, collection):
    if not hasattr(variables, "keys"):
        raise TypeError(f"params: expected a flax variables dict, got {type(variables).__name__}")
    if collection is not None and collection in variables:
        return variables[collection], True
    return variables, False


def layer_order(params, *, collection: str | None = "params") -> list[str]:
    """Layer names from the top (output) to the bottom (input) of a flax model.

    Returns the top-level keys of ``params[collection]`` (or of ``params``
    itself when it has no such collection) in reverse order.

    Assumption: the dict's key order is the layers' creation order, and that
    is the order of the forward pass. Flax linen builds its variables dict in
    creation order (call order in ``@nn.compact`` modules, assignment order in
    ``setup``), so ``Conv_0, Conv_1, Dense_0, Dense_1`` gives
    ``[Dense_1, Dense_0, Conv_1, Conv_0]``. This is wrong for modules whose
    layers are created in a different order than they run, for skip
    connections and for dicts that went through a sorting serialiser: pass
    an explicit list to :func:`cascading_randomization` then.
    """
    tree, _ = _layer_dict(params, collection)
    return list(reversed(list(tree.keys())))


@jax.jit
def _randomize(key, sub):
    leaves, treedef = jax.tree_util.tree_flatten(sub)
    keys = jax.random.split(key, max(len(leaves), 1))
    new = []
    for k, leaf in zip(keys, leaves):
        leaf = jnp.asarray(leaf)
        std = jnp.std(leaf)
        fresh = (jax.random.normal(k, leaf.shape, jnp.float32) * std).astype(leaf.dtype)
        new.append(jnp.where(std > 0, fresh, leaf))
    return jax.tree_util.tree_unflatten(treedef, new)


def _replace(variables, collection, nested, name, sub):
    tree = dict(variables[collection] if nested else variables)
    tree[name] = sub
    if nested:
        out = dict(variables)
        out[collection] = FrozenDict(tree) if isinstance(variables[collection], FrozenDict) else tree
    else:
        out = tree
    return FrozenDict(out) if isinstance(variables, FrozenDict) else out


@keyword_key
def randomize_layers(params, layers: Sequence[str], *, key, collection: str | None = "params"):
    r"""Re-initialise the named layers with Gaussian noise of the original scale.

    Each array :math:`w` of a named layer becomes
    :math:`\tilde w \sim \mathcal N(0, \operatorname{std}(w)^2)`, drawn with
    ``fold_in(key, i)`` for the i-th layer of ``layers``. Arrays with zero
    spread (fresh biases, constant batch-norm scales) are kept as they are.

    Args:
      key: PRNG key.
      params: flax variables dict (``{"params": {...}, ...}``) or a bare params dict.
      layers: top-level layer names of ``params[collection]``.
      collection: the collection holding the layers (None: ``params`` itself).

    Returns:
      a params tree of the same structure.
    """
    key = _check_key(key)
    tree, nested = _layer_dict(params, collection)
    out = params
    for i, name in enumerate(layers):
        if name not in tree:
            raise ValueError(f"layers: {name!r} is not a layer of params (have {list(tree.keys())})")
        sub = _randomize(jax.random.fold_in(key, i), tree[name])
        out = _replace(out, collection, nested, name, sub)
    return out


@struct.dataclass
class RandomizationResult:
    """Per-step similarity of randomised-model maps to the original ones.

    Step 0 is the original model; step ``i`` has ``layers[1..i]`` randomised
    (cumulatively, top-down).

    Attributes:
      spearman_abs: ``[S + 1, B]`` Spearman correlation of :math:`|a|` maps.
      spearman: ``[S + 1, B]`` Spearman correlation of signed maps.
      ssim: ``[S + 1, B]`` SSIM of the min-max normalised :math:`|a|` maps.
      same_prediction: ``[S + 1, B]`` bool, top class unchanged.
      maps: ``[S + 1, B, H, W]`` the attribution maps.
      layers: ``("original", name_1, ..., name_S)`` (static).
    """

    spearman_abs: jax.Array
    spearman: jax.Array
    ssim: jax.Array
    same_prediction: jax.Array
    maps: jax.Array
    layers: tuple = struct.field(pytree_node=False, default=())


@keyword_key
def cascading_randomization(apply_fn: Callable, params, images, *, key,
                            attr_fn: Callable | None = None, layers: Sequence[str] | None = None,
                            collection: str | None = "params", ties: str = "average"
                            ) -> RandomizationResult:
    r"""Cascading model-parameter randomisation test (Adebayo et al. 2018).

    For :math:`i = 1..S` the layers ``layers[:i]`` (top first) are
    re-initialised (:func:`randomize_layers`) and the attribution map
    :math:`a^{(i)}` recomputed. A method that explains the model should give
    maps that decorrelate from :math:`a^{(0)}` as more layers are randomised:

    .. math:: \rho_i = \mathrm{Spearman}(|a^{(0)}|, |a^{(i)}|),\quad
              \mathrm{SSIM}(\hat a^{(0)}, \hat a^{(i)}),\ \hat a = \mathrm{minmax}(|a|)

    Args:
      key: PRNG key.
      apply_fn: ``(params, images [N, H, W, C]) -> [N, K]``.
      params: flax variables dict (or bare params dict).
      images: ``[B, H, W, C]``.
      attr_fn: ``(params, images) -> [B, H, W]``; default: the input gradient
        of the class the original model predicts, summed over channels.
      layers: layer names from top to bottom; default :func:`layer_order`.
      collection: the variables collection holding the layers.
      ties: Spearman tie handling, see :func:`spearman`.

    Returns:
      :class:`RandomizationResult`; step 0 has Spearman and SSIM exactly 1.

    References:
      Adebayo et al. (2018), Sanity checks for saliency maps, NeurIPS.
    """
    key = _check_key(key)
    images = _check_images(images)
    if not callable(apply_fn):
        raise TypeError(f"apply_fn: expected a callable, got {type(apply_fn).__name__}")
    layers = layer_order(params, collection=collection) if layers is None else list(layers)
    if not layers:
        raise ValueError("layers: expected at least one layer name")
    tree, _ = _layer_dict(params, collection)
    for name in layers:
        if name not in tree:
            raise ValueError(f"layers: {name!r} is not a layer of params (have {list(tree.keys())})")
    predict = jax.jit(lambda p, x: jnp.argmax(apply_fn(p, x), -1))
    k0 = predict(params, images)
    if attr_fn is None:
        def attr_fn(p, x):
            g = jax.grad(lambda x: _pick(apply_fn(p, x), k0).sum())(x)
            return g.sum(-1)
    elif not callable(attr_fn):
        raise TypeError(f"attr_fn: expected a callable, got {type(attr_fn).__name__}")
    attr = jax.jit(attr_fn)
    a0 = attr(params, images)
    if a0.shape != images.shape[:3]:
        raise ValueError(f"attr_fn: expected maps of shape {images.shape[:3]}, got {a0.shape}")
    maps, preds, p = [a0], [k0], params
    nested = collection is not None and collection in params
    for i, name in enumerate(layers):  # step i + 1 == randomize_layers(key, params, layers[:i + 1])
        p = _replace(p, collection, nested, name, _randomize(jax.random.fold_in(key, i), tree[name]))
        maps.append(attr(p, images))
        preds.append(predict(p, images))
    maps = jnp.stack(maps)  # [S+1, B, H, W]
    S1, B = maps.shape[:2]
    ref = jnp.broadcast_to(maps[0], maps.shape)
    flat = lambda m: m.reshape(S1 * B, -1)
    rho_abs = spearman(flat(jnp.abs(ref)), flat(jnp.abs(maps)), ties=ties).reshape(S1, B)
    rho = spearman(flat(ref), flat(maps), ties=ties).reshape(S1, B)
    H, W = maps.shape[2:]
    sim = ssim(jnp.abs(ref).reshape(S1 * B, H, W), jnp.abs(maps).reshape(S1 * B, H, W)).reshape(S1, B)
    same = jnp.stack(preds) == k0[None]
    return RandomizationResult(spearman_abs=rho_abs, spearman=rho, ssim=sim, same_prediction=same,
                               maps=maps, layers=("original", *layers))
