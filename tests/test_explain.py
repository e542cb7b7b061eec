"""`shapjax.explain` on images: exact answers, maskers, batching, jit, errors."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapjax
from shapjax.image import maskers, segment

KEY = jax.random.key(0)
METHODS = ["exact", "kernel", "leverage", "permutation", "antithetic", "stratified", "partition", "occlusion"]


def linear_model(H, W, C, K, seed=0):
    Wt = jax.random.normal(jax.random.key(seed), (H, W, C, K))
    return (lambda x: jnp.einsum("nhwc,hwck->nk", x, Wt)), np.asarray(Wt)


def linear_truth(Wt, images, segs, baseline):
    imgs, segs = np.asarray(images), np.asarray(segs)
    B, M, K = imgs.shape[0], segs.max() + 1, Wt.shape[-1]
    out = np.zeros((B, M, K))
    for b in range(B):
        contrib = np.einsum("hwck,hwc->hwk", Wt, imgs[b] - baseline)
        for j in range(M):
            out[b, j] = contrib[segs[b] == j].sum(0)
    return out


@pytest.mark.parametrize("method", METHODS)
def test_linear_model_recovers_segment_sums(method):
    H, W, C, K = 9, 11, 3, 2  # 9x11 is not divisible by the 3x4 grid
    model, Wt = linear_model(H, W, C, K)
    imgs = jax.random.uniform(jax.random.key(1), (4, H, W, C))
    seg = segment.grid(3, 4)
    exp = shapjax.explain(model, imgs, key=KEY, segments=seg, masker=maskers.constant(0.25), method=method, n_evals=300)
    truth = linear_truth(Wt, imgs, seg(imgs), 0.25)
    assert exp.values.shape == (4, 12, K)
    np.testing.assert_allclose(exp.values, truth, atol=1e-4)


def tiny_cnn(C, K=3, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    w1 = jax.random.normal(k1, (3, 3, C, 4)) * 0.5
    w2 = jax.random.normal(k2, (4, K))

    def model(x):
        h = jax.lax.conv_general_dilated(x, w1, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.tanh(h).mean((1, 2)) @ w2

    return model


def brute_exact(model, image, repl, segs, M):
    """Hand-written exact Shapley values: loop over all coalitions and the formula."""
    from math import factorial

    vals = {}
    for z in itertools.product([0, 1], repeat=M):
        mask = np.asarray(z, bool)[segs][..., None]
        x = np.where(mask[None], image[None], repl)  # [R,H,W,C]
        vals[z] = np.asarray(model(jnp.asarray(x))).mean(0)
    phi = np.zeros((M, next(iter(vals.values())).shape[0]))
    for z, v in vals.items():
        s = sum(z)
        for i in range(M):
            if z[i]:
                continue
            zi = list(z)
            zi[i] = 1
            phi[i] += factorial(s) * factorial(M - s - 1) / factorial(M) * (vals[tuple(zi)] - v)
    return phi


@pytest.mark.parametrize(
    "masker_name", ["constant", "blur", "segment_mean", "background"]
)
def test_exact_on_small_cnn_matches_brute_force(masker_name):
    H = W = 8
    C = 3
    model = tiny_cnn(C)
    img = jax.random.uniform(jax.random.key(2), (1, H, W, C))
    bg = jax.random.uniform(jax.random.key(3), (3, H, W, C))
    m = {
        "constant": maskers.constant([0.1, 0.5, 0.9]),
        "blur": maskers.blur(1.5),
        "segment_mean": maskers.segment_mean(),
        "background": maskers.background(bg),
    }[masker_name]
    seg = segment.grid(2, 4)
    segs = seg(img)
    exp = shapjax.explain(model, img, key=KEY, segments=seg, masker=m, method="exact")
    repl = np.asarray(m.replacement(img, jnp.asarray(segs), 8))[0]
    ref = brute_exact(model, np.asarray(img[0]), repl, segs[0], 8)
    np.testing.assert_allclose(exp.values[0], ref, atol=2e-5)
    assert exp.masker == m.describe()


@pytest.mark.parametrize("method", ["kernel", "permutation", "partition", "exact"])
def test_efficiency_per_image_and_output(method):
    model = tiny_cnn(1, K=4)
    imgs = jax.random.uniform(jax.random.key(4), (5, 12, 12, 1))
    exp = shapjax.explain(model, imgs, key=KEY, segments=segment.grid(3, 3), masker=maskers.blur(2.0), method=method, n_evals=200)
    np.testing.assert_allclose(exp.values.sum(1), exp.full_values - exp.base_values, atol=1e-5)
    np.testing.assert_allclose(exp.full_values, model(imgs), atol=1e-5)


def test_to_pixels_sums_back_to_values():
    model = tiny_cnn(3)
    imgs = jax.random.uniform(jax.random.key(5), (2, 10, 7, 3))
    exp = shapjax.explain(model, imgs, key=KEY, segments=segment.grid(3, 2), masker=maskers.constant(0.0), n_evals=64)
    pix = np.asarray(exp.to_pixels())
    assert pix.shape == (2, 10, 7, 3)
    segs = np.asarray(exp.segments)
    for b in range(2):
        for j in range(6):
            np.testing.assert_allclose(pix[b][segs[b] == j].sum(0), exp.values[b, j], atol=1e-5)


def test_batch_of_64_grayscale_matches_one_by_one():
    model = tiny_cnn(1)
    imgs = jax.random.uniform(jax.random.key(6), (64, 8, 8, 1))
    kw = dict(key=KEY, segments=segment.grid(2, 2), masker=maskers.constant(0.0), method="kernel", n_evals=64)
    exp = shapjax.explain(model, imgs, **kw)
    assert exp.values.shape == (64, 4, 3)
    one = shapjax.explain(model, imgs[17], **kw)
    assert one.values.shape == (1, 4, 3)
    np.testing.assert_allclose(exp.values[17], one.values[0], atol=1e-5)


def test_outputs_selection():
    model = tiny_cnn(3, K=5)
    imgs = jax.random.uniform(jax.random.key(7), (3, 8, 8, 3))
    kw = dict(key=KEY, segments=segment.grid(2, 2), masker=maskers.constant(0.0), method="exact")
    full = shapjax.explain(model, imgs, **kw)
    some = shapjax.explain(model, imgs, outputs=[4, 1], **kw)
    np.testing.assert_allclose(some.values, full.values[:, :, [4, 1]], atol=1e-6)
    top = shapjax.explain(model, imgs, outputs="top-2", **kw)
    order = np.argsort(-np.asarray(model(imgs)), axis=1)[:, :2]
    np.testing.assert_array_equal(top.output_indexes, order)
    np.testing.assert_allclose(top.values, np.take_along_axis(np.asarray(full.values), order[:, None, :], 2), atol=1e-6)


def test_superpixels_with_different_counts_per_image():
    from skimage import data, transform

    a = transform.resize(data.astronaut(), (32, 32), anti_aliasing=True).astype(np.float32)
    c = transform.resize(data.chelsea(), (32, 32), anti_aliasing=True).astype(np.float32)
    imgs = np.stack([a, c])
    model = tiny_cnn(3)
    exp = shapjax.explain(model, imgs, key=KEY, segments=segment.slic(12), masker=maskers.segment_mean(),
                          method="kernel", n_evals=1024)
    counts = [int(np.asarray(exp.segments[b]).max()) + 1 for b in range(2)]
    M = exp.values.shape[1]
    assert M == max(counts)
    for b in range(2):
        assert np.all(np.asarray(exp.values[b, counts[b]:]) == 0)  # padded, empty players
    np.testing.assert_allclose(exp.values.sum(1), exp.full_values - exp.base_values, atol=1e-4)


def test_inside_users_jit_with_traced_params():
    H = W = 8
    k1 = jax.random.key(8)
    params = jax.random.normal(k1, (H, W, 1, 2))
    seg = segment.grid(2, 2)

    @jax.jit
    def step(params, images):
        model = lambda x: jnp.einsum("nhwc,hwck->nk", x, params)  # noqa: E731
        exp = shapjax.explain(model, images, key=KEY, segments=seg, masker=maskers.constant(0.0), method="kernel", n_evals=32)
        return exp.values

    imgs = jax.random.uniform(jax.random.key(9), (3, H, W, 1))
    truth = linear_truth(np.asarray(params), imgs, seg(imgs), 0.0)
    np.testing.assert_allclose(step(params, imgs), truth, atol=1e-4)


def test_explanation_is_a_pytree_with_static_metadata():
    model = tiny_cnn(1)
    imgs = jax.random.uniform(jax.random.key(10), (2, 8, 8, 1))
    exp = shapjax.explain(model, imgs, key=KEY, segments=segment.grid(2, 2), masker=maskers.constant(0.0), n_evals=32)
    doubled = jax.tree_util.tree_map(lambda x: x * 2, exp)
    assert doubled.method == "kernel" and doubled.n_evals == exp.n_evals
    np.testing.assert_allclose(doubled.values, 2 * exp.values)


def test_to_shap_conversion():
    shap = pytest.importorskip("shap")
    model = tiny_cnn(3)
    imgs = jax.random.uniform(jax.random.key(11), (2, 8, 8, 3))
    exp = shapjax.explain(model, imgs, key=KEY, segments=segment.grid(2, 2), masker=maskers.constant(0.0), n_evals=32)
    s = exp.to_shap(class_names=["a", "b", "c"])
    assert isinstance(s, shap.Explanation)
    assert s.values.shape == (2, 8, 8, 3, 3)
    np.testing.assert_allclose(s.values.sum((1, 2, 3)), exp.values.sum(1), atol=1e-5)
    assert list(s.output_names) == ["a", "b", "c"] and s[0].values.shape == (8, 8, 3, 3)


@pytest.mark.parametrize("class_names", [None, ["a", "b", "c"]])
def test_to_shap_renders_with_shap_image_plot(class_names, tmp_path):
    shap = pytest.importorskip("shap", reason="the optional dependency shap is not installed")
    import matplotlib.pyplot as plt

    model = tiny_cnn(3)
    imgs = jax.random.uniform(jax.random.key(11), (2, 8, 8, 3))
    for outputs in (None, "top-2"):  # same classes in every row, and classes that differ per row
        exp = shapjax.explain(model, imgs, key=KEY, segments=segment.grid(2, 2), masker=maskers.constant(0.0),
                              n_evals=32, outputs=outputs)
        s = exp.to_shap(class_names=class_names)
        assert s[1].values.shape == (8, 8, 3, exp.values.shape[-1])  # shap can index it
        shap.plots.image(s, labels=exp.labels(class_names), show=False)
        path = tmp_path / f"shap_{outputs}.png"
        plt.savefig(path)
        plt.close("all")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shap.plots.image(exp.to_shap(class_names=class_names), show=False)  # default labels work too
    plt.close("all")
    with pytest.raises(ValueError, match="class_names"):
        exp.to_shap(class_names=["a"])


# ---------------------------------------------------------------- bad input


def test_errors_name_the_argument():
    model = tiny_cnn(3)
    imgs = jax.random.uniform(jax.random.key(12), (2, 8, 8, 3))
    kw = dict(key=KEY, masker=maskers.constant(0.0), n_evals=64)
    with pytest.raises(ValueError, match="images: expected shape"):
        shapjax.explain(model, imgs[0, 0], segments=segment.grid(2, 2), **kw)
    with pytest.raises(ValueError, match="segments"):
        shapjax.explain(model, imgs, segments=np.zeros((7, 8), np.int32), **kw)
    with pytest.raises(ValueError, match="contiguous"):
        shapjax.explain(model, imgs, segments=np.where(np.arange(64).reshape(8, 8) < 32, 0, 2), **kw)
    with pytest.raises(ValueError, match="NaN"):
        shapjax.explain(model, imgs.at[0, 0, 0, 0].set(jnp.nan), segments=segment.grid(2, 2), **kw)
    with pytest.raises(ValueError, match="background"):
        shapjax.explain(model, imgs, key=KEY, segments=segment.grid(2, 2),
                        masker=maskers.background(jnp.zeros((2, 8, 8, 1))), n_evals=64)
    with pytest.raises(ValueError, match=r"model_fn must map images"):
        shapjax.explain(lambda x: model(x)[:1], imgs, segments=segment.grid(2, 2), **kw)
    with pytest.raises(ValueError, match="method"):
        shapjax.explain(model, imgs, segments=segment.grid(2, 2), method="shapley", **kw)
    with pytest.raises(ValueError, match="at least"):
        shapjax.explain(model, imgs, key=KEY, segments=segment.grid(4, 4), masker=maskers.constant(0.0), n_evals=5)
    with pytest.raises(TypeError, match="masker"):
        shapjax.explain(model, imgs, key=KEY, segments=segment.grid(2, 2), masker=0.0, n_evals=64)
    with pytest.raises(ValueError, match="outputs"):
        shapjax.explain(model, imgs, segments=segment.grid(2, 2), outputs="best", **kw)
    with pytest.raises(TypeError, match="key"):
        shapjax.explain(model, imgs, key=1, segments=segment.grid(2, 2), masker=maskers.constant(0.0))


def test_partial_model_params_are_arguments_not_constants():
    traces = []

    def apply(params, x):
        traces.append(1)
        return jnp.einsum("nhwc,hwck->nk", x, params)

    imgs = jax.random.uniform(jax.random.key(13), (2, 8, 8, 1))
    kw = dict(key=KEY, segments=segment.grid(2, 2), masker=maskers.constant(0.0), method="kernel", n_evals=32)
    p1 = jax.random.normal(jax.random.key(1), (8, 8, 1, 2))
    p2 = jax.random.normal(jax.random.key(2), (8, 8, 1, 2))
    e1 = shapjax.explain(jax.tree_util.Partial(apply, p1), imgs, **kw)
    n = len(traces)
    e2 = shapjax.explain(jax.tree_util.Partial(apply, p2), imgs, **kw)
    assert n >= 2  # the shape probe and the compiled program
    assert len(traces) - n <= 1  # second call: at most the shape probe, no recompilation
    np.testing.assert_allclose(e1.values, linear_truth(np.asarray(p1), imgs, segment.grid(2, 2)(imgs), 0.0), atol=1e-4)
    np.testing.assert_allclose(e2.values, linear_truth(np.asarray(p2), imgs, segment.grid(2, 2)(imgs), 0.0), atol=1e-4)
