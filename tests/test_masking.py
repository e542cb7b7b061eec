"""Tests for kernels.masking: coalition -> pixel masks and composition."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapjax.kernels import (
    coalition_to_pixel_mask,
    coalitions_to_pixel_masks,
    compose,
    compose_batch,
)


def _problem(seed=0, H=5, W=7, C=3, R=2, M=6, N=4):
    rng = np.random.default_rng(seed)
    image = rng.random((H, W, C), dtype=np.float32)
    repl = rng.random((R, H, W, C), dtype=np.float32)
    seg = rng.permutation(np.arange(H * W) % M).reshape(H, W).astype(np.int32)
    Z = rng.random((N, M)) < 0.5
    return image, repl, seg, Z


def _compose_ref(image, repl, seg, z):
    R, H, W, _ = repl.shape
    out = np.empty_like(repl)
    for r in range(R):
        for h in range(H):
            for w in range(W):
                out[r, h, w] = image[h, w] if z[seg[h, w]] else repl[r, h, w]
    return out


def test_pixel_mask_matches_indexing():
    _, _, seg, Z = _problem()
    np.testing.assert_array_equal(coalition_to_pixel_mask(Z[0], seg), Z[0][seg])
    masks = coalitions_to_pixel_masks(Z, seg)
    assert masks.shape == (Z.shape[0], *seg.shape) and masks.dtype == jnp.bool_
    for n in range(Z.shape[0]):
        np.testing.assert_array_equal(masks[n], Z[n][seg])


def test_compose_matches_numpy_loop():
    image, repl, seg, Z = _problem()
    for z in Z:
        np.testing.assert_array_equal(compose(image, repl, seg, z), _compose_ref(image, repl, seg, z))


def test_compose_numeric_coalition_equals_bool():
    image, repl, seg, Z = _problem(1)
    np.testing.assert_array_equal(compose(image, repl, seg, Z[0].astype(np.float32)), compose(image, repl, seg, Z[0]))


def test_compose_extremes():
    image, repl, seg, Z = _problem(2)
    M = Z.shape[1]
    np.testing.assert_array_equal(compose(image, repl, seg, np.ones(M, bool)), np.broadcast_to(image, repl.shape))
    np.testing.assert_array_equal(compose(image, repl, seg, np.zeros(M, bool)), repl)


def test_compose_batch_equals_loop_and_vmaps_over_images():
    image, repl, seg, Z = _problem(3)
    out = compose_batch(image, repl, seg, Z)
    assert out.shape == (Z.shape[0], *repl.shape)
    for n, z in enumerate(Z):
        np.testing.assert_array_equal(out[n], _compose_ref(image, repl, seg, z))
    # vmap over a batch of images (each with its own replacement, segments, coalitions)
    probs = [_problem(s) for s in (4, 5)]
    imgs, repls, segs, Zs = (np.stack(x) for x in zip(*probs))
    batched = jax.jit(jax.vmap(compose_batch))(imgs, repls, segs, Zs)
    for b in range(2):
        np.testing.assert_array_equal(batched[b], compose_batch(imgs[b], repls[b], segs[b], Zs[b]))


def test_compose_does_not_recompile():
    image, repl, seg, Z = _problem(6)
    compose_batch(image, repl, seg, Z)
    n = compose_batch._cache_size()
    image2, repl2, seg2, Z2 = _problem(7)
    compose_batch(image2, repl2, seg2, Z2)
    assert compose_batch._cache_size() == n


def test_compose_shape_errors_name_argument():
    image, repl, seg, Z = _problem()
    with pytest.raises(ValueError, match="replacement"):
        compose(image, repl[:, :-1], seg, Z[0])
    with pytest.raises(ValueError, match="segments"):
        compose(image, repl, seg[:-1], Z[0])
    with pytest.raises(ValueError, match="image"):
        compose(image[..., 0], repl, seg, Z[0])
    with pytest.raises(TypeError, match="segments"):
        compose(image, repl, seg.astype(np.float32), Z[0])
    with pytest.raises(ValueError, match="Z"):
        compose_batch(image, repl, seg, Z[0])


def test_compose_rows_matches_compose_per_row():
    import jax
    import numpy as np

    from shapjax.kernels.masking import compose, compose_rows

    k = jax.random.split(jax.random.key(0), 4)
    imgs = jax.random.uniform(k[0], (5, 6, 7, 2))
    repl = jax.random.uniform(k[1], (5, 3, 6, 7, 2))
    segs = jax.random.randint(k[2], (5, 6, 7), 0, 4)
    Z = jax.random.bernoulli(k[3], 0.5, (5, 4))
    out = compose_rows(imgs, repl, segs, Z)
    for n in range(5):
        np.testing.assert_array_equal(out[n], compose(imgs[n], repl[n], segs[n], Z[n]))
