"""The machinery every counterfactual method shares: checks, targets, objective, the scanned loop, the result."""
from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from shapjax._util.checks import _check_images, _check_pos_int
from shapjax._util.chunks import _map_chunks
from shapjax._util.modelfn import _join_fn, _n_outputs, _split_fn
from shapjax.counterfactual.projections import lmo_l1q, project_l1_box, project_l2_box, sparsity_k

#: half an 8-bit grey level: a change smaller than this disappears when the image is saved as 8 bits
DEFAULT_L0_TOL = 0.5 / 255.0
TARGET_MODES = ("next", "second")
LOSSES = ("ce", "margin")


@struct.dataclass
class Trace:
    """Per-step diagnostics of a counterfactual search, batch first; step 0 is the start (no perturbation).

    Attributes:
      loss: ``[B, T + 1]`` the minimised objective at each iterate.
      probs: ``[B, T + 1, K]`` class probabilities.
      l0: ``[B, T + 1]`` changed coordinates (``|delta| > l0_tol``; pixels x channels).
      l1: ``[B, T + 1]`` L1 norm of the perturbation.
      l2: ``[B, T + 1]`` L2 norm of the perturbation.
      success: ``[B, T + 1]`` bool, whether the iterate is a counterfactual (see
        :class:`Counterfactual`).
    """

    loss: jax.Array
    probs: jax.Array
    l0: jax.Array
    l1: jax.Array
    l2: jax.Array
    success: jax.Array


@struct.dataclass
class Counterfactual:
    """Result of :func:`fw_l1q`, :func:`pgd_l1` or :func:`pgd_l2` (a pytree; slice it with ``tree_map``).

    Attributes:
      delta: ``[B, H, W, C]`` the perturbation of the image (for FW-L1-q the clipped iterate
        minus the image); ``images + delta`` lies in [0, 1] and ``delta`` in the method's ball.
      counterfactual: ``[B, H, W, C]`` the perturbed images ``images + delta``.
      target: ``[B]`` int, the class pushed towards (targeted) or away from (untargeted).
      probs_before: ``[B, K]`` class probabilities of the original images.
      probs: ``[B, K]`` class probabilities of the counterfactuals.
      success: ``[B]`` bool: the counterfactual's top class is ``target``
        (targeted) or is not ``target`` (untargeted).
      first_success: ``[B]`` int, the first step whose iterate succeeded, -1 if none.
      trace: :class:`Trace`, the per-step diagnostics.
      method: ``"fw_l1q"``, ``"pgd_l1"`` or ``"pgd_l2"`` (static).
      targeted: whether the search was targeted (static).
    """

    delta: jax.Array
    counterfactual: jax.Array
    target: jax.Array
    probs_before: jax.Array
    probs: jax.Array
    success: jax.Array
    first_success: jax.Array
    trace: Trace
    method: str = struct.field(pytree_node=False, default="")
    targeted: bool = struct.field(pytree_node=False, default=True)

    @property
    def prediction(self) -> jax.Array:
        """``[B]`` top class of the counterfactuals."""
        return jnp.argmax(self.probs, axis=-1)

    @property
    def l0(self) -> jax.Array:
        """``[B]`` changed coordinates of the returned perturbation."""
        return self.trace.l0[:, -1]

    @property
    def l1(self) -> jax.Array:
        """``[B]`` L1 norm of the returned perturbation."""
        return self.trace.l1[:, -1]


# ----------------------------------------------------------------------------- checks

def _float(v, name: str, *, positive: bool = True, lo=None, hi=None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a float, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite float, got {v!r}")
    if positive and v <= 0:
        raise ValueError(f"{name}: expected a positive float, got {v!r}")
    if lo is not None and v < lo or hi is not None and v > hi:
        raise ValueError(f"{name}: expected a float in [{lo}, {hi}], got {v!r}")
    return v


def _class_array(v, B: int, K: int, name: str):
    a = jnp.asarray(v)
    if not jnp.issubdtype(a.dtype, jnp.integer):
        raise TypeError(f"{name}: expected int class indexes, got dtype {a.dtype}")
    if a.ndim == 0:
        a = jnp.full((B,), a)
    if a.shape != (B,):
        raise ValueError(f"{name}: expected an int or shape [{B}] (one class per image), got shape {a.shape}")
    if not isinstance(a, jax.core.Tracer) and B:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= K:
            raise ValueError(f"{name}: classes must lie in [0, {K}), got range [{lo}, {hi}]")
    return a.astype(jnp.int32)


def prepare(model, images, target, labels, loss, batch_size):
    """Checks shared by every method -> (fs, fd, images, targeted, mode, classes [B], bs)."""
    with warnings.catch_warnings():  # out-of-range pixels are an error here, not a warning
        warnings.simplefilter("ignore", UserWarning)
        images = _check_images(images)
    if not isinstance(images, jax.core.Tracer):
        lo, hi = float(jnp.min(images)), float(jnp.max(images))
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise ValueError(f"images: expected values in [0, 1], got range [{lo}, {hi}] "
                             "(scale 8-bit images with x.astype(np.float32) / 255)")
    B = images.shape[0]
    if B == 0:
        raise ValueError("images: expected at least one image, got an empty batch")
    K = _n_outputs(model, images, "model")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    bs = B if batch_size is None else _check_pos_int(batch_size, "batch_size")
    if target is None:
        targeted = False
        mode = "label" if labels is not None else "pred"
        classes = _class_array(labels, B, K, "labels") if labels is not None else jnp.zeros((B,), jnp.int32)
    else:
        if labels is not None:
            raise ValueError("labels: only used by untargeted searches (target=None); got both target and labels")
        targeted = True
        if isinstance(target, str):
            if target not in TARGET_MODES:
                raise ValueError(f"target: expected None, a class index, [B] class indexes or one of "
                                 f"{TARGET_MODES}, got {target!r}")
            if K < 2:
                raise ValueError(f"target: {target!r} needs a model with at least 2 classes, got K={K}")
            mode, classes = target, jnp.zeros((B,), jnp.int32)
        else:
            mode, classes = "given", _class_array(target, B, K, "target")
    fs, fd = _split_fn(model, "model")
    return fs, fd, images, targeted, mode, classes, bs


def check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    return int(steps)


def default_eps_l1(images) -> float:
    """0.05 per coordinate: ``0.05 * H * W * C`` (at 224x224x3 close to the paper's 20 sqrt(3 * 224^2))."""
    return 0.05 * float(np.prod(images.shape[1:]))


# ----------------------------------------------------------------------------- the loop

def _resolve(mode, classes, logits0):
    if mode in ("given", "label"):
        return classes
    order = jnp.argsort(-logits0, axis=-1)
    if mode == "pred":
        return order[:, 0].astype(jnp.int32)
    if mode == "next":
        return ((order[:, 0] + 1) % logits0.shape[-1]).astype(jnp.int32)
    return order[:, 1].astype(jnp.int32)  # "second": the runner-up class


def _objective(logits, cls, targeted: bool, loss: str):
    """Per-image objective to *minimise*."""
    if loss == "ce":
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, cls)
        return ce if targeted else -ce
    z_c = jnp.take_along_axis(logits, cls[:, None], axis=1)[:, 0]
    other = jnp.max(jnp.where(jax.nn.one_hot(cls, logits.shape[-1], dtype=bool), -jnp.inf, logits), axis=-1)
    return other - z_c if targeted else z_c - other


def _success(logits, cls, targeted: bool):
    pred = jnp.argmax(logits, axis=-1)
    return pred == cls if targeted else pred != cls


def _update(method, delta, g, t, keys, hyper, flat, lower, upper):
    """One step on flattened ``[n, d]`` iterates; ``g`` is the gradient of the minimised objective with
    respect to the image ``clip(x + delta)``."""
    d = delta.shape[1]
    if method == "fw_l1q":
        u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, t), (), minval=-1.0, maxval=1.0))(keys)
        q = jnp.clip(hyper["q"] + hyper["dq"] * u, 0.0, 1.0)
        k = sparsity_k(q, d)
        v, desc = flat + delta, -g
        # the one-sided derivative of L(clip(x + delta)): inside the box it is g; a pixel exactly at a bound
        # can only move inwards; one pushed past a bound by earlier steps is flat (it stays saturated)
        allowed = ((v > 0) & (v < 1)) | ((v == 0) & (desc > 0)) | ((v == 1) & (desc < 0))
        s = jax.vmap(lambda g_, k_, a_: lmo_l1q(g_, k_, hyper["eps"], allowed=a_))(desc, k, allowed)
        gamma = hyper["c"] / (hyper["c"] + t.astype(delta.dtype))
        return delta + gamma * (s - delta)
    gn = g / jnp.maximum(jnp.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    v = delta - hyper["step_size"] * gn
    proj = project_l1_box if method == "pgd_l1" else project_l2_box
    return jax.vmap(proj, in_axes=(0, None, 0, 0))(v, hyper["eps"], lower, upper)


@functools.partial(jax.jit, static_argnames=("fs", "method", "steps", "targeted", "mode", "loss", "bs"))
def run(fs, fd, images, classes, key, hyper, *, method, steps, targeted, mode, loss, bs):
    """The compiled search: ``images [B, H, W, C]`` -> :class:`Counterfactual` (chunks of ``bs`` images)."""
    model = _join_fn(fs, fd)
    B = images.shape[0]
    base_key = jax.random.key(0) if key is None else key

    def chunk(inp):
        x, cls_in, idx = inp
        n = x.shape[0]
        flat = x.reshape(n, -1)
        lower, upper = jnp.minimum(-flat, 0.0), jnp.maximum(1.0 - flat, 0.0)
        keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(idx)
        logits0 = model(x)
        cls = _resolve(mode, cls_in, logits0)

        def value(z):
            logits = model(z.reshape(x.shape))
            per = _objective(logits, cls, targeted, loss)
            return jnp.sum(per), (per, logits)

        vg = jax.value_and_grad(value, has_aux=True)

        def diag(eff, per, logits):
            a = jnp.abs(eff)
            return (per, jax.nn.softmax(logits, -1), jnp.sum(a > hyper["l0_tol"], -1).astype(jnp.int32),
                    jnp.sum(a, -1), jnp.sqrt(jnp.sum(eff * eff, -1)), _success(logits, cls, targeted))

        def body(carry, t):
            delta, done, first = carry
            z = jnp.clip(flat + delta, 0.0, 1.0)  # FW: the iterate lives in the L1 ball, the image is clipped
            (_, (per, logits)), g = vg(z)
            row = diag(z - flat, per, logits)
            ok = row[-1]
            first = jnp.where((first < 0) & ok, t, first)
            done = done | (ok & (hyper["stop"] > 0))
            new = _update(method, delta, g, t, keys, hyper, flat, lower, upper)
            delta = jnp.where(done[:, None], delta, new)
            return (delta, done, first), row

        init = (jnp.zeros_like(flat), jnp.zeros((n,), bool), jnp.full((n,), -1, jnp.int32))
        (delta, _, first), rows = jax.lax.scan(body, init, jnp.arange(steps))
        z = jnp.clip(flat + delta, 0.0, 1.0)
        per, logits = value(z)[1]
        last = diag(z - flat, per, logits)
        first = jnp.where((first < 0) & last[-1], steps, first)
        hist = [jnp.moveaxis(jnp.concatenate([r, l[None]], 0), 0, 1) for r, l in zip(rows, last)]
        return z.reshape(x.shape), cls, jax.nn.softmax(logits0, -1), first, hist

    cfx, cls, p0, first, hist = _map_chunks(chunk, (images, classes, jnp.arange(B)), bs)
    trace = Trace(*hist)
    return Counterfactual(delta=cfx - images, counterfactual=cfx, target=cls, probs_before=p0,
                          probs=trace.probs[:, -1], success=trace.success[:, -1], first_success=first,
                          trace=trace, method=method, targeted=targeted)


def hyper_arrays(*, stop_on_success: bool, **kw) -> dict[str, Any]:
    """Traced hyper-parameters: changing them does not recompile."""
    kw["stop"] = float(bool(stop_on_success))
    return {k: jnp.asarray(v, jnp.float32) for k, v in kw.items()}
