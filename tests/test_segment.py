"""Tests for shapjax.segment: segmenters, check_segments, partition_tree, specs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data, transform

from shapjax.image import hierarchy as H
from shapjax.image import segment as S


@pytest.fixture(scope="module")
def astronaut():
    img = transform.resize(data.astronaut(), (40, 48), anti_aliasing=True).astype(np.float32)
    return np.stack([img, img[::-1]])  # [2, 40, 48, 3]


def _contiguous(seg2d):
    ids = np.unique(seg2d)
    return ids[0] == 0 and np.array_equal(ids, np.arange(ids.size))


@pytest.mark.parametrize("H,W,rows,cols", [(7, 11, 3, 5), (28, 28, 8, 8), (5, 9, 5, 2), (10, 3, 4, 3)])
def test_grid_contiguous_and_balanced(H, W, rows, cols):
    seg = S.grid(rows, cols)(np.zeros((2, H, W, 1), np.float32))
    assert seg.shape == (2, H, W) and seg.dtype == np.int32
    assert _contiguous(seg[0]) and seg.max() + 1 == rows * cols == S.grid(rows, cols).n_segments
    # proportional boundaries: cell heights (widths) differ by at most one pixel
    heights = np.array([len(np.unique(np.nonzero(seg[0] == k)[0])) for k in range(0, rows * cols, cols)])
    widths = np.array([len(np.unique(np.nonzero(seg[0] == k)[1])) for k in range(cols)])
    assert heights.sum() == H and widths.sum() == W
    assert heights.max() - heights.min() <= 1 and widths.max() - widths.min() <= 1
    # cells are rectangles laid out row-major
    assert seg[0, 0, 0] == 0 and seg[0, -1, -1] == rows * cols - 1
    np.testing.assert_array_equal(seg[0], seg[1])


def test_grid_single_image_and_under_jit():
    seg = S.grid(4)(np.zeros((12, 8, 3)))
    assert seg.shape == (1, 12, 8) and seg.max() == 15

    @jax.jit
    def f(x):
        s = S.grid(2, 2)(x)  # static-shape constant on a traced image
        return jnp.asarray(s).sum()

    assert int(f(jnp.zeros((1, 4, 4, 1)))) == 4 * (0 + 1 + 2 + 3)


def test_grid_errors():
    with pytest.raises(ValueError, match="rows"):
        S.grid(0, 3)
    with pytest.raises(ValueError, match="more rows"):
        S.grid(9, 2)(np.zeros((8, 8, 1)))
    with pytest.raises(ValueError, match="images"):
        S.grid(2)(np.zeros((8, 8)))


@pytest.mark.parametrize("seg_fn", [S.slic(20), S.quickshift(), S.felzenszwalb(50, min_size=20)])
def test_superpixels_contiguous_rgb_and_gray(astronaut, seg_fn):
    seg = seg_fn(astronaut)
    assert seg.shape == (2, 40, 48) and seg.dtype == np.int32
    assert all(_contiguous(s) for s in seg) and seg.max() >= 2
    gray = astronaut.mean(-1, keepdims=True)
    seg1 = seg_fn(gray[0])  # single grayscale image [H, W, 1]
    assert seg1.shape == (1, 40, 48) and _contiguous(seg1[0]) and seg1.max() >= 2
    # the result passes validation
    _, m = S.check_segments(seg, astronaut)
    assert m == seg.max() + 1


def test_slic_has_about_n_segments_and_describe(astronaut):
    seg = S.slic(20)(astronaut[:1])
    assert 5 <= seg.max() + 1 <= 40
    assert S.slic(20).describe().startswith("slic(n_segments=20")
    assert "grid(3x4)" == S.grid(3, 4).describe()


def test_host_segmenters_reject_tracers(astronaut):
    with pytest.raises(TypeError, match="host"):
        jax.jit(lambda x: S.slic(10)(x))(astronaut)


def test_segmenters_are_hashable_static_args():
    assert hash(S.slic(10)) == hash(S.slic(10)) and S.grid(2, 3) == S.grid(2, 3)

    f = jax.jit(lambda x, seg_fn: jnp.asarray(seg_fn(x)).max(), static_argnums=1)
    assert int(f(jnp.zeros((1, 6, 6, 1)), S.grid(2, 3))) == 5


def test_check_segments_broadcast_and_types():
    images = np.zeros((3, 4, 5, 1), np.float32)
    seg = np.arange(20).reshape(4, 5) % 4
    out, m = S.check_segments(seg.astype(np.int64), images)
    assert out.shape == (3, 4, 5) and out.dtype == np.int32 and m == 4
    # per-image counts may differ: M = max
    seg3 = np.stack([seg, seg % 2, seg % 3])
    assert S.check_segments(seg3, images)[1] == 4
    assert S.check_segments(seg3, images, n_segments=6)[1] == 6


@pytest.mark.parametrize(
    "seg,exc,match",
    [
        (np.zeros((4, 6), int), ValueError, "segments"),  # wrong W
        (np.zeros((2, 4, 5), int), ValueError, "segments"),  # wrong B
        (np.zeros((4, 5), np.float32), TypeError, "integer"),
        (np.full((4, 5), -1), ValueError, ">= 0"),
        (np.array([[0, 1, 3, 3, 5]] * 4), ValueError, r"missing ids: \[2, 4\]"),
    ],
)
def test_check_segments_errors(seg, exc, match):
    with pytest.raises(exc, match=match):
        S.check_segments(seg, np.zeros((3, 4, 5, 3)))


def test_check_segments_n_segments_too_small():
    with pytest.raises(ValueError, match="n_segments"):
        S.check_segments(np.arange(4).reshape(2, 2), np.zeros((2, 2, 1)), n_segments=3)


def test_check_segments_traced_requires_n_segments():
    images = jnp.zeros((2, 4, 4, 3))
    seg = jnp.arange(16).reshape(4, 4) // 4
    with pytest.raises(ValueError, match="n_segments"):
        jax.jit(lambda s: S.check_segments(s, images)[0])(seg)
    out = jax.jit(lambda s: S.check_segments(s, images, n_segments=4)[0])(seg)
    assert out.shape == (2, 4, 4) and out.dtype == jnp.int32
    np.testing.assert_array_equal(out[1], seg)


@pytest.mark.parametrize("rows,cols", [(4, 4), (3, 5), (1, 1), (1, 2)])
def test_partition_tree_structure(rows, cols):
    seg = S.grid(rows, cols)(np.zeros((12, 15, 1)))[0]
    M = rows * cols
    t = H.partition_tree(seg)
    assert t.left.shape == t.right.shape == (M - 1,) and t.members.shape == (2 * M - 1, M)
    assert t.n_leaves == M and t.root == 2 * M - 2
    np.testing.assert_array_equal(t.members[:M], np.eye(M, dtype=bool))
    assert t.members[t.root].all() and t.parent[t.root] == -1
    for i in range(M, 2 * M - 1):
        a, b = t.left[i - M], t.right[i - M]
        assert a < i and b < i and t.parent[a] == i and t.parent[b] == i
        assert not (t.members[a] & t.members[b]).any()
        np.testing.assert_array_equal(t.members[i], t.members[a] | t.members[b])
        assert abs(int(t.members[a].sum()) - int(t.members[b].sum())) <= 1  # median split


def test_partition_tree_splits_longer_axis_first():
    seg = S.grid(2, 4)(np.zeros((8, 16, 1)))[0]  # wide image: first split is left/right
    t = H.partition_tree(seg)
    left_half = {0, 1, 4, 5}
    a = t.left[t.root - 8]
    assert set(np.nonzero(t.members[a])[0]) == left_half


def test_get_segmenter_specs_and_errors():
    assert S.get_segmenter("grid:8x8") == S.grid(8, 8)
    assert S.get_segmenter("grid:4") == S.grid(4, 4)
    assert S.get_segmenter("slic:30") == S.slic(30)
    assert S.get_segmenter("slic:n_segments=30,compactness=5") == S.slic(30, compactness=5)
    assert S.get_segmenter("quickshift") == S.quickshift()
    assert S.get_segmenter("felzenszwalb:200") == S.felzenszwalb(200)
    with pytest.raises(ValueError, match="valid specs.*grid.*slic.*quickshift.*felzenszwalb"):
        S.get_segmenter("watershed")
    with pytest.raises(ValueError, match="grid"):
        S.get_segmenter("grid:axb")
    with pytest.raises(ValueError, match="no option 'bogus'"):
        S.get_segmenter("slic:bogus=1")
    with pytest.raises(ValueError, match="not a number"):
        S.get_segmenter("felzenszwalb:big")


def test_fixed_n_segments():
    assert S.grid(3, 4).fixed_n_segments == 12
    assert S.slic(50).fixed_n_segments is None and S.quickshift().fixed_n_segments is None
