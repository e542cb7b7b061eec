"""Tests for shapjax.maskers: replacement shapes and values, jit, specs, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from shapjax.image import maskers as K
from shapjax.image import segment as S
from shapjax.kernels import compose


def _batch(B=2, H=9, W=7, C=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((B, H, W, C), dtype=np.float32)
    seg = S.grid(3, 2)(images)
    return images, seg, 6


def test_constant_scalar_and_per_channel():
    images, seg, M = _batch()
    r = K.constant(0.25).replacement(images, seg, M)
    assert r.shape == (2, 1, 9, 7, 3) and r.dtype == jnp.float32
    np.testing.assert_allclose(r, 0.25)
    r = K.constant([0.1, 0.2, 0.3]).replacement(images, seg, M)
    np.testing.assert_allclose(r[1, 0, 4, 3], [0.1, 0.2, 0.3], rtol=1e-6)
    assert K.constant([0.1, 0.2, 0.3]).describe() == "constant(0.1,0.2,0.3)"


def test_constant_channel_mismatch_names_value():
    images, seg, M = _batch(C=1)
    with pytest.raises(ValueError, match="value.*C=1"):
        K.constant([0.1, 0.2, 0.3]).replacement(images, seg, M)
    with pytest.raises(ValueError, match="value"):
        K.constant([])


def test_blur_of_constant_is_constant():
    images = np.full((1, 6, 11, 2), 0.37, np.float32)
    for sigma in (0.7, 3.0, 20.0):  # radius larger than the image exercises repeated reflection
        r = K.blur(sigma).replacement(images, np.zeros((1, 6, 11), np.int32), 1)
        assert r.shape == (1, 1, 6, 11, 2)
        np.testing.assert_allclose(r, 0.37, atol=1e-6)


def test_blur_matches_scipy_reference():
    images, seg, M = _batch(H=16, W=13, C=2)
    r = K.blur(1.5).replacement(images, seg, M)
    for b in range(2):
        for c in range(2):
            # numpy 'reflect' padding == scipy.ndimage 'mirror'
            ref = ndimage.gaussian_filter(images[b, :, :, c].astype(np.float64), 1.5, mode="mirror", truncate=3.0)
            np.testing.assert_allclose(r[b, 0, :, :, c], ref, atol=1e-5)
    assert float(jnp.var(r)) < float(np.var(images))


def test_blur_sigma_validation():
    with pytest.raises(ValueError, match="sigma"):
        K.blur(0)
    with pytest.raises(ValueError, match="sigma"):
        K.blur(-1.0)


def test_segment_mean_equals_per_segment_mean():
    rng = np.random.default_rng(1)
    images = rng.random((2, 8, 10, 3), dtype=np.float32)
    seg = np.stack([rng.integers(0, 5, (8, 10)), rng.integers(0, 3, (8, 10))]).astype(np.int32)
    r = np.asarray(K.segment_mean().replacement(images, seg, 5))
    assert r.shape == (2, 1, 8, 10, 3)
    for b in range(2):
        for j in np.unique(seg[b]):
            inside = seg[b] == j
            m = images[b][inside].mean(axis=0)
            np.testing.assert_allclose(r[b, 0][inside], np.broadcast_to(m, (int(inside.sum()), 3)), rtol=1e-5)


def test_segment_mean_composed_with_empty_coalition():
    images, seg, M = _batch()
    r = K.segment_mean().replacement(images, seg, M)
    out = compose(images[0], r[0], seg[0], np.zeros(M, bool))
    np.testing.assert_allclose(out[0].mean(axis=(0, 1)), images[0].mean(axis=(0, 1)), rtol=1e-5)


def test_background_shapes_and_check():
    images, seg, M = _batch()
    bg = np.random.default_rng(2).random((4, 9, 7, 3), dtype=np.float32)
    m = K.background(bg)
    assert m.n_replacements() == 4 and m.describe() == "background(R=4)"
    r = m.replacement(images, seg, M)
    assert r.shape == (2, 4, 9, 7, 3)
    np.testing.assert_array_equal(r[1], bg)
    with pytest.raises(ValueError, match="background"):
        m.check(np.zeros((2, 9, 8, 3)))
    with pytest.raises(ValueError, match="background"):
        m.replacement(np.zeros((2, 9, 7, 1), np.float32), seg, M)
    with pytest.raises(ValueError, match=r"\[R, H, W, C\]"):
        K.background(bg[0])
    with pytest.raises(TypeError, match="float"):
        K.background(np.zeros((1, 9, 7, 3), np.uint8))


def test_replacement_input_validation():
    images, seg, M = _batch()
    with pytest.raises(ValueError, match="segments"):
        K.blur(1.0).replacement(images, seg[0], M)
    with pytest.raises(ValueError, match="images"):
        K.segment_mean().replacement(images[0], seg[0], M)


def test_maskers_under_jit():
    images, seg, M = _batch()
    f = jax.jit(lambda m, x, s: m.replacement(x, s, M), static_argnums=0)
    for m in (K.constant(0.5), K.blur(2.0), K.segment_mean()):
        np.testing.assert_allclose(f(m, images, seg), m.replacement(images, seg, M), atol=1e-6)
    g = jax.jit(lambda m, x, s: m.replacement(x, s, M))  # background as a pytree argument
    bg = K.background(images[:1])
    np.testing.assert_allclose(g(bg, images, seg), bg.replacement(images, seg, M))
    n = g._cache_size()
    g(K.background(images[1:]), images, seg)
    assert g._cache_size() == n  # new background values: no recompilation


def test_get_masker_specs_and_errors():
    assert K.get_masker("constant:0") == K.constant(0.0)
    assert K.get_masker("constant") == K.constant(0.0)
    assert K.get_masker("constant:0.5,0.5,0.5") == K.constant([0.5, 0.5, 0.5])
    assert K.get_masker("blur:5") == K.blur(5.0)
    assert K.get_masker("segment_mean") == K.segment_mean()
    images = np.stack([np.full((2, 2, 3), 0.2), np.full((2, 2, 3), 0.4)]).astype(np.float32)
    np.testing.assert_allclose(K.get_masker("mean", images=images).value, (0.3, 0.3, 0.3))
    with pytest.raises(ValueError, match="needs the images"):
        K.get_masker("mean")
    with pytest.raises(ValueError, match="valid specs.*constant.*blur.*segment_mean"):
        K.get_masker("noise")
    with pytest.raises(ValueError, match="bad masker spec"):
        K.get_masker("blur:x")
    with pytest.raises(ValueError, match="bad masker spec"):
        K.get_masker("constant:a,b")
