"""Tests for shapjax.data: every source of `load`, IDX parsing, planted-patch ground truth."""
from __future__ import annotations

import gzip
import struct

import jax
import numpy as np
import pytest

from shapjax import data
from shapjax.data import synthetic


# ------------------------------------------------------------------- tfds
def test_tfds_mnist_under_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        ds = data.load("tfds:mnist", split="test")
        assert ds.images.shape == (6, 28, 28, 1) and ds.images.dtype == np.float32
        assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
        assert ds.labels.shape == (6,) and ds.labels.dtype == np.int32
        assert ds.class_names == [str(i) for i in range(10)]
        assert set(ds.labels.tolist()) <= set(range(10))
        small = data.load("tfds:mnist", n=3, channels=3)
        assert small.images.shape == (3, 28, 28, 3)
        np.testing.assert_allclose(small.images[..., 0], small.images[..., 2])


def test_tfds_variable_size_images_need_size():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4):
        fm = data.load("tfds:fashion_mnist", n=2)
        assert fm.class_names[0] == "T-shirt/top"
        ds = data.load("tfds:imagenette", size=(24, 20))
        assert ds.images.shape == (4, 24, 20, 3)
        assert len(ds.class_names) == 10
        with pytest.raises(ValueError, match="size"):
            data.load("tfds:imagenette")  # mock images have random sizes


def test_tfds_unknown_dataset():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(ValueError, match="unknown tfds dataset 'mnistt'.*mnist"):
            data.load("tfds:mnistt")


# ------------------------------------------------------------------ folder
def _write_png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)


def test_folder_loader(tmp_path):
    rng = np.random.default_rng(0)
    for cls, count in (("cat", 3), ("dog", 2)):
        (tmp_path / cls).mkdir()
        for i in range(count):
            _write_png(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")  # ignored
    ds = data.load(f"folder:{tmp_path}")
    assert ds.class_names == ["cat", "dog"]
    assert ds.images.shape == (5, 10, 12, 3)
    assert sorted(ds.labels.tolist()) == [0, 0, 0, 1, 1]
    # pixel values survive the round trip
    from PIL import Image

    first = np.asarray(Image.open(tmp_path / "cat" / "0.png"), np.float32) / 255
    np.testing.assert_allclose(ds.images[ds.labels == 0][0], first, atol=1e-6)
    resized = data.load(f"folder:{tmp_path}", size=8, n=2)
    assert resized.images.shape == (2, 8, 8, 3)
    assert set(resized.labels.tolist()) == {0, 1}  # a small n sees every class
    grey = data.load(f"folder:{tmp_path}", channels=1)
    assert grey.images.shape == (5, 10, 12, 1)


def test_folder_grey_and_errors(tmp_path):
    (tmp_path / "a").mkdir()
    _write_png(tmp_path / "a" / "x.png", np.zeros((6, 6), np.uint8))
    _write_png(tmp_path / "a" / "y.png", np.full((7, 6), 255, np.uint8))
    with pytest.raises(ValueError, match="different sizes.*size="):
        data.load(f"folder:{tmp_path}")
    ds = data.load(f"folder:{tmp_path}", size=(6, 6))
    assert ds.images.shape == (2, 6, 6, 1)  # all-grey folder -> one channel
    (tmp_path / "a" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read image"):
        data.load(f"folder:{tmp_path}")
    with pytest.raises(FileNotFoundError):
        data.load(f"folder:{tmp_path / 'nope'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        data.load(f"folder:{empty}")


# --------------------------------------------------------------------- IDX
def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_idx_loader(tmp_path, compress):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    labels = np.asarray([3, 1, 4, 1, 5], np.uint8)
    write = (lambda p, b: p.write_bytes(gzip.compress(b))) if compress else (lambda p, b: p.write_bytes(b))
    ip, lp = tmp_path / "img.idx", tmp_path / "lab.idx"
    write(ip, _idx_bytes(images))
    write(lp, _idx_bytes(labels))
    ds = data.load(f"idx:{ip},{lp}")
    np.testing.assert_allclose(ds.images[..., 0], images / 255.0, atol=1e-7)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.class_names == [str(i) for i in range(6)]
    unlabeled = data.load(f"idx:{ip}")
    assert (unlabeled.labels == -1).all() and unlabeled.images.shape == (5, 4, 3, 1)
    np.testing.assert_array_equal(data.read_idx(ip), images)


def test_idx_int32_payload(tmp_path):
    arr = np.arange(-3, 3, dtype=np.int32).reshape(2, 3)
    (tmp_path / "a").write_bytes(_idx_bytes(arr, 0x0C))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a"), arr)


def test_idx_errors(tmp_path):
    good = _idx_bytes(np.zeros((2, 3, 3), np.uint8))
    bad_magic = tmp_path / "magic"
    bad_magic.write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(ValueError, match="bad magic number"):
        data.read_idx(bad_magic)
    bad_type = tmp_path / "type"
    bad_type.write_bytes(good[:2] + b"\x07" + good[3:])
    with pytest.raises(ValueError, match="unknown type code 0x07"):
        data.read_idx(bad_type)
    truncated = tmp_path / "short"
    truncated.write_bytes(good[:-4])
    with pytest.raises(ValueError, match=r"shape \(2, 3, 3\).*14 bytes"):
        data.read_idx(truncated)
    corrupt_gz = tmp_path / "gz"
    corrupt_gz.write_bytes(gzip.compress(good)[:-6])
    with pytest.raises(ValueError, match="corrupt gzip|bad magic|bytes"):
        data.read_idx(corrupt_gz)
    with pytest.raises(FileNotFoundError, match="not found"):
        data.load(f"idx:{tmp_path / 'missing'}")
    imgs, labs = tmp_path / "i", tmp_path / "l"
    imgs.write_bytes(good)
    labs.write_bytes(_idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="2 images.*3 labels"):
        data.load(f"idx:{imgs},{labs}")


# ---------------------------------------------------------- offline sources
def test_digits_and_upsampling():
    ds = data.load("digits")
    assert ds.images.shape == (1797, 8, 8, 1) and ds.images.max() == 1.0
    assert ds.class_names == [str(i) for i in range(10)]
    up = data.load("digits", size=28, n=10)
    assert up.images.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(up.labels, ds.labels[:10])
    # upsampling keeps the digit: the mean intensity barely changes
    np.testing.assert_allclose(up.images.mean((1, 2, 3)), ds.images[:10].mean((1, 2, 3)), atol=0.05)


def test_skimage_photos():
    ds = data.load("skimage:astronaut,camera", size=32)
    assert ds.images.shape == (2, 32, 32, 3) and ds.class_names == ["astronaut", "camera"]
    np.testing.assert_allclose(ds.images[1, ..., 0], ds.images[1, ..., 1])  # grey photo -> RGB
    assert len(data.load("skimage", size=16)) >= 6
    with pytest.raises(ValueError, match="valid:.*astronaut"):
        data.load("skimage:mona_lisa")


def test_samples_shipped():
    mn = data.samples("mnist")
    assert mn.images.shape == (16, 28, 28, 1) and set(range(10)) <= set(mn.labels.tolist())
    pp = data.samples("planted-patch")
    assert pp.images.shape == (8, 32, 32, 3) and pp.masks.shape == (8, 32, 32)
    assert (pp.masks.sum((1, 2)) == 64).all()
    assert len(data.load("samples:mnist", n=4)) == 4
    with pytest.raises(ValueError, match=r"valid names: \['mnist', 'planted-patch'\]"):
        data.samples("cifar")


# ------------------------------------------------------------ planted patch
def test_planted_patch_ground_truth():
    ds = data.planted_patch(40, key=jax.random.key(0), size=24, n_classes=4, patch_size=6)
    assert ds.images.shape == (40, 24, 24, 3) and ds.masks.shape == (40, 24, 24)
    assert ds.class_names == list(data.PATCH_PATTERNS[:4])
    np.testing.assert_array_equal(np.bincount(ds.labels, minlength=4), [10, 10, 10, 10])
    assert (ds.masks.sum((1, 2)) == 36).all()
    for img, mask, y in zip(ds.images, ds.masks, ds.labels):
        rows, cols = np.where(mask)
        patch = img[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert patch.shape == (6, 6, 3)
        bright = patch.mean(-1) > 0.5  # the binary pattern of the class, whatever the colours
        np.testing.assert_array_equal(bright, synthetic._pattern(int(y), 6) > 0.5)
    # deterministic in the key, different for another key
    again = data.planted_patch(40, key=jax.random.key(0), size=24, n_classes=4, patch_size=6)
    np.testing.assert_array_equal(again.images, ds.images)
    other = data.planted_patch(40, key=jax.random.key(1), size=24, n_classes=4, patch_size=6)
    assert not np.array_equal(other.masks, ds.masks)


def test_planted_patch_via_load_and_errors():
    ds = data.load("planted-patch:3", n=5, n_classes=2, size=16)
    assert ds.images.shape == (5, 16, 16, 3) and ds.masks is not None
    direct = data.planted_patch(5, key=jax.random.key(3), n_classes=2, size=16)
    np.testing.assert_array_equal(ds.images, direct.images)
    with_key = data.load("planted-patch", key=jax.random.key(3), n=5, n_classes=2, size=16)
    np.testing.assert_array_equal(with_key.images, direct.images)
    with pytest.raises(ValueError, match="neither"):
        data.load("planted-patch", n=5)
    with pytest.raises(ValueError, match="both"):
        data.load("planted-patch:1", key=jax.random.key(0), n=5)
    with pytest.raises(ValueError, match="only the planted-patch source is random"):
        data.load("digits", key=jax.random.key(0))
    with pytest.raises(ValueError, match="int seed"):
        data.load("planted-patch:abc", n=5)
    with pytest.raises(ValueError, match="needs n"):
        data.load("planted-patch:0")
    with pytest.raises(TypeError, match="options"):
        data.load("digits", n_classes=3)
    with pytest.raises(ValueError, match="n_classes"):
        data.planted_patch(4, key=jax.random.key(0), n_classes=9)
    with pytest.raises(ValueError, match="patch_size"):
        data.planted_patch(4, key=jax.random.key(0), size=8, patch_size=9)


# --------------------------------------------------------------- bad input
def test_unknown_source_lists_valid_names():
    with pytest.raises(ValueError, match="valid sources: tfds:<name>, folder:<path>.*digits.*planted-patch:<seed>"):
        data.load("cifar10")
    with pytest.raises(ValueError, match="split"):
        data.load("digits", split="test")
    with pytest.raises(ValueError, match="channels"):
        data.load("digits", channels=2)
    with pytest.raises(ValueError, match="size"):
        data.load("digits", size=(0, 3))
    with pytest.raises(TypeError, match="source"):
        data.load(3)


def test_dataset_validation_and_indexing():
    ds = data.Dataset(np.zeros((4, 2, 2, 1)), np.arange(4), ["a", "b", "c", "d"])
    assert len(ds) == 4 and ds.input_shape == (2, 2, 1)
    assert len(ds[1:3]) == 2 and ds[1:3].labels.tolist() == [1, 2]
    assert len(ds[np.asarray([True, False, True, False])]) == 2
    with pytest.raises(ValueError, match="labels"):
        data.Dataset(np.zeros((4, 2, 2, 1)), np.arange(3), [])
    with pytest.raises(ValueError, match="images"):
        data.Dataset(np.zeros((4, 2, 2)), np.arange(4), [])
