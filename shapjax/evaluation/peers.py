r"""The peer libraries (shap, captum, lime) on shapjax's model, players, absence and budget.

Every peer explains the same scalar output (the logit of the class shapjax explains) of the
same model through one host callable, :class:`HostModel`: shapjax's jitted JAX forward pass,
fed NumPy NHWC (shap, lime) or torch NCHW (captum) batches, compiled for every chunk shape
before any timing, so every library pays the same model cost. Gradients for captum's
integrated gradients come from ``jax.vjp`` of the same forward pass (:meth:`HostModel.torch_grad`).

"Absent" means what the shapjax masker says: the peers get the masker's replacement image
(the mean over its replacements) as their fill/baseline — shap's Kernel and Permutation
explainers through a composing function, shap's PartitionExplainer as its Image masker's
``mask_value``, captum as ``baselines``, lime through a NaN ``hide_color`` that the host
callable replaces by the baseline pixel by pixel.

=========================  ============================  =================================
method                     peer                          budget mapping (``budget`` = model evaluations)
=========================  ============================  =================================
``shap:kernel``            shap KernelExplainer          nsamples = budget - 2, l1_reg=False
``shap:permutation``       shap PermutationExplainer     max_evals = budget
``shap:partition``         shap PartitionExplainer       max_evals = budget (its own pixel hierarchy)
``captum:kernelshap``      captum KernelShap             n_samples = budget - 2
``captum:shapleyvaluesampling``  captum ShapleyValueSampling  n_samples = (budget - 2) // M orderings
``captum:lime``            captum Lime                   n_samples = budget
``captum:ig``              captum IntegratedGradients    n_steps = 32 (Gauss-Legendre), gradients by jax.vjp
``lime:image``             lime LimeImageExplainer       num_samples = budget
=========================  ============================  =================================

Install them with ``pip install "shapjax[peers]"`` (shap, captum, lime and a CPU torch).

References:
  Lundberg & Lee (2017), A unified approach to interpreting model predictions, NeurIPS (shap).
  Kokhlikyan et al. (2020), Captum: a unified and generic model interpretability library for
  PyTorch, arXiv:2009.07896.
  Ribeiro, Singh & Guestrin (2016), "Why should I trust you?", KDD (lime).
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger(__name__)

__all__ = ["HostModel", "compose_numpy", "Peer", "PEERS", "peer_available", "check_peer", "run_peer",
           "PEERS_EXTRA"]

PEERS_EXTRA = 'pip install "shapjax[peers]"'


# ----------------------------------------------------------------------------- host callable

class HostModel:
    """A jitted JAX forward pass, callable on NumPy NHWC or torch NCHW batches.

    Every peer library gets exactly this callable, so all pay the same model cost. A call of
    ``n`` images is split into chunks of ``batch_size`` and the remainder into power-of-two
    pieces (its binary expansion), so at most ``log2(batch_size) + 1`` shapes are ever compiled
    and nothing is padded; :meth:`warmup` compiles them all before any timing.

    Args:
      apply: ``(params, images [n, H, W, C]) -> logits [n, K]``.
      params: the model variables (a pytree, traced).
      input_shape: ``(H, W, C)``.
      batch_size: largest chunk (a power of two).
    """

    def __init__(self, apply, params, input_shape, *, batch_size: int = 256):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1 \
                or batch_size & (batch_size - 1):
            raise ValueError(f"batch_size: expected a power of two, got {batch_size!r}")
        self._fwd = jax.jit(apply)
        self._vjp = jax.jit(lambda p, x, g: jax.vjp(lambda v: apply(p, v), x)[1](g)[0])
        self.params = params
        self.input_shape = tuple(int(s) for s in input_shape)
        self.batch_size = int(batch_size)
        self.n_images = 0  # images evaluated since the last reset (model evaluations)
        self.baseline = None  # [H, W, C]: what a NaN pixel becomes (lime's hide_color sentinel)

    @classmethod
    def from_model(cls, model, input_shape, *, batch_size: int = 256) -> "HostModel":
        """From a :class:`shapjax.models.Classifier` (its ``apply`` and ``params``) or any JAX callable."""
        if hasattr(model, "apply") and hasattr(model, "params"):
            return cls(model.apply, model.params, input_shape, batch_size=batch_size)
        if not callable(model):
            raise TypeError(f"model: expected a callable images [N, H, W, C] -> [N, K], got {type(model).__name__}")
        return cls(lambda p, x: model(x), None, input_shape, batch_size=batch_size)

    def _pieces(self, n: int):
        i = 0
        while n - i >= self.batch_size:
            yield i, self.batch_size
            i += self.batch_size
        rest, p = n - i, self.batch_size >> 1
        while rest:
            if rest >= p:
                yield i, p
                i += p
                rest -= p
            p >>= 1

    def warmup(self):
        """Compile the forward pass for every chunk shape (excluded from any timing)."""
        s = self.batch_size
        while s >= 1:
            jax.block_until_ready(self._fwd(self.params, jnp.zeros((s,) + self.input_shape, jnp.float32)))
            s >>= 1
        self.n_images = 0

    def numpy(self, images) -> np.ndarray:
        """``[n, H, W, C]`` (any float array) -> logits ``[n, K]`` float32 NumPy."""
        x = np.asarray(images, np.float32).reshape((-1,) + self.input_shape)
        if self.baseline is not None and np.isnan(x).any():
            x = np.where(np.isnan(x), self.baseline[None], x)
        outs = [np.asarray(self._fwd(self.params, x[i:i + s])) for i, s in self._pieces(x.shape[0])]
        self.n_images += x.shape[0]
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    def torch(self, images):
        """torch ``[n, C, H, W]`` -> torch logits ``[n, K]`` (float32, no gradient)."""
        import torch

        return torch.from_numpy(self.numpy(images.detach().cpu().numpy().transpose(0, 2, 3, 1)))

    def grad(self, images, cotangent) -> np.ndarray:
        """The vector-Jacobian product ``cotangent [n, K]`` through the model at ``images [n, H, W, C]``."""
        x = np.asarray(images, np.float32).reshape((-1,) + self.input_shape)
        g = np.asarray(cotangent, np.float32)
        outs = [np.asarray(self._vjp(self.params, x[i:i + s], g[i:i + s])) for i, s in self._pieces(x.shape[0])]
        return np.concatenate(outs)  # not counted: the forward pass it differentiates was

    def torch_grad(self, images):
        """torch ``[n, C, H, W]`` -> logits, differentiable: backward is ``jax.vjp`` of the same model."""
        return _bridge()(images, self)


_BRIDGE = None


def _bridge():
    global _BRIDGE
    if _BRIDGE is None:
        import torch

        class JaxForward(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, host):
                ctx.host = host
                ctx.save_for_backward(x)
                return torch.from_numpy(host.numpy(x.detach().cpu().numpy().transpose(0, 2, 3, 1)))

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                gx = ctx.host.grad(x.detach().cpu().numpy().transpose(0, 2, 3, 1), g.detach().cpu().numpy())
                return torch.from_numpy(np.ascontiguousarray(gx.transpose(0, 3, 1, 2))), None

        _BRIDGE = JaxForward.apply
    return _BRIDGE


def compose_numpy(image: np.ndarray, segments: np.ndarray, coalitions: np.ndarray, *, fill=0.0) -> np.ndarray:
    """Images ``[n, H, W, C]`` with the segments absent from each coalition ``[n, M]`` set to ``fill``.

    ``fill`` is a scalar or an image ``[H, W, C]`` (the masker's replacement). This is what a user
    of shap's Kernel/Permutation explainers writes to play the segment game on an image.
    """
    z = np.asarray(coalitions).astype(bool)
    mask = z[:, segments]  # [n, H, W]
    return np.where(mask[..., None], image[None], np.asarray(fill, np.float32)).astype(np.float32)


# ----------------------------------------------------------------------------- runners
# Each: (host, image [H, W, C] f32, seg [H, W] int, M, target, budget, seed, baseline [H, W, C]) -> PeerOut


class PeerOut(NamedTuple):
    """One peer explanation: per-segment ``values [M]`` and/or a pixel ``heatmap [H, W]``."""

    values: np.ndarray | None
    heatmap: np.ndarray | None


def _shap_kernel(host, img, seg, M, t, budget, seed, base):
    import shap

    f = lambda Z: host.numpy(compose_numpy(img, seg, Z, fill=base))[:, t]  # noqa: E731
    np.random.seed(seed)
    ex = shap.KernelExplainer(f, np.zeros((1, M)))
    v = ex.shap_values(np.ones((1, M)), nsamples=budget - 2, l1_reg=False, silent=True)
    return PeerOut(np.asarray(v, np.float64).reshape(-1)[:M], None)


def _shap_permutation(host, img, seg, M, t, budget, seed, base):
    import shap

    f = lambda Z: host.numpy(compose_numpy(img, seg, Z, fill=base))[:, t]  # noqa: E731
    ex = shap.PermutationExplainer(f, shap.maskers.Independent(np.zeros((1, M)), max_samples=1), seed=seed)
    e = ex(np.ones((1, M)), max_evals=budget, batch_size=host.batch_size, silent=True)
    return PeerOut(np.asarray(e.values, np.float64).reshape(-1)[:M], None)


def _shap_partition(host, img, seg, M, t, budget, seed, base):
    import shap

    np.random.seed(seed)
    f = lambda X: host.numpy(X)[:, t]  # noqa: E731
    ex = shap.PartitionExplainer(f, shap.maskers.Image(np.asarray(base, np.float64), img.shape))
    e = ex(img[None], max_evals=budget, batch_size=host.batch_size, silent=True)
    return PeerOut(None, np.asarray(e.values, np.float64).reshape(img.shape).sum(-1))


def _lime_image(host, img, seg, M, t, budget, seed, base):
    from lime import lime_image

    ex = lime_image.LimeImageExplainer(random_state=seed)
    host.baseline = np.asarray(base, np.float32)
    bar, lime_image.tqdm = lime_image.tqdm, lambda it, *a, **k: it  # lime 0.2 has no switch for its per-sample bar
    try:  # absent segments arrive as NaN and leave the host callable as the baseline image
        res = ex.explain_instance(img.astype(np.float64), host.numpy, labels=(t,), top_labels=None,
                                  hide_color=np.nan, num_samples=budget, batch_size=host.batch_size,
                                  segmentation_fn=lambda _: seg, random_seed=seed)
    finally:
        host.baseline, lime_image.tqdm = None, bar
    out = np.zeros(M)
    for j, w in res.local_exp[t]:
        out[j] = w
    return PeerOut(out, None)


def _captum(kind):
    def run(host, img, seg, M, t, budget, seed, base):
        import torch
        from captum import attr

        torch.manual_seed(seed)
        x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy())
        b = torch.from_numpy(np.asarray(base, np.float32).transpose(2, 0, 1)[None].copy())
        if kind == "IntegratedGradients":
            a = attr.IntegratedGradients(host.torch_grad).attribute(x, baselines=b, target=int(t), n_steps=32,
                                                                    internal_batch_size=host.batch_size)
            return PeerOut(None, a[0].detach().numpy().astype(np.float64).sum(0))
        fm = torch.from_numpy(np.ascontiguousarray(seg[None, None]).astype(np.int64))
        common = dict(baselines=b, target=int(t), feature_mask=fm, perturbations_per_eval=host.batch_size)
        if kind == "KernelShap":
            a = attr.KernelShap(host.torch).attribute(x, n_samples=budget - 2, return_input_shape=False, **common)
        elif kind == "Lime":
            a = attr.Lime(host.torch).attribute(x, n_samples=budget, return_input_shape=False, **common)
        else:  # ShapleyValueSampling: one ordering costs M evaluations
            a = attr.ShapleyValueSampling(host.torch).attribute(x, n_samples=max(1, (budget - 2) // M), **common)
            a = a[0, 0].reshape(-1).numpy()
            flat = seg.reshape(-1)
            return PeerOut(np.array([a[flat == j][0] if np.any(flat == j) else 0.0 for j in range(M)], np.float64),
                           None)
        return PeerOut(a.detach().numpy().astype(np.float64).reshape(-1)[:M], None)

    return run


class Peer(NamedTuple):
    """A peer method: its library, the explainer's name, what it estimates, how the budget maps, and its runner."""

    library: str
    explainer: str
    family: str  # "shapley" | "surrogate" | "gradient"
    budget: str
    run: Callable


#: ``library:method`` -> :class:`Peer`. The order fixes each method's seed stream.
PEERS: dict[str, Peer] = {
    "shap:kernel": Peer("shap", "KernelExplainer", "shapley", "nsamples = budget - 2, l1_reg=False", _shap_kernel),
    "shap:permutation": Peer("shap", "PermutationExplainer", "shapley", "max_evals = budget", _shap_permutation),
    "shap:partition": Peer("shap", "PartitionExplainer", "shapley", "max_evals = budget, Image masker (pixels)",
                           _shap_partition),
    "captum:kernelshap": Peer("captum", "KernelShap", "shapley", "n_samples = budget - 2", _captum("KernelShap")),
    "captum:shapleyvaluesampling": Peer("captum", "ShapleyValueSampling", "shapley",
                                        "n_samples = (budget - 2) // M orderings", _captum("ShapleyValueSampling")),
    "captum:lime": Peer("captum", "Lime", "surrogate", "n_samples = budget", _captum("Lime")),
    "captum:ig": Peer("captum", "IntegratedGradients", "gradient", "n_steps = 32 (Gauss-Legendre)",
                      _captum("IntegratedGradients")),
    "lime:image": Peer("lime", "LimeImageExplainer", "surrogate", "num_samples = budget", _lime_image),
}

_MODULES = {"shap": ("shap",), "lime": ("lime",), "captum": ("captum", "torch")}


def peer_available(name: str) -> bool:
    """Whether the library behind peer method ``name`` (and torch for captum) can be imported."""
    return all(importlib.util.find_spec(m) is not None for m in _MODULES[PEERS[name].library])


def check_peer(name: str) -> None:
    """Raise a ValueError naming the extra to install when ``name``'s library is missing."""
    if name not in PEERS:
        raise ValueError(f"methods: unknown peer method {name!r}; peers: {', '.join(PEERS)}")
    if not peer_available(name):
        mods = " and ".join(_MODULES[PEERS[name].library])
        raise ValueError(f"methods: {name!r} needs {mods}, which {'is' if len(_MODULES[PEERS[name].library]) == 1 else 'are'}"
                         f" not installed; install the peers with: {PEERS_EXTRA}")


def run_peer(name: str, host: HostModel, images, segments, targets, *, budget: int, seed: int, baselines):
    """Explain ``images [B, H, W, C]`` one by one with peer ``name``.

    Args:
      host: the :class:`HostModel` every peer calls.
      segments: ``[B, H, W]`` int players (``M = max + 1``).
      targets: ``[B]`` explained classes.
      budget: model evaluations per image.
      seed: the peer's seed (image ``b`` uses ``seed + b``).
      baselines: ``[B, H, W, C]`` what an absent pixel becomes.

    Returns:
      ``(heatmaps [B, H, W], segment values [B, M], model evaluations per image)``: per-segment
      peers spread each value evenly over its segment's pixels; pixel peers are summed per segment.
    """
    check_peer(name)
    images = np.asarray(images, np.float32)
    seg = np.asarray(segments).astype(np.int64)
    B, H, W = images.shape[:3]
    M = int(seg.max()) + 1
    maps, vals = np.zeros((B, H, W)), np.zeros((B, M))
    host.n_images = 0
    for b in range(B):
        out = PEERS[name].run(host, images[b], seg[b], M, int(targets[b]), int(budget), int(seed) + b,
                              np.asarray(baselines[b], np.float32))
        counts = np.bincount(seg[b].reshape(-1), minlength=M).astype(np.float64)
        if out.heatmap is not None:
            maps[b] = out.heatmap
            vals[b] = np.bincount(seg[b].reshape(-1), weights=out.heatmap.reshape(-1), minlength=M)
        else:
            vals[b] = out.values
            maps[b] = (out.values / np.maximum(counts, 1))[seg[b]]
    return maps, vals, host.n_images / B
