"""Running one comparison method (shapjax's own or a peer's) and scoring it with every metric."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from shapjax.baselines import gradients as G
from shapjax.evaluation import metrics as Mx
from shapjax.evaluation.registry import METHODS
from shapjax.image.maskers import Masker


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
    hosts: dict = dataclasses.field(default_factory=dict)  # model id -> HostModel for the peers

    def host(self):
        from shapjax.evaluation.peers import HostModel

        k = id(self.model)
        if k not in self.hosts:
            self.hosts[k] = HostModel.from_model(self.model, self.images.shape[1:])
            self.hosts[k].warmup()
        return self.hosts[k]


def _run_peer(name, ctx, key, opts):
    from shapjax.evaluation.peers import run_peer

    seed = int(jax.random.randint(key, (), 0, 2 ** 30))
    pix, segv, evals = run_peer(name, ctx.host(), np.asarray(ctx.images), ctx.seg, np.asarray(ctx.pred),
                                budget=max(ctx.n_evals, ctx.M + 2), seed=seed, baselines=np.asarray(ctx.baseline))
    return jnp.asarray(pix, jnp.float32), jnp.asarray(segv, jnp.float32), int(round(evals))


def run_method(name, ctx, key, opts):
    """``(pixel map [B, H, W], segment values [B, M], model evaluations per image)`` of method ``name``."""
    if METHODS[name].library != "shapjax":
        return _run_peer(name, ctx, key, opts)
    run = _run_explain if METHODS[name].family != "gradient" and name != "window-occlusion" else _run_pixel
    return run(name, ctx, key, opts)


def explainer(name, ctx, key, opts, *, pixels=True):
    """``(model, images, classes [B, 1]) -> pixel maps`` (or segment values) re-running the method."""
    def explain(model, images, classes):
        c = dataclasses.replace(ctx, model=model, images=jnp.asarray(images, jnp.float32),
                                pred=jnp.asarray(classes).reshape(-1).astype(jnp.int32))
        pix, segv, _ = run_method(name, c, key, opts)
        return pix if pixels else segv

    return explain


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


def score(metrics, name, ctx, opts, pix, segv, key, masks, bs, metric_options):
    """``{metric: [B] float64}`` for one method's pixel maps ``pix`` and segment values ``segv``."""
    f, x, k, base, seg = ctx.model, ctx.images, ctx.pred[:, None], ctx.baseline, ctx.seg  # [B, 1]
    mo = lambda m, **d: {**d, **(metric_options or {}).get(m, {})}  # noqa: E731
    H, W = x.shape[1:3]
    fns = {
        "deletion": lambda: Mx.deletion(f, x, pix, outputs=k, baseline=base, batch_size=bs).auc,
        "insertion": lambda: Mx.insertion(f, x, pix, outputs=k, batch_size=bs).auc,
        "deletion_segments": lambda: Mx.deletion(f, x, segv, segments=seg, outputs=k, baseline=base,
                                                 batch_size=bs).auc,
        "insertion_segments": lambda: Mx.insertion(f, x, segv, segments=seg, outputs=k, batch_size=bs).auc,
        "road_morf": lambda: Mx.road(f, x, pix, key=key, outputs=k, batch_size=bs, **mo("road_morf")).auc,
        "road_lerf": lambda: Mx.road(f, x, pix, key=key, outputs=k, order="lerf", batch_size=bs,
                                     **mo("road_lerf")).auc,
        "region_perturbation": lambda: Mx.region_perturbation(
            f, x, pix, outputs=k, baseline=base, batch_size=bs,
            **mo("region_perturbation", patch_size=max(1, min(H, W) // 14))).aopc,
        "irof": lambda: Mx.irof(f, x, segv, segments=seg, outputs=k, baseline=base, batch_size=bs).score,
        "faithfulness": lambda: Mx.faithfulness_correlation(f, x, segv, key=key, segments=seg, outputs=k,
                                                            baseline=base, batch_size=bs),
        "infidelity": lambda: Mx.infidelity(f, x, segv, key=key, segments=seg, outputs=k, baseline=base,
                                            batch_size=bs, **mo("infidelity", perturbation="subset")),
        "monotonicity": lambda: Mx.monotonicity(f, x, segv, segments=seg, outputs=k, baseline=base,
                                                batch_size=bs).share,
        "monotonicity_correlation": lambda: Mx.monotonicity_correlation(f, x, segv, segments=seg, outputs=k,
                                                                        baseline=base, batch_size=bs),
        "completeness_gap": lambda: Mx.completeness_gap(f, x, segv, segments=seg, outputs=k, baseline=base,
                                                        relative=True, batch_size=bs),
        "sparseness": lambda: Mx.sparseness(segv),
        "complexity": lambda: Mx.complexity(segv),
        "pointing_game": lambda: Mx.pointing_game(pix, masks),
        "mass": lambda: Mx.attribution_mass(pix, masks),
    }
    out, sens = {}, None
    ex = explainer(name, ctx, key, opts)
    for m in metrics:
        if m in ("max_sensitivity", "avg_sensitivity"):
            if sens is None:
                o = mo("sensitivity", n_samples=4, radius=0.1)
                sens = Mx.sensitivity(f, lambda im, c: ex(f, im, c), x, key=jax.random.fold_in(key, 1), outputs=k,
                                      attributions=pix, **o)
            v = sens.max if m == "max_sensitivity" else sens.avg
        elif m == "random_logit":
            v = Mx.random_logit(f, lambda im, c: ex(f, im, c), x, key=jax.random.fold_in(key, 2), outputs=k,
                                attributions=pix, **mo("random_logit"))
        elif m == "model_randomisation":
            v = Mx.model_randomisation(f, ex, x, key=jax.random.fold_in(key, 3), outputs=k, attributions=pix,
                                       **mo("model_randomisation"))
        else:
            v = fns[m]()
        out[m] = np.asarray(v, np.float64)
    return out
