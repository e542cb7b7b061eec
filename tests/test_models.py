"""Tests for shapjax.models: architectures, Classifier, checkpoints, shipped weights."""
from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapjax import data, models
from shapjax.models import Classifier, ResNet18, ResNet50

DATA = Path(__file__).parent / "data"


def _n_params(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _fake_variables(module, input_shape, seed=0):
    """Variables of the right structure without running the (slow-to-compile) initialiser."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, *input_shape))))
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = jax.tree_util.keystr(path)
        if "var" in name:
            return jnp.ones(s.shape, s.dtype)
        if "mean" in name or "bias" in name:
            return jnp.zeros(s.shape, s.dtype)
        if "scale" in name:
            return jnp.ones(s.shape, s.dtype)
        fan_in = int(np.prod(s.shape[:-1]))
        return jnp.asarray(rng.normal(0, np.sqrt(1.0 / fan_in), s.shape), s.dtype)

    return dict(jax.tree_util.tree_map_with_path(fill, shapes))


def _forward_three_ways(clf, x):
    """apply, features and head(features) in one compiled program (compiling a ResNet is slow)."""
    @jax.jit
    def f(p, x):
        fmap = clf.features(p, x)
        return clf.apply(p, x), fmap, clf.head(p, fmap)

    return f(clf.params, x)


@pytest.fixture(scope="module")
def cnn():
    return models.small_cnn(key=jax.random.key(0), num_classes=10, input_shape=(28, 28, 1))


def test_small_cnn_shapes_and_split(cnn):
    x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
    logits = cnn.apply(cnn.params, x)
    assert logits.shape == (3, 10)
    fmap = cnn.features(cnn.params, x)
    assert fmap.shape == (3, 7, 7, 128) == (3, *cnn.feature_shape)
    np.testing.assert_allclose(cnn.head(cnn.params, fmap), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cnn(x), logits, rtol=1e-5, atol=1e-5)
    assert 40_000 < _n_params(cnn.params) < 150_000  # small enough to train on 2 CPU cores
    assert cnn.class_names == [str(i) for i in range(10)]
    assert cnn.input_shape == (28, 28, 1)


def test_apply_is_pure_and_jittable(cnn):
    x = jax.random.uniform(jax.random.key(2), (2, 28, 28, 1))
    jitted = jax.jit(cnn.apply)
    np.testing.assert_allclose(jitted(cnn.params, x), cnn.apply(cnn.params, x), rtol=1e-5, atol=1e-5)
    # gradients w.r.t. the input flow through the pure function (what gradient explainers need)
    g = jax.grad(lambda im: cnn.apply(cnn.params, im)[:, 3].sum())(x)
    assert g.shape == x.shape and float(jnp.abs(g).sum()) > 0
    # a different set of params changes the output: params are not baked in
    other = jax.tree_util.tree_map(lambda p: p * 0.5, cnn.params)
    assert not np.allclose(jitted(other, x), jitted(cnn.params, x))


def test_wrong_image_shape_and_dtype_raise(cnn):
    with pytest.raises(ValueError, match=r"\[B, 28, 28, 1\].*got \[2, 32, 32, 3\]"):
        cnn(jnp.zeros((2, 32, 32, 3)))
    with pytest.raises(ValueError, match="expects images of shape"):
        cnn.apply(cnn.params, jnp.zeros((28, 28, 1)))
    with pytest.raises(TypeError, match="floating-point"):
        cnn(np.zeros((1, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match="fmap"):
        cnn.head(cnn.params, jnp.zeros((1, 7, 7, 3)))
    with pytest.raises(ValueError, match="class_names"):
        models.small_cnn(key=jax.random.key(0), num_classes=3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="valid"):
        models.create("vgg", key=jax.random.key(0), input_shape=(8, 8, 1), num_classes=2)


def test_resnet18_structure_and_forward():
    # exact structure: the CIFAR ResNet-18 (3x3 stem) has 11,173,962 parameters with 10 classes
    shapes = jax.eval_shape(lambda: ResNet18(10).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    assert _n_params(shapes["params"]) == 11_173_962
    assert set(shapes) == {"params", "batch_stats"}
    clf = Classifier("resnet18", {"num_classes": 10}, _fake_variables(ResNet18(10), (32, 32, 3)),
                     input_shape=(32, 32, 3))
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    logits, fmap, from_fmap = _forward_three_ways(clf, x)
    assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
    assert fmap.shape == (2, 4, 4, 512)
    np.testing.assert_allclose(from_fmap, logits, rtol=1e-4, atol=1e-4)


def test_resnet50_structure_and_forward_224():
    # exact torchvision ResNet-50 (v1.5) parameter count; structure checked without compute
    shapes = jax.eval_shape(lambda: ResNet50(1000).init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
    assert _n_params(shapes["params"]) == 25_557_032
    fshape = jax.eval_shape(lambda v, x: ResNet50(1000).apply(v, x, method="features"), shapes,
                            jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
    assert fshape.shape == (1, 7, 7, 2048)
    # a real forward pass at 224x224, batch 1, with a narrow (width 8) network of the same layout
    module = ResNet50(1000, width=8)
    clf = Classifier("resnet50", {"num_classes": 1000, "width": 8}, _fake_variables(module, (224, 224, 3)),
                     input_shape=(224, 224, 3))
    x = jax.random.uniform(jax.random.key(0), (1, 224, 224, 3))
    logits, fmap, from_fmap = _forward_three_ways(clf, x)
    assert logits.shape == (1, 1000) and bool(jnp.all(jnp.isfinite(logits)))
    assert fmap.shape == (1, 7, 7, 256)
    np.testing.assert_allclose(from_fmap, logits, rtol=1e-4, atol=1e-4)


def test_batchnorm_uses_running_stats_at_inference():
    module = models.ResNet(stage_sizes=(1, 1), block="basic", num_classes=3, width=4)
    variables = _fake_variables(module, (8, 8, 3))
    clf = Classifier("resnet", {"stage_sizes": (1, 1), "block": "basic", "num_classes": 3, "width": 4},
                     variables, input_shape=(8, 8, 3))
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 3))
    # inference output of one image does not depend on the rest of the batch
    np.testing.assert_allclose(clf(x)[:1], clf(x[:1]), rtol=1e-5, atol=1e-5)
    # and changing the running mean changes the output
    shifted = jax.tree_util.tree_map(lambda v: v + 0.5, variables["batch_stats"])
    clf2 = clf.replace(params=dict(variables, batch_stats=shifted))
    assert not np.allclose(clf2(x), clf(x))


def test_checkpoint_round_trip(tmp_path, cnn):
    x = jax.random.uniform(jax.random.key(3), (2, 28, 28, 1))
    path = models.save_checkpoint(tmp_path / "m", cnn.replace(class_names=list("abcdefghij")),
                                  metadata={"note": "hello"})
    assert path.suffix == ".msgpack" and path.with_suffix(".json").is_file()
    back = models.load_checkpoint(tmp_path / "m.msgpack")
    np.testing.assert_array_equal(np.asarray(back(x)), np.asarray(cnn(x)))
    assert back.class_names == list("abcdefghij") and back.input_shape == (28, 28, 1)
    assert models.read_metadata(path)["note"] == "hello"


def test_checkpoint_round_trip_with_batch_stats(tmp_path):
    kw = {"stage_sizes": (1, 1), "block": "basic", "num_classes": 3, "width": 4}
    module = models.ResNet(**kw)
    clf = Classifier("resnet", kw, _fake_variables(module, (8, 8, 3), seed=5), input_shape=(8, 8, 3))
    stats = jax.tree_util.tree_map(lambda v: v + 0.25, clf.params["batch_stats"])
    clf = clf.replace(params=dict(clf.params, batch_stats=stats))
    models.save_checkpoint(tmp_path / "r.msgpack", clf)
    back = models.load_checkpoint(tmp_path / "r.json")  # either file name works
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
    np.testing.assert_array_equal(np.asarray(back(x)), np.asarray(clf(x)))
    assert back.has_batch_stats


def test_checkpoint_errors(tmp_path, cnn):
    with pytest.raises(FileNotFoundError, match="not found"):
        models.load_checkpoint(tmp_path / "missing.msgpack")
    path = models.save_checkpoint(tmp_path / "c", cnn)
    path.write_bytes(b"\xc1 this is not msgpack")
    with pytest.raises(ValueError, match="not a valid flax msgpack checkpoint|not a flax variables"):
        models.load_checkpoint(path)
    # weights that do not fit the architecture named in the JSON
    models.save_checkpoint(tmp_path / "d", cnn)
    meta = json.loads((tmp_path / "d.json").read_text())
    meta["architecture_kwargs"]["widths"] = [8, 8, 8]
    (tmp_path / "d.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="expects|do not match"):
        models.load_checkpoint(tmp_path / "d.msgpack")
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        models.load_checkpoint(tmp_path / "d.msgpack")
    (tmp_path / "d.json").unlink()
    with pytest.raises(FileNotFoundError, match="metadata"):
        models.load_checkpoint(tmp_path / "d.msgpack")


def test_pretrained_unknown_name_lists_valid():
    assert {"mnist-cnn", "planted-patch"} <= set(models.available())
    with pytest.raises(ValueError, match=r"valid names: \[.*'mnist-cnn'.*'planted-patch'"):
        models.pretrained("imagenet-resnet")


def _accuracy(clf, images, labels):
    return float(np.mean(np.asarray(jnp.argmax(clf(images), -1)) == labels))


def test_pretrained_mnist_reaches_stated_accuracy():
    clf = models.pretrained("mnist-cnn")
    meta = models.metadata("mnist-cnn")
    assert clf.input_shape == (28, 28, 1) and clf.num_classes == 10 and clf.name == "mnist-cnn"
    assert meta["heldout_accuracy"] >= 0.97
    with np.load(DATA / "mnist_heldout.npz") as z:
        images, labels, idx = z["images"].astype(np.float32) / 255.0, z["labels"], z["indices"]
    assert images.shape == (300, 28, 28, 1) and idx.min() >= 8000  # never trained on (first 8000 are)
    acc = _accuracy(clf, images, labels)
    assert acc >= meta["test_slice"]["accuracy"] - 2 / 300
    assert acc >= 0.95
    # the Grad-CAM split holds for the shipped model too
    fmap = clf.features(clf.params, images[:4])
    np.testing.assert_allclose(clf.head(clf.params, fmap), clf(images[:4]), rtol=1e-4, atol=1e-4)


def test_pretrained_planted_patch_reaches_stated_accuracy():
    clf = models.pretrained("planted-patch")
    meta = models.metadata("planted-patch")
    assert clf.input_shape == (32, 32, 3)
    with np.load(DATA / "planted_heldout.npz") as z:
        images, labels, masks = z["images"].astype(np.float32) / 255.0, z["labels"], z["masks"]
    assert masks.shape == images.shape[:3] and len(labels) == meta["test_slice"]["n"]
    acc = _accuracy(clf, images, labels)
    assert acc >= meta["test_slice"]["accuracy"] - 1 / len(labels)
    # fresh images from the same generator (the training key was fold_in(key(0), 0)): still accurate
    fresh = data.planted_patch(200, key=jax.random.key(123), size=32, n_classes=4, patch_size=8)
    assert _accuracy(clf, fresh.images, fresh.labels) >= 0.97


def test_pretrained_weights_are_small():
    d = Path(models.__file__).parent / "weights"
    for f in d.glob("*.msgpack"):
        assert f.stat().st_size < 5_000_000, f
        meta = json.loads(f.with_suffix(".json").read_text())
        for k in ("architecture", "class_names", "input_shape", "training_command", "data", "split",
                  "heldout_accuracy"):
            assert k in meta, (f, k)


def test_public_signatures_key_keyword_only():
    import inspect

    from shapjax import data as data_mod
    from shapjax.models import adversarial, train

    checked = 0
    for mod in (models, data_mod, train, adversarial):
        for name in dir(mod):
            fn = getattr(mod, name)
            if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != mod.__name__ \
                    and not fn.__module__.startswith("shapjax.models"):
                continue
            params = list(inspect.signature(fn).parameters.values())
            if fn is data_mod.load:  # key is a keyword of one source only (or a seed in the source string)
                assert inspect.signature(fn).parameters["key"].kind is inspect.Parameter.KEYWORD_ONLY
                continue
            if any(p.name == "key" for p in params):
                key = next(p for p in params if p.name == "key")
                assert key.kind is inspect.Parameter.KEYWORD_ONLY, f"{mod.__name__}.{name}: key must be keyword-only"
                checked += 1
    assert checked >= 6
