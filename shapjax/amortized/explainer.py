"""The trained explainer: :class:`Explainer` (a pytree) maps images to an :class:`~shapjax.Explanation`
in one pass of the explainer network (plus the model on the unmasked and the fully masked image, for
the efficiency normalisation)."""
from __future__ import annotations

import hashlib
from functools import partial
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from shapjax._util.checks import check_images, is_traced
from shapjax._util.modelfn import Static, join_model, split_model
from shapjax._util.outputs import Outputs, parse_outputs, select
from shapjax.image.explanation import Explanation
from shapjax.image.maskers import Masker

from .network import ExplainerNet
from .objective import end_values, normalize, replacement_images, shared_empty


def fingerprint(model) -> str:
    """A short hash of a model's arrays (its weights): the identity an explainer is trained for.

    Two models with the same weights (e.g. a checkpoint and its reload) share a fingerprint; any
    change of a weight changes it. Needs concrete (not traced) weights.
    """
    _, dynamic = split_model(model, "model")
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(dynamic):
        if is_traced(leaf):
            raise ValueError("model: its weights are traced (inside jax.jit); the model's fingerprint needs "
                             "concrete weights")
        a = np.asarray(leaf)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def segments_hash(segments) -> str:
    """A short hash of a ``[H, W]`` segmentation (which pixel belongs to which player)."""
    a = np.asarray(segments, np.int32)
    return hashlib.sha256(f"{a.shape}".encode() + a.tobytes()).hexdigest()[:16]


def model_name(model) -> str:
    return str(getattr(model, "name", "") or getattr(model, "__name__", "") or type(model).__name__)


@struct.dataclass
class Explainer:
    """A trained amortized explainer for one model, segmentation and masker.

    ``explainer(images, outputs=...)`` returns the same :class:`~shapjax.Explanation` as
    :func:`shapjax.explain` (``method="amortized"``, ``std=None``, ``n_evals=2``: the model runs on
    the unmasked and the fully masked image, the explainer network once). It is batched and
    jittable: an ``Explainer`` is a pytree (its weights, the model's weights and the segments are
    leaves), so it can be passed into your own ``jax.jit``.

    Build one with :func:`shapjax.amortized.train`, :func:`shapjax.amortized.load` or
    :func:`shapjax.amortized.pretrained`.
    """

    params: Any
    model_dynamic: Any
    segments: jax.Array  # [H, W] int32
    masker: Masker
    model_static: Static = struct.field(pytree_node=False)
    net: ExplainerNet = struct.field(pytree_node=False)
    classes: tuple = struct.field(pytree_node=False)  # model output explained by each of the K columns
    n_classes: int = struct.field(pytree_node=False)  # outputs of the model
    input_shape: tuple = struct.field(pytree_node=False)
    info: tuple = struct.field(pytree_node=False, default=())  # (key, value) pairs: descriptions, fingerprint

    @property
    def n_players(self) -> int:
        return int(self.net.n_players)

    @property
    def model(self):
        """The explained model (rebuilt from its weights)."""
        return join_model(self.model_static, self.model_dynamic)

    @property
    def meta(self) -> dict:
        return dict(self.info)

    def describe(self) -> str:
        m = self.meta
        return (f"explainer for {m.get('model_name', '?')} (fingerprint {m.get('model_fingerprint', '?')}), "
                f"segments {m.get('segments', '?')}, masker {m.get('masker', '?')}, {len(self.classes)} outputs")

    def raw(self, images: jax.Array):
        """``(values [B, M, K], v0 [B, n_classes], v1 [B, n_classes])`` for every trained output (jittable)."""
        return _forward(self, images)

    def __call__(self, images, *, outputs: Outputs = None) -> Explanation:
        """Explain ``images [B, H, W, C]`` (or one ``[H, W, C]``); ``outputs`` as in :func:`shapjax.explain`."""
        images = check_images(images, "images", single_ok=True)
        B, H, W, C = images.shape
        if (H, W, C) != tuple(self.input_shape):
            raise ValueError(f"images: this explainer was trained on images of shape [H, W, C] = "
                             f"{tuple(self.input_shape)}; got {(H, W, C)}")
        spec = parse_outputs(outputs, n_classes=self.n_classes, batch=B)
        traced = is_traced(images) or is_traced(spec.index)
        if spec.mode == "given" and not traced:
            missing = sorted(set(np.asarray(spec.index).ravel().tolist()) - set(self.classes))
            if missing:
                raise ValueError(f"outputs: this explainer was trained for outputs {list(self.classes)}; it cannot "
                                 f"explain {missing}")
        phi, v0, v1 = _forward(self, images)
        idx = select(spec, v1)
        col_of = np.full(self.n_classes, -1, np.int32)
        col_of[list(self.classes)] = np.arange(len(self.classes), dtype=np.int32)
        cols = jnp.asarray(col_of)[idx]  # [B, k]
        if spec.mode == "top" and not traced and bool(jnp.any(cols < 0)):
            raise ValueError(f"outputs={outputs!r}: the top outputs include classes this explainer was not trained "
                             f"for (it explains {list(self.classes)})")
        ok = cols >= 0
        values = jnp.take_along_axis(phi, jnp.maximum(cols, 0)[:, None, :], axis=2)
        values = jnp.where(ok[:, None, :], values, jnp.nan)
        seg = jnp.broadcast_to(self.segments, (B, H, W))
        return Explanation(values=values, base_values=jnp.take_along_axis(v0, idx, axis=1),
                           full_values=jnp.take_along_axis(v1, idx, axis=1), std=None, segments=seg, images=images,
                           output_indexes=idx, method="amortized", masker=self.meta.get("masker", ""), n_evals=2)  # v(all), v(empty)


@partial(jax.jit)
def _forward(explainer: Explainer, images: jax.Array):
    model_fn = join_model(explainer.model_static, explainer.model_dynamic)
    M = explainer.n_players
    seg = explainer.segments
    repl = replacement_images(explainer.masker, images, seg, M)
    v0, v1 = end_values(model_fn, images, seg, repl, n_players=M, shared_empty=shared_empty(explainer.masker))
    cls = jnp.asarray(explainer.classes, jnp.int32)
    raw = explainer.net.apply(explainer.params, images)
    phi = normalize(raw, v0[:, cls], v1[:, cls])
    return phi, v0, v1


def build(net: ExplainerNet, params, model, *, segments, masker: Masker, classes, n_classes: int, input_shape,
          info: Optional[dict] = None) -> Explainer:
    """Assemble an :class:`Explainer` from its parts (``segments``: ``[H, W]`` int ids)."""
    static, dynamic = split_model(model, "model")
    return Explainer(params=params, model_dynamic=dynamic, segments=jnp.asarray(segments, jnp.int32), masker=masker,
                     model_static=static, net=net, classes=tuple(int(c) for c in classes), n_classes=int(n_classes),
                     input_shape=tuple(int(s) for s in input_shape), info=tuple(sorted((info or {}).items())))
