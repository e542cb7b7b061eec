"""Tests for shapjax.gradients: known answers on tiny linear models and CNNs."""
import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapjax.baselines import gradients as G

H, W, C, K = 5, 4, 2, 3
D = H * W * C


@pytest.fixture(scope="module")
def lin():
    w = jax.random.normal(jax.random.key(0), (D, K))
    b = jnp.array([0.3, -0.2, 0.1])

    def f(x):
        return x.reshape(x.shape[0], -1) @ w + b

    return f, w, b


@pytest.fixture(scope="module")
def mlp():
    k1, k2 = jax.random.split(jax.random.key(1))
    w1 = jax.random.normal(k1, (D, 8)) / np.sqrt(D) * 3.0
    w2 = jax.random.normal(k2, (8, K))

    def f(x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2

    return f


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(2), (3, H, W, C))


def wmap(w, k):
    """Weights of output k for each image: [B, H, W, C]."""
    return jnp.stack([w[:, kk].reshape(H, W, C) for kk in np.asarray(k)])


def test_vanilla_gradient_of_linear_model_is_its_weights(lin, images):
    f, w, _ = lin
    r = G.vanilla_gradient(f, images, outputs=jnp.array([[0], [2], [1]]))
    assert r.maps.shape == images.shape and r.method == "vanilla_gradient"
    np.testing.assert_allclose(r.maps, wmap(w, [0, 2, 1]), atol=1e-6)
    np.testing.assert_array_equal(r.output_indexes, [0, 2, 1])
    r2 = G.vanilla_gradient(f, images, outputs=1)
    np.testing.assert_allclose(r2.maps, wmap(w, [1, 1, 1]), atol=1e-6)


def test_default_output_is_top_prediction(lin, images):
    f, _, _ = lin
    r = G.vanilla_gradient(f, images)
    np.testing.assert_array_equal(r.output_indexes, jnp.argmax(f(images), -1))


def test_gradient_x_input_linear_sums_to_output_difference(lin, images):
    f, w, _ = lin
    r = G.gradient_x_input(f, images)
    k = r.output_indexes
    expect = f(images)[jnp.arange(3), k] - f(jnp.zeros_like(images))[jnp.arange(3), k]
    np.testing.assert_allclose(r.maps.reshape(3, -1).sum(-1), expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r.maps, wmap(w, k) * images, atol=1e-6)


@pytest.mark.parametrize("rule", ["trapezoid", "midpoint", "gauss-legendre"])
def test_integrated_gradients_gap_shrinks_with_steps(mlp, images, rule):
    gaps = [G.integrated_gradients(mlp, images, steps=s, rule=rule).completeness_gap
            for s in (2, 8, 32)]
    assert np.all(np.isfinite(gaps))
    assert float(gaps[0].max()) > 1e-3  # the coarse rule really is inexact on this model
    assert np.all(gaps[1] < gaps[0]) and np.all(gaps[2] <= gaps[1] + 1e-6)
    assert float(gaps[2].max()) < 0.02 * float(gaps[0].max()) + 1e-5


def test_integrated_gradients_linear_and_baselines(lin, images):
    f, w, _ = lin
    base = jax.random.uniform(jax.random.key(9), (H, W, C))
    r = G.integrated_gradients(f, images, baseline=base, steps=3, outputs=2)
    np.testing.assert_allclose(r.maps, wmap(w, [2, 2, 2]) * (images - base), atol=1e-5)
    np.testing.assert_array_less(r.completeness_gap, 1e-4)
    r2 = G.integrated_gradients(f, images, baseline=0.5, steps=3, outputs=2)
    np.testing.assert_allclose(r2.maps, wmap(w, [2, 2, 2]) * (images - 0.5), atol=1e-5)


def test_chunking_does_not_change_results(mlp, images):
    a = G.integrated_gradients(mlp, images, steps=7, batch_size=1000)
    b = G.integrated_gradients(mlp, images, steps=7, batch_size=5)  # 24 inputs -> 5 chunks, padded
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-5)
    o1 = G.occlusion(mlp, images, window=2, stride=1, batch_size=7)
    o2 = G.occlusion(mlp, images, window=2, stride=1)
    np.testing.assert_allclose(o1.maps, o2.maps, atol=1e-5)


def test_smoothgrad_with_zero_noise_is_the_gradient(mlp, images):
    r = G.smoothgrad(mlp, images, key=jax.random.key(0), noise=0.0, n_samples=4, batch_size=5)
    g = G.vanilla_gradient(mlp, images)
    np.testing.assert_allclose(r.maps, g.maps, rtol=1e-5, atol=1e-6)
    r2 = G.smoothgrad(mlp, images, key=jax.random.key(0), noise=0.3, n_samples=4)
    assert float(jnp.abs(r2.maps - g.maps).max()) > 1e-3  # noise changes a nonlinear model's map
    r3 = G.smoothgrad(mlp, images, key=jax.random.key(0), noise=0.3, n_samples=4)
    np.testing.assert_array_equal(r2.maps, r3.maps)  # same key, same answer


def test_expected_gradients_linear(lin, images):
    f, w, _ = lin
    bg = jax.random.uniform(jax.random.key(3), (4, H, W, C))
    # a single background image: exact, every sample gives w * (x - x')
    r1 = G.expected_gradients(f, images, bg[:1], key=jax.random.key(0), n_samples=3, outputs=0)
    np.testing.assert_allclose(r1.maps, wmap(w, [0] * 3) * (images - bg[0]), atol=1e-5)
    np.testing.assert_array_less(r1.completeness_gap, 1e-4)
    # several: w * (x - mean background) in expectation
    n = 4000
    r = G.expected_gradients(f, images, bg, key=jax.random.key(1), n_samples=n, outputs=0, batch_size=2048)
    expect = wmap(w, [0] * 3) * (images - bg.mean(0))
    spread = jnp.abs(wmap(w, [0] * 3)) * bg.std(0)
    err = jnp.abs(r.maps - expect)
    assert bool(jnp.all(err <= 5 * spread / np.sqrt(n) + 1e-5))
    assert float(r.completeness_gap.max()) < 0.2
    assert G.gradient_shap is G.expected_gradients


class TinyCNN(nn.Module):
    @nn.compact
    def features(self, x):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        return nn.relu(nn.Conv(5, (3, 3), strides=(2, 2))(x))

    @nn.compact
    def __call__(self, x):
        return nn.Dense(K)(self.features(x).reshape(x.shape[0], -1))


def test_grad_cam_flax_cnn_shape_and_sign():
    x = jax.random.uniform(jax.random.key(4), (2, 8, 8, 1))
    v = jax.jit(TinyCNN().init)(jax.random.key(5), x)
    feat = lambda im: TinyCNN().apply(v, im, method=TinyCNN.features)
    head = lambda fm: nn.Dense(K).apply({"params": v["params"]["Dense_0"]}, fm.reshape(fm.shape[0], -1))
    np.testing.assert_allclose(head(feat(x)), TinyCNN().apply(v, x), atol=1e-6)
    r = G.grad_cam(feat, head, x)
    assert r.heatmap().shape == (2, 8, 8) and r.maps.shape == (2, 8, 8, 1)
    assert r.coarse_maps.shape == (2, 4, 4)
    assert bool(jnp.all(r.maps >= 0)) and bool(jnp.all(r.coarse_maps >= 0))
    np.testing.assert_array_equal(r.output_indexes, jnp.argmax(TinyCNN().apply(v, x), -1))


def test_grad_cam_matches_hand_computation():
    x = jax.random.uniform(jax.random.key(6), (2, 4, 4, 1))
    Wf = jnp.array([[1.0, -1.0, 0.5]])  # 1 -> 3 feature channels
    Wh = jax.random.normal(jax.random.key(7), (2 * 2 * 3, K))

    def feat(im):  # 2x2 average pooling, then a 1x1 "conv"
        p = im.reshape(im.shape[0], 2, 2, 2, 2, 1).mean(axis=(2, 4))
        return p @ Wf  # [B, 2, 2, 3]

    head = lambda fm: fm.reshape(fm.shape[0], -1) @ Wh
    r = G.grad_cam(feat, head, x, outputs=jnp.array([[1], [2]]))
    A = np.asarray(feat(x))
    for b, k in enumerate([1, 2]):
        grads = np.asarray(Wh[:, k]).reshape(2, 2, 3)  # head is linear: dy/dA = Wh
        alpha = grads.mean(axis=(0, 1))
        cam = np.maximum((A[b] * alpha).sum(-1), 0.0)
        np.testing.assert_allclose(r.coarse_maps[b], cam, atol=1e-6)
        up = jax.image.resize(jnp.asarray(cam), (4, 4), "bilinear")
        np.testing.assert_allclose(r.heatmap()[b], up, atol=1e-6)


def test_occlusion_window_one_on_linear_model(lin, images):
    f, w, _ = lin
    r = G.occlusion(f, images, window=1, stride=1, outputs=1)
    assert r.maps.shape == (3, H, W, 1)
    np.testing.assert_allclose(r.heatmap(), (wmap(w, [1] * 3) * images).sum(-1), atol=1e-5)


def test_occlusion_averages_overlapping_windows(lin, images):
    f, w, _ = lin
    r = G.occlusion(f, images, window=(2, 3), stride=(2, 2), outputs=0, baseline=0.25)
    contrib = np.asarray((wmap(w, [0] * 3) * (images - 0.25)).sum(-1))  # per-pixel drop
    total, count = np.zeros((3, H, W)), np.zeros((H, W))
    for i in [0, 2, 3]:  # rows: 0, 2, then flush with the edge (H - 2 = 3)
        for j in [0, 1]:  # cols: 0, then flush (W - 3 = 1)
            total[:, i:i + 2, j:j + 3] += contrib[:, i:i + 2, j:j + 3].sum((1, 2))[:, None, None]
            count[i:i + 2, j:j + 3] += 1
    np.testing.assert_allclose(r.heatmap(), total / count, rtol=1e-5, atol=1e-5)


def test_to_segments_and_heatmap(lin, images):
    f, _, _ = lin
    r = G.gradient_x_input(f, images)
    seg = jnp.zeros((H, W), jnp.int32).at[2:].set(1).at[:, 3].set(2)
    v = r.to_segments(seg)
    hm = np.asarray(r.heatmap())
    assert v.shape == (3, 3)
    for m in range(3):
        np.testing.assert_allclose(v[:, m], hm[:, np.asarray(seg) == m].sum(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v.sum(-1), r.maps.reshape(3, -1).sum(-1), rtol=1e-5, atol=1e-5)
    segb = jnp.broadcast_to(seg, (3, H, W))
    np.testing.assert_allclose(jax.jit(lambda s: r.to_segments(s, n_segments=3))(segb), v, atol=1e-6)
    with pytest.raises(ValueError, match="segments"):
        r.to_segments(jnp.zeros((H + 1, W), jnp.int32))
    with pytest.raises(ValueError, match="n_segments"):
        jax.jit(lambda s: r.to_segments(s))(segb)


def test_under_jit_pytree_model_and_no_recompile(lin, images):
    f, w, b = lin
    pf = jax.tree_util.Partial(lambda w, x: x.reshape(x.shape[0], -1) @ w, w)
    r = G.integrated_gradients(pf, images, steps=4)
    np.testing.assert_allclose(r.maps, G.integrated_gradients(f, images, steps=4).maps, atol=1e-5)
    jitted = jax.jit(lambda x: G.integrated_gradients(f, x, steps=4).maps)
    np.testing.assert_allclose(jitted(images), r.maps, atol=1e-5)
    G.vanilla_gradient(f, images)
    n = G._simple_impl._cache_size()
    G.vanilla_gradient(f, images + 0.1)
    G.vanilla_gradient(pf, images)
    n2 = G._simple_impl._cache_size()
    G.vanilla_gradient(jax.tree_util.Partial(pf.func, w * 2), images)  # new arrays, same structure
    assert G._simple_impl._cache_size() == n2 <= n + 1


def test_bad_inputs_name_the_argument(lin, images):
    f, _, _ = lin
    with pytest.raises(ValueError, match="images"):
        G.vanilla_gradient(f, images[0])
    with pytest.raises(TypeError, match="images"):
        G.vanilla_gradient(f, (images * 255).astype(jnp.uint8))
    with pytest.raises(ValueError, match="outputs"):
        G.vanilla_gradient(f, images, outputs=K)
    with pytest.raises(ValueError, match="outputs"):
        G.vanilla_gradient(f, images, outputs=jnp.array([0, 1]))
    with pytest.raises(ValueError, match="model_fn"):
        G.vanilla_gradient(lambda x: x.sum((1, 2, 3)), images)
    with pytest.raises(TypeError, match="model_fn"):
        G.vanilla_gradient("not callable", images)
    with pytest.raises(ValueError, match="baseline"):
        G.integrated_gradients(f, images, baseline=jnp.zeros((7, 7, 7)))
    with pytest.raises(ValueError, match="rule"):
        G.integrated_gradients(f, images, rule="simpson")
    with pytest.raises(ValueError, match="steps"):
        G.integrated_gradients(f, images, steps=0)
    with pytest.raises(TypeError, match="key"):
        G.smoothgrad(f, images, key=0)
    with pytest.raises(ValueError, match="background"):
        G.expected_gradients(f, images, images[:, :2], key=jax.random.key(0))
    with pytest.raises(ValueError, match="window"):
        G.occlusion(f, images, window=6)
    with pytest.raises(ValueError, match="batch_size"):
        G.vanilla_gradient(f, images, batch_size=0)
    with pytest.raises(ValueError, match="features_fn"):
        G.grad_cam(lambda x: x.sum(-1), lambda a: a, images)


def test_public_signatures():
    for name in G.__all__:
        fn = getattr(G, name)
        if inspect.isclass(fn):
            continue
        params = list(inspect.signature(fn).parameters.values())
        if name in ("smoothgrad", "expected_gradients", "gradient_shap"):
            assert next(p for p in params if p.name == "key").kind is inspect.Parameter.KEYWORD_ONLY
        for p in params:
            if p.default is not inspect.Parameter.empty:
                assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)
