"""The metrics added for the comparison (ROAD, pixel flipping, region perturbation, IROF, infidelity,
monotonicity, sensitivity, random logit, model randomisation, completeness): answers known in advance on
linear models, jit, no recompilation, and errors that name the argument."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapjax.baselines import gradients as G
from shapjax.evaluation import metrics as Mx
from shapjax.evaluation.metrics.robustness import _noise

H = W = 6


@pytest.fixture(scope="module")
def lin():
    """logit_0 = w . x, logit_1 = 0; positive images; ``pos`` has all-positive weights."""
    w = jax.random.normal(jax.random.key(0), (H, W, 1))
    wp = jnp.abs(w) + 0.1
    x = jax.random.uniform(jax.random.key(1), (2, H, W, 1), minval=0.2, maxval=1.0)

    def make(v):
        return lambda im: jnp.stack([(im * v).sum((1, 2, 3)), jnp.zeros(im.shape[0])], -1)

    return make(w), w, make(wp), wp, x


def test_infidelity_of_exact_attributions_is_zero(lin):
    f, w, _, _, x = lin
    key = jax.random.key(0)
    grad = jnp.broadcast_to(w[..., 0], (2, H, W))  # the gradient: I . a = f(x) - f(x - I) for every I
    for kind, scale in (("noise", True), ("square", False), ("raster", False)):
        v = Mx.infidelity(f, x, grad, key=key, outputs=0, perturbation=kind, optimal_scale=scale, patch_size=2,
                          n_perturbations=16)
        np.testing.assert_allclose(v, 0.0, atol=1e-8)
    removal = (w * x)[..., 0]  # baseline 0: the effect of removing each pixel
    np.testing.assert_allclose(Mx.infidelity(f, x, removal, key=key, outputs=0, perturbation="subset"), 0.0, atol=1e-8)
    seg = (jnp.arange(H)[:, None] // 3 * 2 + jnp.arange(W)[None] // 3).astype(jnp.int32)
    per_seg = jax.vmap(lambda r: jax.ops.segment_sum(r.reshape(-1), seg.reshape(-1), 4))(removal)
    np.testing.assert_allclose(Mx.infidelity(f, x, per_seg, key=key, outputs=0, perturbation="subset", segments=seg),
                               0.0, atol=1e-8)
    rnd = jax.random.normal(jax.random.key(9), (2, H, W))
    assert bool(jnp.all(Mx.infidelity(f, x, rnd, key=key, outputs=0, perturbation="subset") > 1e-3))
    # the optimal scale makes a rescaled exact attribution exact again
    np.testing.assert_allclose(Mx.infidelity(f, x, 3.0 * removal, key=key, outputs=0, perturbation="subset"),
                               0.0, atol=1e-7)
    assert bool(jnp.all(Mx.infidelity(f, x, 3.0 * removal, key=key, outputs=0, perturbation="subset",
                                      optimal_scale=False) > 1e-3))


def test_completeness_gap(lin):
    f, w, _, _, x = lin
    removal = (w * x)[..., 0]
    np.testing.assert_allclose(Mx.completeness_gap(f, x, removal, outputs=0), 0.0, atol=1e-5)
    ig = G.integrated_gradients(f, x, outputs=0, baseline=0.3, steps=8)
    np.testing.assert_allclose(Mx.completeness_gap(f, x, ig, baseline=0.3, relative=True), 0.0, atol=1e-5)
    delta = f(x)[:, 0]
    np.testing.assert_allclose(Mx.completeness_gap(f, x, jnp.zeros((2, H, W)), outputs=0, relative=True), 1.0,
                               rtol=1e-6)
    np.testing.assert_allclose(Mx.completeness_gap(f, x, jnp.zeros((2, H, W)), outputs=0), jnp.abs(delta), rtol=1e-6)


def test_road_imputes_and_orders(lin):
    _, _, f, w, _ = lin
    spikes = jax.random.uniform(jax.random.key(7), (2, H, W, 1)) < 0.2  # bright spikes on a flat dark ground
    x = jnp.where(spikes, 1.0, 0.1)
    perfect = (w * x)[..., 0]
    key = jax.random.key(0)
    fr = (0.2, 0.5, 0.8)
    morf = Mx.road(f, x, perfect, key=key, outputs=0, fractions=fr, softmax=False, noise=0.0)
    assert morf.curves.shape == (2, 3) and morf.correct.shape == (2, 3) and morf.auc.shape == (2,)
    # the curve is the model on the imputed image, pixel by pixel as ranked
    rank = jnp.argsort(jnp.argsort(-perfect.reshape(2, -1), axis=1), axis=1).reshape(2, H, W)
    for s, q in enumerate(fr):
        m = rank < int(np.floor(H * W * q + 1e-9))
        imp = Mx.noisy_linear_imputation(x, m, key=key, noise=0.0)
        np.testing.assert_allclose(morf.curves[:, s], f(imp)[:, 0], rtol=1e-4, atol=1e-4)
    lerf = Mx.road(f, x, perfect, key=key, outputs=0, fractions=fr, softmax=False, noise=0.0, order="lerf")
    assert bool(jnp.all(morf.auc < lerf.auc))
    noisy = Mx.road(f, x, perfect, key=key, outputs=0, fractions=fr, softmax=False)
    again = Mx.road(f, x, perfect, key=key, outputs=0, fractions=fr, softmax=False)
    np.testing.assert_array_equal(noisy.curves, again.curves)
    assert not np.allclose(noisy.curves, morf.curves, atol=1e-6)  # the noise is there


def test_pixel_flipping_region_perturbation_irof(lin):
    f, w, fp, wp, x = lin
    perfect = (w * x)[..., 0]
    pf = Mx.pixel_flipping(f, x, perfect, outputs=0, features_in_step=3)
    d = Mx.deletion(f, x, perfect, outputs=0, step_size=3)
    np.testing.assert_allclose(pf.curves, d.curves, atol=1e-6)  # the same curve, two names
    np.testing.assert_allclose(pf.auc, d.auc, atol=1e-6)
    rnd = jax.random.normal(jax.random.key(3), (2, H, W))
    rp = Mx.region_perturbation(f, x, perfect, outputs=0, patch_size=2, softmax=False)
    rr = Mx.region_perturbation(f, x, rnd, outputs=0, patch_size=2, softmax=False)
    assert rp.curves.shape == (2, 10) and bool(jnp.all(rp.aopc > rr.aopc))
    # greedy removal of the largest patch contributions is the best AOPC there is (linear model)
    contrib = (w * x)[..., 0].reshape(2, 3, 2, 3, 2).sum((2, 4)).reshape(2, 9)
    best = jnp.cumsum(jnp.sort(contrib, -1)[:, ::-1], -1)
    np.testing.assert_allclose(rp.aopc, jnp.concatenate([jnp.zeros((2, 1)), best], -1).mean(-1), rtol=1e-5)
    seg = (jnp.arange(H)[:, None] // 2 * 3 + jnp.arange(W)[None] // 2).astype(jnp.int32)
    good = Mx.irof(fp, x, (wp * x)[..., 0], segments=seg, outputs=0, softmax=False)
    bad = Mx.irof(fp, x, -(wp * x)[..., 0], segments=seg, outputs=0, softmax=False)
    assert good.curves.shape == (2, 9) and good.n_segments.tolist() == [9, 9]
    np.testing.assert_allclose(good.curves[:, -1], 0.0, atol=1e-6)  # everything removed -> logit 0
    assert bool(jnp.all(good.score > bad.score))


def test_monotonicity(lin):
    f, w, fp, wp, x = lin
    m = Mx.monotonicity(fp, x, jax.random.normal(jax.random.key(4), (2, H, W)), outputs=0, softmax=False)
    assert m.monotonic.tolist() == [True, True] and np.allclose(m.share, 1.0)  # every pixel adds
    np.testing.assert_allclose(m.curves[:, -1], fp(x)[:, 0], rtol=1e-5)
    mixed = Mx.monotonicity(f, x, (w * x)[..., 0], outputs=0, softmax=False)  # negative ones come first
    assert mixed.monotonic.tolist() == [False, False] and bool(jnp.all(mixed.share < 1))
    c = Mx.monotonicity_correlation(fp, x, (wp * x)[..., 0], outputs=0, softmax=False)
    np.testing.assert_allclose(c, 1.0, atol=1e-6)  # drop^2 = (w_i x_i)^2 ranks with w_i x_i > 0
    seg = (jnp.arange(H)[:, None] // 3 * 2 + jnp.arange(W)[None] // 3).astype(jnp.int32)
    per_seg = jax.vmap(lambda r: jax.ops.segment_sum(r.reshape(-1), seg.reshape(-1), 4))((wp * x)[..., 0])
    np.testing.assert_allclose(Mx.monotonicity_correlation(fp, x, per_seg, segments=seg, outputs=0, softmax=False),
                               1.0, atol=1e-6)
    np.testing.assert_allclose(Mx.monotonicity_correlation(fp, x, -per_seg, segments=seg, outputs=0, softmax=False),
                               -1.0, atol=1e-6)


def test_sensitivity_known_answers(lin):
    f, w, _, _, x = lin
    key = jax.random.key(2)
    const = lambda im, k: jnp.ones(im.shape[:3])  # noqa: E731
    s = Mx.sensitivity(f, const, x, key=key, outputs=0, n_samples=3)
    np.testing.assert_allclose(s.max, 0.0) and np.testing.assert_allclose(s.avg, 0.0)
    grad = lambda im, k: G.vanilla_gradient(f, im, outputs=k).heatmap()  # noqa: E731
    np.testing.assert_allclose(Mx.max_sensitivity(f, grad, x, key=key, outputs=0, n_samples=3), 0.0, atol=1e-6)
    gxi = lambda im, k: G.gradient_x_input(f, im, outputs=k).heatmap()  # noqa: E731
    s = Mx.sensitivity(f, gxi, x, key=key, outputs=0, n_samples=4, radius=0.05)
    want = jnp.stack([jnp.linalg.norm((w * _noise(key, j, x.shape, 0.05)).reshape(2, -1), axis=-1)
                      / jnp.linalg.norm((w * x).reshape(2, -1), axis=-1) for j in range(4)], -1)
    np.testing.assert_allclose(s.samples, want, rtol=1e-4)
    assert bool(jnp.all(s.avg <= s.max)) and np.allclose(Mx.avg_sensitivity(f, gxi, x, key=key, outputs=0,
                                                                            n_samples=4, radius=0.05), s.avg)


def test_random_logit_and_model_randomisation(lin):
    f, w, _, _, x = lin
    key = jax.random.key(0)
    blind = lambda im, k: im[..., 0] ** 2  # noqa: E731 - ignores the class
    for kind in ("ssim", "pearson"):
        np.testing.assert_allclose(Mx.random_logit(f, blind, x, key=key, outputs=0, similarity_kind=kind), 1.0,
                                   atol=1e-5)
    gxi = lambda im, k: G.gradient_x_input(f, im, outputs=k).heatmap()  # noqa: E731 - class 1 has zero gradient
    np.testing.assert_allclose(Mx.random_logit(f, gxi, x, key=key, outputs=0, similarity_kind="pearson"), 0.0)
    off = Mx.off_classes(jnp.array([0, 3, 9, 9]), 10, key=key)
    assert bool(jnp.all(off != jnp.array([0, 3, 9, 9]))) and bool(jnp.all((off >= 0) & (off < 10)))
    from shapjax import models

    clf = models.small_cnn(key=jax.random.key(0), num_classes=3, input_shape=(H, W, 1), widths=(4,), hidden=0)
    ex = lambda m, im, k: G.vanilla_gradient(m, im, outputs=k).heatmap()  # noqa: E731
    same = Mx.model_randomisation(clf, lambda m, im, k: im[..., 0], x, key=key)
    np.testing.assert_allclose(same, 1.0, atol=1e-6)  # a model-blind map survives randomisation
    r = Mx.model_randomisation(clf, ex, x, key=key)
    assert r.shape == (2,) and bool(jnp.all(r < 0.99))


def test_jit_and_no_recompilation(lin):
    f, w, _, _, x = lin
    key = jax.random.key(0)
    a = (w * x)[..., 0]

    @jax.jit
    def scores(x, a):
        return (Mx.infidelity(f, x, a, key=key, outputs=0, perturbation="subset", n_perturbations=8),
                Mx.pixel_flipping(f, x, a, outputs=0, features_in_step=9).aopc,
                Mx.completeness_gap(f, x, a, outputs=0))

    out = scores(x, a)
    eager = (Mx.infidelity(f, x, a, key=key, outputs=0, perturbation="subset", n_perturbations=8),
             Mx.pixel_flipping(f, x, a, outputs=0, features_in_step=9).aopc, Mx.completeness_gap(f, x, a, outputs=0))
    for o, e in zip(out, eager):
        np.testing.assert_allclose(o, e, rtol=1e-4, atol=1e-6)
    from shapjax.evaluation.metrics import imputation

    Mx.road(f, x, a, key=key, outputs=0, fractions=(0.3, 0.6))
    n = imputation._road_impl._cache_size()
    Mx.road(f, x + 0.01, a * 2, key=key, outputs=0, fractions=(0.3, 0.6))
    assert imputation._road_impl._cache_size() == n


def test_bad_inputs_name_the_argument(lin):
    f, w, _, _, x = lin
    a = (w * x)[..., 0]
    key = jax.random.key(0)
    cases = [
        (lambda: Mx.road(f, x, a, key=key, fractions=(0.5, 1.0)), ValueError, "fractions"),
        (lambda: Mx.road(f, x, a, key=key, fractions=(0.5, 0.2)), ValueError, "fractions"),
        (lambda: Mx.road(f, x, a, key=key, order="up"), ValueError, "order"),
        (lambda: Mx.road(f, x, a, key=key, noise=-1.0), ValueError, "noise"),
        (lambda: Mx.road(f, x, a, key=1), TypeError, "key"),
        (lambda: Mx.noisy_linear_imputation(x, jnp.ones((H, W), bool), key=key), ValueError, "masks"),
        (lambda: Mx.noisy_linear_imputation(x, jnp.ones((H, W)), key=key), TypeError, "masks"),
        (lambda: Mx.infidelity(f, x, a, key=key, perturbation="blur"), ValueError, "perturbation"),
        (lambda: Mx.infidelity(f, x, a, key=key, patch_size=7), ValueError, "patch_size"),
        (lambda: Mx.infidelity(f, x, a[:, :3], key=key), ValueError, "attributions"),
        (lambda: Mx.pixel_flipping(f, x, a, features_in_step=0), ValueError, "features_in_step"),
        (lambda: Mx.region_perturbation(f, x, a, n_regions=99), ValueError, "n_regions"),
        (lambda: Mx.monotonicity(f, x, a, outputs=[0, 1]), ValueError, "outputs"),
        (lambda: Mx.sensitivity(f, "grad", x, key=key), TypeError, "explain_fn"),
        (lambda: Mx.sensitivity(f, lambda i, k: a, x, key=key, n_samples=0), ValueError, "n_samples"),
        (lambda: Mx.sensitivity(f, lambda i, k: a, x, key=key, radius=0.0), ValueError, "radius"),
        (lambda: Mx.sensitivity(f, lambda i, k: a[:1], x, key=key), ValueError, "attributions"),
        (lambda: Mx.random_logit(f, lambda i, k: a, x, key=key, similarity_kind="l2"), ValueError, "similarity_kind"),
        (lambda: Mx.model_randomisation(f, lambda m, i, k: a, x, key=key), TypeError, "model"),
        (lambda: Mx.irof(f, (x * 255).astype(jnp.uint8), a, segments=jnp.zeros((H, W), jnp.int32)), TypeError,
         "images"),
    ]
    for fn, exc, word in cases:
        with pytest.raises(exc, match=word):
            fn()
