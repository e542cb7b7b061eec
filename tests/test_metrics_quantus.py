"""Every new metric against Quantus' implementation (or the ROAD reference's imputer, as shipped in
Quantus) on the same model, images, attributions and perturbations.

The model is a JAX function; Quantus gets it through a torch module that calls it (the same host
callable idea as the peers). Randomness that Quantus draws itself is replaced by passing it the
perturbations shapjax drew (a custom ``perturb_func``), so the two must agree to float precision.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

quantus = pytest.importorskip("quantus", reason="the Quantus cross-checks need `pip install quantus`")
torch = pytest.importorskip("torch", reason="Quantus wraps models as torch modules: `pip install torch==2.13.0`")

from shapjax.baselines import gradients as G  # noqa: E402
from shapjax.evaluation import metrics as Mx  # noqa: E402
from shapjax.evaluation.metrics.robustness import _noise  # noqa: E402

if not hasattr(np, "trapz"):  # Quantus 0.6 calls np.trapz, removed in NumPy 2.4
    np.trapz = np.trapezoid

H = W = 8
B = 3


class _Torch(torch.nn.Module):
    """A JAX model ``NHWC -> [N, K]`` as the torch ``NCHW`` module Quantus expects."""

    def __init__(self, f):
        super().__init__()
        self.f = f
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.from_numpy(np.asarray(self.f(jnp.asarray(x.detach().cpu().numpy().transpose(0, 2, 3, 1)))))


@pytest.fixture(scope="module")
def case():
    w = np.asarray(jax.random.normal(jax.random.key(0), (H, W, 1)))
    w2 = np.asarray(jax.random.normal(jax.random.key(5), (H, W, 1)))

    def f(im):  # a non-linear 2-class model
        return jnp.stack([jnp.tanh((im * w).sum((1, 2, 3)) / 4), jnp.tanh((im * w2).sum((1, 2, 3)) / 4)], -1)

    x = np.asarray(jax.random.uniform(jax.random.key(1), (B, H, W, 1)), np.float32)
    a = np.asarray(jax.random.normal(jax.random.key(2), (B, H, W)), np.float32)  # tie-free
    y = np.array([0, 1, 0])
    kw = dict(model=_Torch(f).eval(), x_batch=x.transpose(0, 3, 1, 2), y_batch=y, a_batch=a[:, None],
              channel_first=True, device="cpu")
    return f, x, a, y, kw


def _q(cls, **opts):
    warnings.filterwarnings("ignore")
    return cls(normalise=False, abs=False, disable_warnings=True, **opts)


def test_pixel_flipping_and_region_perturbation(case):
    f, x, a, y, kw = case
    q = _q(quantus.PixelFlipping, features_in_step=4, perturb_baseline=0.0)(softmax=True, **kw)
    ours = Mx.pixel_flipping(f, x, a, outputs=y[:, None], features_in_step=4, baseline=0.0)
    np.testing.assert_allclose(ours.curves[:, 1:], np.asarray(q), atol=1e-6)
    q = _q(quantus.RegionPerturbation, patch_size=2, regions_evaluation=10, perturb_baseline=0.0)(softmax=True, **kw)
    ours = Mx.region_perturbation(f, x, a, outputs=y[:, None], patch_size=2, n_regions=10, baseline=0.0)
    np.testing.assert_allclose(ours.curves[:, :1] - ours.curves[:, 1:], np.asarray(q), atol=1e-6)


def test_irof(case):
    from skimage.segmentation import slic

    f, x, a, y, kw = case
    q = _q(quantus.IROF, perturb_baseline=0.0, return_aggregate=False)(softmax=True, **kw)
    segs = np.stack([slic(x[b].astype("double"), start_label=0) for b in range(B)])  # Quantus' segmentation
    ours = Mx.irof(f, x, a, segments=segs, outputs=y[:, None], baseline=0.0)
    np.testing.assert_allclose(ours.aoc, np.asarray(q), rtol=1e-5, atol=1e-5)


def test_road_and_its_imputer(case):
    from quantus.functions.perturb_func import noisy_linear_imputation as reference

    f, x, a, y, kw = case
    pct = [10, 30, 50, 70, 90]
    q = _q(quantus.ROAD, noise=0.0, percentages=pct)(softmax=True, **kw)
    ours = Mx.road(f, x, a, key=jax.random.key(0), outputs=y[:, None], noise=0.0, fractions=[p / 100 for p in pct])
    np.testing.assert_allclose(np.asarray(ours.correct).mean(0), [q[p] for p in pct])
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(3, 12, 10, 2)).astype(np.float32)
    m = rng.uniform(size=(3, 12, 10)) < np.array([0.2, 0.6, 0.95])[:, None, None]
    mine = np.asarray(Mx.noisy_linear_imputation(img, m, key=jax.random.key(0), noise=0.0))
    for b in range(3):
        ref = reference(img[b].transpose(2, 0, 1), np.flatnonzero(m[b]), noise=0.0).transpose(1, 2, 0)
        np.testing.assert_allclose(mine[b], ref, atol=2e-5)


def test_infidelity_raster(case):
    f, x, a, y, kw = case
    q = _q(quantus.Infidelity, perturb_patch_sizes=[2], n_perturb_samples=1, perturb_baseline=0.0)(softmax=False, **kw)
    ours = Mx.infidelity(f, x, a, key=jax.random.key(0), outputs=y[:, None], perturbation="raster", patch_size=2,
                         optimal_scale=False)
    np.testing.assert_allclose(ours, np.asarray(q), rtol=1e-5)


def test_monotonicity_and_monotonicity_correlation(case):
    f, x, a, y, kw = case
    xf = x.transpose(0, 3, 1, 2).reshape(B, -1)

    def put_back(arr, indices, **_):  # Arya et al.: the image's own values go back in. Quantus 0.6's default
        out = arr.copy()              # perturb_func writes the baseline over the baseline (always True).
        out[np.arange(B)[:, None], indices] = xf[np.arange(B)[:, None], indices]
        return out

    q = _q(quantus.Monotonicity, features_in_step=4, perturb_func=put_back, perturb_baseline=0.0)(softmax=True, **kw)
    ours = Mx.monotonicity(f, x, a, outputs=y[:, None], features_in_step=4, baseline=0.0)
    assert np.asarray(ours.monotonic).tolist() == list(q)
    pos = np.abs(a)  # a case that is monotonic for some image
    q = _q(quantus.Monotonicity, features_in_step=4, perturb_func=put_back, perturb_baseline=0.0)(
        softmax=False, **{**kw, "a_batch": pos[:, None]})
    assert np.asarray(Mx.monotonicity(f, x, pos, outputs=y[:, None], features_in_step=4, softmax=False).monotonic
                      ).tolist() == list(q)
    q = _q(quantus.MonotonicityCorrelation, features_in_step=4, nr_samples=1, perturb_baseline=0.0)(softmax=True, **kw)
    ours = Mx.monotonicity_correlation(f, x, a, outputs=y[:, None], features_in_step=4, baseline=0.0)
    np.testing.assert_allclose(ours, np.asarray(q), atol=1e-5)


def test_sparseness_complexity_pointing_game_mass(case):
    f, x, a, y, kw = case
    warnings.filterwarnings("ignore")
    for ours, cls in ((Mx.sparseness, quantus.Sparseness), (Mx.complexity, quantus.Complexity)):  # both on |a|
        np.testing.assert_allclose(ours(a), cls(normalise=False, disable_warnings=True)(**kw), atol=1e-5)
    masks = np.zeros((B, H, W), bool)
    masks[:, 2:6, 1:5] = True
    masks[0].flat[np.argmax(a[0])] = True  # one hit at least
    pos = np.maximum(a, 0)  # relevance mass accuracy counts positive relevance (Arras et al. 2022)
    no_expl = {k: v for k, v in kw.items() if k != "a_batch"}
    q = _q(quantus.PointingGame)(a_batch=a[:, None], s_batch=masks[:, None], **no_expl)
    assert np.asarray(Mx.pointing_game(a, masks)).tolist() == [bool(v) for v in q]
    q = _q(quantus.RelevanceMassAccuracy)(a_batch=pos[:, None], s_batch=masks[:, None], **no_expl)
    np.testing.assert_allclose(Mx.attribution_mass(a, masks), np.asarray(q), atol=1e-6)


def test_sensitivity_random_logit_completeness(case):
    f, x, a, y, kw = case

    def ex_j(images, outputs):
        return G.gradient_x_input(f, images, outputs=outputs).heatmap()

    def ex_q(model, inputs, targets, **_):
        return np.asarray(ex_j(jnp.asarray(inputs.transpose(0, 2, 3, 1)), jnp.asarray(targets)[:, None]))[:, None]

    a = ex_q(None, kw["x_batch"], y)
    kw = {**kw, "a_batch": a, "explain_func": ex_q}
    key = jax.random.key(3)

    def shared_noise():
        state = {"s": 0}

        def pf(arr, indices, **_):
            n = np.asarray(_noise(key, state["s"], x.shape, 0.1)).transpose(0, 3, 1, 2).reshape(B, -1)
            state["s"] += 1
            return arr + n

        return pf

    ours = Mx.sensitivity(f, ex_j, x, key=key, outputs=y[:, None], n_samples=5, radius=0.1)
    q = _q(quantus.MaxSensitivity, nr_samples=5, perturb_func=shared_noise())(softmax=False, **kw)
    np.testing.assert_allclose(ours.max, np.asarray(q), rtol=1e-5)
    q = _q(quantus.AvgSensitivity, nr_samples=5, perturb_func=shared_noise())(softmax=False, **kw)
    np.testing.assert_allclose(ours.avg, np.asarray(q), rtol=1e-5)
    from quantus.functions.similarity_func import correlation_pearson

    q = _q(quantus.RandomLogit, num_classes=2, similarity_func=correlation_pearson)(softmax=False, **kw)
    rl = Mx.random_logit(f, ex_j, x, key=key, outputs=y[:, None], similarity_kind="pearson")
    np.testing.assert_allclose(rl, np.asarray(q), atol=1e-5)  # 2 classes: the off class is the other one
    seen = {}

    def record(d):
        seen["delta"] = d
        return d

    _q(quantus.Completeness, output_func=record, perturb_baseline=0.0)(softmax=False, **kw)
    gap = Mx.completeness_gap(f, x, a[:, 0], outputs=y[:, None], baseline=0.0)
    np.testing.assert_allclose(gap, np.abs(a.reshape(B, -1).sum(-1) - seen["delta"]), atol=1e-5)
