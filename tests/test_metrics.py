"""Tests for shapjax.metrics and shapjax.sanity on answers known in advance."""
import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
from skimage.metrics import structural_similarity

from shapjax.baselines import gradients as G
from shapjax.evaluation import metrics as Mx
from shapjax.evaluation import sanity as S
from shapjax.image.explain import Explanation

H, W, C = 6, 6, 1


@pytest.fixture(scope="module")
def setup():
    """A 2-class linear model: logit_0 = w . x, logit_1 = 0, and positive images."""
    w = jax.random.normal(jax.random.key(0), (H, W, C))
    x = jax.random.uniform(jax.random.key(1), (2, H, W, C), minval=0.2, maxval=1.0)

    def f(im):
        z = (im * w).sum((1, 2, 3))
        return jnp.stack([z, jnp.zeros_like(z)], -1)

    return f, w, x


def test_deletion_perfect_beats_random(setup):
    f, w, x = setup
    perfect = (w * x).sum(-1)
    curve = Mx.deletion(f, x, perfect, outputs=0, n_steps=12)
    assert curve.curves.shape == (2, 13) and curve.auc.shape == (2,)
    np.testing.assert_allclose(np.asarray(curve.fractions)[[0, -1]], [0.0, 1.0])
    p0 = jax.nn.softmax(f(x), -1)[:, 0]
    np.testing.assert_allclose(curve.curves[:, 0], p0, rtol=1e-5)
    np.testing.assert_allclose(curve.curves[:, -1], 0.5, rtol=1e-5)  # all deleted: logits (0, 0)
    for seed in range(3):
        rnd = jax.random.normal(jax.random.key(10 + seed), (2, H, W))
        worse = Mx.deletion(f, x, rnd, outputs=0, n_steps=12)
        assert bool(jnp.all(curve.auc < worse.auc))
        assert bool(jnp.all(curve.curves <= worse.curves + 1e-6))  # greedy order is pointwise optimal


def test_insertion_perfect_beats_random(setup):
    f, w, x = setup
    blurred = Mx.gaussian_blur(x, 2.0)
    perfect = (w * (x - blurred)).sum(-1)  # each pixel's effect when put back into the blur
    curve = Mx.insertion(f, x, perfect, outputs=0, blur_sigma=2.0, step_size=4)
    assert curve.curves.shape == (2, 10)  # 36 pixels / 4 per step -> 9 steps + start
    np.testing.assert_allclose(curve.curves[:, 0], jax.nn.softmax(f(blurred), -1)[:, 0], rtol=1e-5)
    np.testing.assert_allclose(curve.curves[:, -1], jax.nn.softmax(f(x), -1)[:, 0], rtol=1e-5)
    from_zero = Mx.insertion(f, x, (w * x).sum(-1), outputs=0, blur_sigma=None, n_steps=9)
    for seed in range(3):
        rnd = jax.random.normal(jax.random.key(20 + seed), (2, H, W))
        assert bool(jnp.all(curve.auc > Mx.insertion(f, x, rnd, outputs=0, blur_sigma=2.0,
                                                     step_size=4).auc))
        assert bool(jnp.all(from_zero.auc > Mx.insertion(f, x, rnd, outputs=0, blur_sigma=None,
                                                         n_steps=9).auc))


def test_curve_auc_known_values_probs_and_chunks(setup):
    _, _, x = setup
    const = lambda im: jnp.broadcast_to(jnp.array([0.25, 0.75]), (im.shape[0], 2))
    c = Mx.deletion(const, x, jnp.zeros((2, H, W)), probs=True, n_steps=5, batch_size=4)
    np.testing.assert_allclose(c.auc, 0.75, rtol=1e-6)  # default class: the top one
    f, w, _ = setup
    a = Mx.deletion(f, x, jnp.ones((2, H, W)), outputs=1, n_steps=6, batch_size=3)
    b = Mx.deletion(f, x, jnp.ones((2, H, W)), outputs=1, n_steps=6)
    np.testing.assert_allclose(a.curves, b.curves, atol=1e-6)
    # ties are broken by pixel index: an all-equal map deletes in row-major order
    m = jnp.zeros((H, W), bool).at[0].set(True)
    first_row = jnp.where(m[None, :, :, None], 0.0, x)
    np.testing.assert_allclose(b.curves[:, 1], jax.nn.softmax(f(first_row), -1)[:, 1], rtol=1e-5)


def test_curves_accept_segments_and_pixel_attribution(setup):
    f, w, x = setup
    seg = jnp.repeat(jnp.arange(3), 2)[:, None] * 3 + jnp.repeat(jnp.arange(3), 2)[None]  # 3x3 blocks
    seg = seg.astype(jnp.int32)
    pa = G.gradient_x_input(f, x, outputs=0)
    vals = pa.to_segments(seg)
    by_seg = Mx.deletion(f, x, vals, segments=seg, n_steps=9)
    pix = Mx.deletion(f, x, jnp.take_along_axis(vals, jnp.broadcast_to(seg, (2, H, W)).reshape(2, -1),
                                                1).reshape(2, H, W), n_steps=9)
    np.testing.assert_allclose(by_seg.curves, pix.curves, atol=1e-6)
    direct = Mx.deletion(f, x, pa, n_steps=9)  # outputs taken from the attribution (class 0)
    np.testing.assert_allclose(direct.curves, Mx.deletion(f, x, pa.heatmap(), outputs=0, n_steps=9).curves)
    e = Explanation(values=vals[..., None], base_values=jnp.zeros((2, 1)), full_values=jnp.zeros((2, 1)),
                    std=None, segments=jnp.broadcast_to(seg, (2, H, W)), images=x,
                    output_indexes=jnp.zeros((2, 1), jnp.int32))
    np.testing.assert_allclose(Mx.deletion(f, x, e, n_steps=9).curves, by_seg.curves, atol=1e-6)


def test_gaussian_blur_matches_scipy(setup):
    _, _, x = setup
    y = Mx.gaussian_blur(x, 1.0)
    ref = scipy.ndimage.gaussian_filter(np.asarray(x), sigma=(0, 1.0, 1.0, 0), mode="nearest", truncate=3.0)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    np.testing.assert_allclose(Mx.gaussian_blur(jnp.full((1, 5, 5, 3), 0.3), 4.0), 0.3, atol=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        Mx.gaussian_blur(x, 0.0)


def test_faithfulness_correlation(setup):
    f, w, x = setup
    perfect = (w * x).sum(-1)
    r = Mx.faithfulness_correlation(f, x, perfect, key=jax.random.key(0), outputs=0, n_subsets=32,
                                    subset_size=9)
    np.testing.assert_allclose(r, 1.0, atol=1e-4)  # drop of a linear logit == attribution sum
    rnd = jax.random.normal(jax.random.key(1), (2, H, W))
    r2 = Mx.faithfulness_correlation(f, x, rnd, key=jax.random.key(0), outputs=0, n_subsets=32,
                                     subset_size=9)
    assert bool(jnp.all(r2 < 0.9))
    seg = (jnp.arange(H)[:, None] // 2 * 3 + jnp.arange(W)[None] // 2).astype(jnp.int32)
    vals = G.gradient_x_input(f, x, outputs=0).to_segments(seg)
    r3 = Mx.faithfulness_correlation(f, x, vals, key=jax.random.key(2), segments=seg, outputs=0,
                                     n_subsets=16, subset_size=3, batch_size=10)
    np.testing.assert_allclose(r3, 1.0, atol=1e-4)
    with pytest.raises(TypeError, match="key"):
        Mx.faithfulness_correlation(f, x, perfect, key=None)
    with pytest.raises(ValueError, match="subset_size"):
        Mx.faithfulness_correlation(f, x, perfect, key=jax.random.key(0), subset_size=H * W + 1)


def test_pointing_game_and_mass():
    hm = jnp.zeros((2, 8, 8)).at[0, 2, 3].set(1.0).at[1, 7, 7].set(1.0)
    mask = jnp.zeros((8, 8), bool).at[1:4, 1:5].set(True)
    np.testing.assert_array_equal(Mx.pointing_game(hm, mask), [True, False])
    np.testing.assert_array_equal(Mx.pointing_game(hm, mask, tolerance=4), [True, False])
    np.testing.assert_array_equal(Mx.pointing_game(hm, mask, tolerance=5), [True, True])  # |(7,7)-(3,4)|=5
    mass = Mx.attribution_mass(hm.at[0, 6, 6].set(3.0).at[0, 0, 0].set(-5.0), mask)
    np.testing.assert_allclose(mass, [0.25, 0.0])
    with pytest.raises(ValueError, match="masks"):
        Mx.pointing_game(hm, jnp.zeros((7, 8), bool))


def test_sparseness_and_complexity():
    n = 50
    onehot = jnp.zeros((1, n)).at[0, 7].set(-2.0)
    uniform = jnp.full((1, n), 0.3)
    np.testing.assert_allclose(Mx.sparseness(onehot), 1 - 1 / n, rtol=1e-6)
    np.testing.assert_allclose(Mx.sparseness(uniform), 0.0, atol=1e-6)
    np.testing.assert_allclose(Mx.complexity(uniform), np.log(n), rtol=1e-6)
    np.testing.assert_allclose(Mx.complexity(onehot), 0.0, atol=1e-7)
    maps = jax.random.normal(jax.random.key(0), (3, 5, 5))
    g, e = Mx.sparseness(maps), Mx.complexity(maps)
    assert g.shape == e.shape == (3,) and bool(jnp.all((g > 0) & (g < 1))) and bool(jnp.all(e < np.log(25)))
    a = np.sort(np.abs(np.asarray(maps[0])).ravel())
    i = np.arange(1, 26)
    np.testing.assert_allclose(g[0], ((2 * i - 26) * a).sum() / (25 * a.sum()), rtol=1e-5)


def test_shapley_accuracy():
    exact = jnp.array([[3.0, -2.0, 1.0, 0.5], [1.0, 1.0, -4.0, 0.0]])
    est = exact.at[0, 3].set(-1.5).at[1, 0].set(0.0)
    acc = Mx.shapley_accuracy(est, exact, k=2, v_full=exact.sum(1) + 1.0, v_empty=jnp.ones(2))
    np.testing.assert_allclose(acc.rel_l2, [2.0 / np.sqrt(14.25), 1.0 / np.sqrt(18.0)], rtol=1e-6)
    np.testing.assert_allclose(acc.precision_at_k, [1.0, 0.5])  # top2 exact {0,1}/{2,0}; est {0,1}/{2,1}
    np.testing.assert_allclose(acc.efficiency_gap, [2.0, 1.0])
    e = Explanation(values=est[..., None], base_values=jnp.ones((2, 1)),
                    full_values=(exact.sum(1) + 1.0)[:, None], std=None,
                    segments=jnp.zeros((2, 2, 2), jnp.int32), images=jnp.zeros((2, 2, 2, 1)),
                    output_indexes=jnp.zeros((2, 1), jnp.int32))
    acc2 = Mx.shapley_accuracy(e, exact[..., None], k=2)
    np.testing.assert_allclose(acc2.efficiency_gap[:, 0], [2.0, 1.0])
    np.testing.assert_allclose(acc2.rel_l2, acc.rel_l2, rtol=1e-6)
    assert Mx.shapley_accuracy(est, exact, k=1).efficiency_gap is None
    with pytest.raises(ValueError, match="exact"):
        Mx.shapley_accuracy(est, exact[:, :3])
    with pytest.raises(ValueError, match="k"):
        Mx.shapley_accuracy(est, exact, k=5)


# ----------------------------------------------------------------------------- sanity

def test_spearman_matches_scipy():
    a = jax.random.normal(jax.random.key(0), (4, 30))
    b = a + jax.random.normal(jax.random.key(1), (4, 30))
    rho = S.spearman(a, b)
    rho_o = S.spearman(a, b, ties="ordinal")
    for i in range(4):
        ref = scipy.stats.spearmanr(np.asarray(a[i]), np.asarray(b[i])).statistic
        np.testing.assert_allclose(rho[i], ref, rtol=1e-5)
        np.testing.assert_allclose(rho_o[i], ref, rtol=1e-5)
    ta, tb = jnp.round(a * 2) / 2, jnp.round(b)  # with ties: average ranks, as scipy
    rt = S.spearman(ta, tb)
    for i in range(4):
        ref = scipy.stats.spearmanr(np.asarray(ta[i]), np.asarray(tb[i])).statistic
        np.testing.assert_allclose(rt[i], ref, rtol=1e-5)
    assert float(S.spearman(a[0], a[0])) == 1.0
    with pytest.raises(ValueError, match="b"):
        S.spearman(a, b[:, :3])


def test_ssim_identical_and_skimage():
    a = jax.random.uniform(jax.random.key(0), (2, 16, 16))
    b = jnp.clip(a + 0.2 * jax.random.normal(jax.random.key(1), (2, 16, 16)), 0, 1)
    np.testing.assert_allclose(S.ssim(a, a), 1.0, rtol=1e-6)
    a = a.at[:, 0, 0].set(0.0).at[:, 0, 1].set(1.0)  # already spans [0, 1]: normalising is a no-op
    b = b.at[:, 0, 0].set(0.0).at[:, 0, 1].set(1.0)
    ours = S.ssim(a, b)
    for i in range(2):
        ref = structural_similarity(np.asarray(a[i]), np.asarray(b[i]), data_range=1.0,
                                    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        np.testing.assert_allclose(ours[i], ref, rtol=1e-4)
    assert float(S.ssim(a[0], b[0])) < 0.9


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        x = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))
        return nn.Dense(3)(x)


@pytest.fixture(scope="module")
def cnn():
    x = jax.random.uniform(jax.random.key(3), (3, 8, 8, 1))
    return CNN().apply, jax.jit(CNN().init)(jax.random.key(4), x), x


def test_layer_order_and_randomize(cnn):
    _, v, _ = cnn
    order = S.layer_order(v)
    assert order == ["Dense_1", "Dense_0", "Conv_1", "Conv_0"]
    assert S.layer_order(v["params"], collection=None) == order
    r = S.randomize_layers(v, ["Dense_1", "Conv_0"], key=jax.random.key(0))
    same = lambda a, b: bool(jnp.all(a == b))
    assert same(r["params"]["Dense_0"]["kernel"], v["params"]["Dense_0"]["kernel"])
    assert not same(r["params"]["Dense_1"]["kernel"], v["params"]["Dense_1"]["kernel"])
    assert not same(r["params"]["Conv_0"]["kernel"], v["params"]["Conv_0"]["kernel"])
    assert same(r["params"]["Conv_0"]["bias"], v["params"]["Conv_0"]["bias"])  # zero std: kept
    k0 = v["params"]["Conv_1"]["kernel"]
    k1 = S.randomize_layers(v, ["Conv_1"], key=jax.random.key(0))["params"]["Conv_1"]["kernel"]
    np.testing.assert_allclose(jnp.std(k1), jnp.std(k0), rtol=0.35)
    with pytest.raises(ValueError, match="layers"):
        S.randomize_layers(v, ["Dense_9"], key=jax.random.key(0))


def test_cascading_randomization_decorrelates_gradients(cnn):
    apply, v, x = cnn
    res = S.cascading_randomization(apply, v, x, key=jax.random.key(0))
    assert res.layers == ("original", "Dense_1", "Dense_0", "Conv_1", "Conv_0")
    assert res.spearman_abs.shape == res.ssim.shape == res.same_prediction.shape == (5, 3)
    assert res.maps.shape == (5, 3, 8, 8)
    assert bool(jnp.all(res.spearman_abs[0] == 1.0)) and bool(jnp.all(res.spearman[0] == 1.0))
    np.testing.assert_allclose(res.ssim[0], 1.0, rtol=1e-6)
    assert bool(jnp.all(res.same_prediction[0]))
    assert float(res.spearman_abs[-1].mean()) < 0.5
    assert float(res.spearman[-1].mean()) < 0.5
    # a custom attribution function: gradient x input via shapjax.gradients
    af = lambda p, im: G.gradient_x_input(jax.tree_util.Partial(apply, p), im, outputs=0).heatmap()
    res2 = S.cascading_randomization(apply, v, x, key=jax.random.key(1), attr_fn=af, layers=["Dense_1"])
    assert res2.spearman.shape == (2, 3) and bool(jnp.all(res2.spearman[0] == 1.0))
    with pytest.raises(ValueError, match="attr_fn"):
        S.cascading_randomization(apply, v, x, key=jax.random.key(0), attr_fn=lambda p, im: im)


def test_cascading_randomization_shipped_mnist_cnn():
    """Adebayo et al.: on the trained mnist-cnn, randomising every layer drops the rank correlation
    of gradient maps far below the trained model's own agreement (maps of slightly noisy inputs)."""
    from shapjax import data, models

    clf = models.pretrained("mnist-cnn")
    x = jnp.asarray(data.samples("mnist").images[:3])
    res = S.cascading_randomization(clf.apply, clf.params, x, key=jax.random.key(0))
    assert res.layers[0] == "original" and len(res.layers) == 1 + len(S.layer_order(clf.params))
    k = jnp.argmax(clf(x), -1)[:, None]
    noisy = jnp.clip(x + 0.02 * jax.random.normal(jax.random.key(1), x.shape), 0, 1)
    a = G.vanilla_gradient(clf, x, outputs=k).heatmap()
    b = G.vanilla_gradient(clf, noisy, outputs=k).heatmap()
    trained = float(S.spearman(jnp.abs(a), jnp.abs(b)).mean())
    randomised = float(res.spearman_abs[-1].mean())
    assert trained > 0.5
    assert randomised < 0.3 and randomised < 0.5 * trained
    assert float(res.ssim[-1].mean()) < 0.2  # the structure is gone too


def test_bad_inputs_name_the_argument(setup):
    f, _, x = setup
    with pytest.raises(ValueError, match="attributions"):
        Mx.deletion(f, x, jnp.zeros((2, H, W + 1)))
    with pytest.raises(ValueError, match="attributions"):
        Mx.deletion(f, x, jnp.zeros((3, 4)), segments=jnp.zeros((H, W), jnp.int32))
    with pytest.raises(ValueError, match="segments"):
        Mx.deletion(f, x, jnp.zeros((2, 4)), segments=jnp.zeros((H, W - 1), jnp.int32))
    with pytest.raises(ValueError, match="n_steps"):
        Mx.deletion(f, x, jnp.zeros((2, H, W)), n_steps=3, step_size=2)
    with pytest.raises(ValueError, match="outputs"):
        Mx.insertion(f, x, jnp.zeros((2, H, W)), outputs=5)
    with pytest.raises(ValueError, match="images"):
        Mx.insertion(f, x[0], jnp.zeros((2, H, W)))
    with pytest.raises(ValueError, match="blur_sigma"):
        Mx.insertion(f, x, jnp.zeros((2, H, W)), blur_sigma=-1.0)
    with pytest.raises(ValueError, match="tolerance"):
        Mx.pointing_game(jnp.zeros((2, H, W)), jnp.ones((H, W), bool), tolerance=-1)


def test_public_signatures():
    for mod in (Mx, S):
        for name in mod.__all__:
            fn = getattr(mod, name)
            if inspect.isclass(fn):
                continue
            params = list(inspect.signature(fn).parameters.values())
            if "key" in [p.name for p in params]:
                assert next(p for p in params if p.name == "key").kind is inspect.Parameter.KEYWORD_ONLY, name
            for p in params:
                if p.default is not inspect.Parameter.empty:
                    assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)
