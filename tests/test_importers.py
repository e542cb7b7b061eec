"""Importers against the source frameworks, on random weights (torch, Keras 3 on JAX, ONNX, orbax).

torchvision cannot be installed beside torch 2.13.0 here, so the reference torch
ResNets are built below from torch.nn modules in torchvision's exact layout and
module names (conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0/1, fc): a
real torchvision state_dict has the same keys and shapes (checked once by hand
against torchvision 0.29.1's own resnet.py: 11,689,512 / 25,557,032 parameters).
Keras's own initializers compile one XLA kernel per weight shape (about 45 s for
InceptionV3 on 2 cores), so the Keras models are built with cheap initializers
and then given random weights with numpy.
"""
import json
import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapjax import models
from shapjax.models import importers

RNG = np.random.default_rng(0)
IMAGENET = models.NORMALIZATIONS["imagenet"]


def _images(n, h, w, c=3, seed=0):
    return np.random.default_rng(seed).random((n, h, w, c), dtype=np.float32)


def _normalised(x, norm):
    mean, std = (np.asarray(v, np.float32) for v in norm)
    return (x - mean) / std


# ------------------------------------------------------------------ torch (torchvision layout)

def _torch_resnets():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'shapjax[torch]')")
    nn = torch.nn

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
            return self.relu(self.bn3(self.conv3(out)) + idt)

    class ResNet(nn.Module):
        def __init__(self, block, layers, num_classes, cifar=False):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False) if cifar else nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
            self.layer1 = self._make_layer(block, 64, layers[0])
            self.layer2 = self._make_layer(block, 128, layers[1], 2)
            self.layer3 = self._make_layer(block, 256, layers[2], 2)
            self.layer4 = self._make_layer(block, 512, layers[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * block.expansion, num_classes)

        def _make_layer(self, block, planes, blocks, stride=1):
            down = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                down = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                     nn.BatchNorm2d(planes * block.expansion))
            layers = [block(self.inplanes, planes, stride, down)]
            self.inplanes = planes * block.expansion
            return nn.Sequential(*layers, *[block(self.inplanes, planes) for _ in range(1, blocks)])

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    def build(arch, num_classes=10, cifar=False, seed=0):
        torch.manual_seed(seed)
        block, layers = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}[arch]
        m = ResNet(block, layers, num_classes, cifar)
        with torch.no_grad():  # random BatchNorm statistics, so that they matter
            for mod in m.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.running_mean.normal_(0, 0.2)
                    mod.running_var.uniform_(0.5, 2.0)
                    mod.weight.uniform_(0.3, 0.8)
                    mod.bias.normal_(0, 0.1)
            m.fc.weight.mul_(20.0)
        return m.eval()

    return torch, build


def _torch_logits(torch, m, x, norm=IMAGENET):
    with torch.no_grad():
        return m(torch.from_numpy(_normalised(x, norm).transpose(0, 3, 1, 2).copy())).numpy()


@pytest.fixture(scope="module")
def torch_r18(tmp_path_factory):
    torch, build = _torch_resnets()
    m = build("resnet18")
    path = tmp_path_factory.mktemp("torch") / "r18.pt"
    torch.save(m.state_dict(), path)
    return torch, m, path


def test_torch_resnet18_file_matches_torch(torch_r18):
    torch, m, path = torch_r18
    clf = importers.load_model(f"torch:{path}", arch="resnet18", input_shape="64x64")
    assert isinstance(clf, models.Classifier) and clf.arch == "resnet18" and clf.normalization == IMAGENET
    x = _images(2, 64, 64)
    ref = _torch_logits(torch, m, x)
    assert np.abs(ref).max() > 1.0  # logits of a useful size, so that 1e-4 means something
    np.testing.assert_allclose(np.asarray(clf(jnp.asarray(x))), ref, atol=1e-4, rtol=0)
    assert clf.feature_shape == (2, 2, 512)  # Grad-CAM's map (head(features(x)) == apply(x) is the ResNet's own)


def test_torch_resnet50_and_cifar_stem_match_torch():
    torch, build = _torch_resnets()
    m = build("resnet50", num_classes=7, seed=1)
    clf = importers.from_state_dict(m.state_dict(), arch="resnet50", input_shape=(64, 64, 3))
    n_torch = sum(p.numel() for p in m.parameters())
    n_flax = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(clf.params["params"]))
    assert n_torch == n_flax
    x = _images(2, 64, 64, seed=1)
    np.testing.assert_allclose(np.asarray(clf(jnp.asarray(x))), _torch_logits(torch, m, x), atol=1e-4, rtol=0)
    # the CIFAR variant (3x3 stem, no max pool) with the CIFAR-10 statistics
    m = build("resnet18", num_classes=10, cifar=True, seed=2)
    clf = importers.from_state_dict(m.state_dict(), normalization="cifar10",
                                    class_names=importers.CIFAR10_CLASSES)
    assert clf.arch_kwargs["stem"] == "cifar" and clf.input_shape == (32, 32, 3) and clf.class_names[0] == "airplane"
    x = _images(2, 32, 32, seed=2)
    ref = _torch_logits(torch, m, x, models.NORMALIZATIONS["cifar10"])
    np.testing.assert_allclose(np.asarray(clf(jnp.asarray(x))), ref, atol=1e-4, rtol=0)


def test_torch_errors_name_the_problem(torch_r18, tmp_path):
    torch, m, path = torch_r18
    with pytest.raises(ValueError, match="holds a resnet18 ResNet, not resnet50"):
        importers.load_torch(path, arch="resnet50")
    sd = dict(m.state_dict())
    sd["extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="extra.weight"):
        importers.from_state_dict(sd)
    del sd["extra.weight"], sd["layer1.0.bn1.running_var"]
    with pytest.raises(ValueError, match="layer1.0.bn1.running_var"):
        importers.from_state_dict(sd)
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole.pt")  # a pickled module, not a state_dict
    with pytest.raises(ValueError, match="state_dict"):
        importers.load_torch(tmp_path / "whole.pt")


# ------------------------------------------------------------------ Keras 3 (JAX backend)

@pytest.fixture(scope="module")
def keras_mod():
    keras = pytest.importorskip("keras", reason="keras is not installed (pip install 'shapjax[keras]')")
    pytest.importorskip("h5py", reason="h5py is not installed")
    if keras.backend.backend() != "jax":
        pytest.skip(f"Keras runs on {keras.backend.backend()!r}, these tests need KERAS_BACKEND=jax")
    return keras


def _cheap_init(keras, monkeypatch):
    from keras.src.initializers import constant_initializers as ci
    from keras.src.initializers import random_initializers as ri

    zeros = lambda self, shape, dtype=None: np.zeros(shape, dtype or "float32")  # noqa: E731
    for cls in vars(ri).values():
        if isinstance(cls, type) and issubclass(cls, ri.RandomInitializer) and "__call__" in vars(cls):
            monkeypatch.setattr(cls, "__call__", zeros)
    monkeypatch.setattr(ci.Zeros, "__call__", zeros)
    monkeypatch.setattr(ci.Ones, "__call__", lambda self, shape, dtype=None: np.ones(shape, dtype or "float32"))


def _randomise(model, seed=0, dense_scale=20.0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for v in layer.weights:
            shape, name = tuple(v.shape), v.name
            if name == "kernel":
                fan_in = int(np.prod(shape[:-1]))
                val = rng.normal(0, np.sqrt(2.0 / fan_in), shape) * (dense_scale if len(shape) == 2 else 1.0)
            elif name == "moving_variance":
                val = rng.uniform(0.5, 2.0, shape)
            elif name == "gamma":
                val = rng.uniform(0.5, 1.0, shape)
            else:  # bias, beta, moving_mean
                val = rng.normal(0, 0.2, shape)
            v.assign(val.astype("float32"))


@pytest.fixture(scope="module")
def keras_inception(keras_mod, tmp_path_factory):
    keras = keras_mod
    with pytest.MonkeyPatch.context() as mp:
        _cheap_init(keras, mp)
        m = keras.applications.InceptionV3(weights=None, input_shape=(75, 75, 3), classes=5)
    _randomise(m)
    d = tmp_path_factory.mktemp("keras")
    m.save(d / "inc.keras")
    m.save_weights(d / "inc.weights.h5")
    x = _images(2, 75, 75, seed=3)
    probs = m.predict(x * 2.0 - 1.0, verbose=0)  # Keras's preprocess_input: [0, 255] -> [-1, 1]
    # the logits under the softmax: Keras's pooled features times the predictions layer
    feat = keras.Model(m.inputs, m.get_layer("avg_pool").output).predict(x * 2.0 - 1.0, verbose=0)
    w, b = m.get_layer("predictions").get_weights()
    return d, x, (feat.astype(np.float64) @ w + b).astype(np.float32), probs


def test_keras_inception_v3_matches_keras(keras_inception):
    d, x, ref_logits, probs = keras_inception
    assert np.abs(ref_logits).max() > 1.0
    clf = importers.load_model(f"keras:{d / 'inc.keras'}")
    assert clf.arch == "inception_v3" and clf.input_shape == (75, 75, 3) and clf.normalization == ((0.5,) * 3,
                                                                                                  (0.5,) * 3)
    out = np.asarray(clf(jnp.asarray(x)))
    np.testing.assert_allclose(out, ref_logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(out)), probs, atol=1e-5)
    assert clf.feature_shape == (1, 1, 2048)
    # a weights-only file has no config: Keras's layer order is known
    clf2 = importers.load_keras(d / "inc.weights.h5", input_shape=(75, 75, 3))
    np.testing.assert_allclose(np.asarray(clf2(jnp.asarray(x))), ref_logits, atol=1e-4, rtol=0)


def test_keras_sequential_model_runs_through_its_stateless_call(keras_mod, tmp_path, monkeypatch):
    keras = keras_mod
    _cheap_init(keras, monkeypatch)
    m = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.BatchNormalization(), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(3)])
    _randomise(m, seed=1, dense_scale=5.0)
    m.save(tmp_path / "small.keras")
    x = _images(2, 12, 12, seed=4)
    ref = m.predict(x, verbose=0)
    clf = importers.load_model(f"keras:{tmp_path / 'small.keras'}", class_names=["a", "b", "c"])
    assert clf.arch == "keras" and clf.normalization is None
    np.testing.assert_allclose(np.asarray(clf(jnp.asarray(x))), ref, atol=1e-5)
    fmap = clf.features(clf.params, jnp.asarray(x))
    assert fmap.shape == (2, 10, 10, 4)
    np.testing.assert_allclose(np.asarray(clf.head(clf.params, fmap)), ref, atol=1e-5)
    # the variables are data: new weights, same compiled function
    p2 = jax.tree_util.tree_map(lambda a: a * 0, clf.params)
    assert np.allclose(np.asarray(clf.replace(params=p2)(jnp.asarray(x))), 0.0)


# ------------------------------------------------------------------ ONNX

def _onnx_net(torch, resize=False):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.c3 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            x = torch.relu(self.bn(self.c1(x)))
            x = nn.functional.max_pool2d(x, 3, 2, 1)
            x = torch.relu(x + self.c2(x))
            if resize:
                x = nn.functional.interpolate(x, scale_factor=2.0)
            x = nn.functional.adaptive_avg_pool2d(torch.relu(self.c3(x)), 1)
            return self.fc(x.view(x.size(0), -1))  # Shape -> Gather -> Reshape in the graph

    torch.manual_seed(0)
    m = Net()
    with torch.no_grad():
        m.bn.running_mean.normal_(0, 0.2)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.fc.weight.mul_(10.0)
    return m.eval()


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    torch = pytest.importorskip("torch", reason="torch is not installed (exports the ONNX test models)")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'shapjax[onnx]')")
    pytest.importorskip("jaxonnxruntime", reason="jaxonnxruntime is not installed (pip install 'shapjax[onnx]')")
    d = tmp_path_factory.mktemp("onnx")
    m = _onnx_net(torch)
    x1 = torch.rand(1, 3, 16, 16)
    files = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for opset in (13, 17):  # 13: Relu-13 has no jaxonnxruntime implementation -> converted to 17
            files[opset] = d / f"net{opset}.onnx"
            torch.onnx.export(m, (x1,), files[opset], opset_version=opset, dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "batch"}})
        files["resize"] = d / "resize.onnx"
        torch.onnx.export(_onnx_net(torch, resize=True), (x1,), files["resize"], opset_version=17, dynamo=False)
    x = _images(3, 16, 16, seed=5)
    return torch, m, files, x, _torch_logits(torch, m, x)


@pytest.mark.parametrize("opset", [13, 17])
def test_onnx_matches_torch_at_any_batch_size(onnx_files, opset):
    torch, m, files, x, ref = onnx_files
    clf = importers.load_model(f"onnx:{files[opset]}", normalize="imagenet")
    assert clf.arch == "onnx" and clf.input_shape == (16, 16, 3) and clf.num_classes == 4
    assert np.abs(ref).max() > 1.0
    np.testing.assert_allclose(np.asarray(clf(jnp.asarray(x))), ref, atol=1e-4, rtol=0)  # traced on 1 image
    fmap = clf.features(clf.params, jnp.asarray(x))  # split at GlobalAveragePool, NHWC
    assert fmap.shape == (3, 4, 4, 16)
    np.testing.assert_allclose(np.asarray(clf.head(clf.params, fmap)), ref, atol=1e-4, rtol=0)


def test_onnx_unsupported_op_and_saving_are_clear_errors(onnx_files, tmp_path):
    torch, m, files, x, ref = onnx_files
    with pytest.raises(ValueError, match="Resize"):
        importers.load_onnx(files["resize"])
    clf = importers.load_onnx(files[17])
    with pytest.raises(TypeError, match="cannot be saved"):
        importers.save_orbax(tmp_path / "o", clf)
    with pytest.raises(TypeError, match="cannot be saved"):
        models.save_checkpoint(tmp_path / "o", clf)


def test_imported_models_work_with_explain_and_grad_cam(onnx_files):
    import shapjax
    from shapjax.baselines.gradients import grad_cam
    from shapjax.image import maskers, segment

    torch, m, files, x, ref = onnx_files
    clf = importers.load_onnx(files[17], normalization="imagenet")
    exp = shapjax.explain(clf, jnp.asarray(x[:2]), key=jax.random.key(0), segments=segment.grid(2, 2),
                          masker=maskers.constant(0.0), method="exact", outputs=0)
    # efficiency: the values add up to f(x) - f(all segments absent)
    empty = np.asarray(clf(jnp.zeros_like(jnp.asarray(x[:2]))))[:, 0]
    np.testing.assert_allclose(np.asarray(exp.values).sum(axis=(1, 2)), ref[:2, 0] - empty, atol=1e-3)
    cam = grad_cam(jax.tree_util.Partial(clf.features, clf.params), jax.tree_util.Partial(clf.head, clf.params),
                   jnp.asarray(x[:2]), outputs=1)
    assert cam.maps.shape == (2, 16, 16, 1)
    # known answer: the head is a global average pool + linear layer, so d y_1 / d A = W[1] / (h w) everywhere
    fmap = np.asarray(clf.features(clf.params, jnp.asarray(x[:2])))
    w1 = m.fc.weight.detach().numpy()[1] / 16.0
    np.testing.assert_allclose(np.asarray(cam.coarse_maps), np.maximum(fmap @ w1, 0.0), atol=1e-5)


# ------------------------------------------------------------------ orbax, specs, CLI

def test_orbax_round_trip_keeps_normalisation_and_classes(tmp_path):
    clf = models.small_cnn(key=jax.random.key(0), input_shape=(8, 8, 3), widths=(4, 8), hidden=0)
    clf = clf.replace(normalization="cifar10", class_names=list("abcdefghij"))
    path = importers.save_orbax(tmp_path / "ckpt", clf)
    with pytest.raises(FileExistsError):
        importers.save_orbax(path, clf)
    back = importers.load_model(str(path))
    assert back.normalization == models.NORMALIZATIONS["cifar10"] and back.class_names == list("abcdefghij")
    x = jnp.asarray(_images(2, 8, 8))
    np.testing.assert_array_equal(np.asarray(back(x)), np.asarray(clf(x)))
    assert json.loads((path / "shapjax.json").read_text())["format"] == "shapjax-orbax-v1"
    back = importers.load_model(f"orbax:{path}", normalize="none")
    assert back.normalization is None


def test_specs_sidecar_json_class_names_and_normalize(torch_r18, tmp_path):
    torch, m, path = torch_r18
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"class {i}" for i in range(10)) + "\n")
    side = path.with_name(path.name + ".json")
    side.write_text(json.dumps({"arch": "resnet18", "class_names": str(names), "normalize": "0.5,0.25",
                                "input_shape": [32, 32, 3]}))
    try:
        clf = importers.load_model(f"torch:{path}")
    finally:
        side.unlink()
    assert clf.class_names[3] == "class 3" and clf.normalization == ((0.5,) * 3, (0.25,) * 3)
    assert clf.input_shape == (32, 32, 3)
    assert len(importers.imagenet_class_names()) == 1000 and importers.imagenet_class_names()[1] == "goldfish"
    assert importers.parse_normalize("1,2,3,4,5,6") == ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
    for bad, match in (("imagenette", "unknown normalisation"), ("1,2,3", "as many means"),
                       ("0,-1", "positive stds")):
        with pytest.raises(ValueError, match=match):
            importers.parse_normalize(bad)
    with pytest.raises(FileNotFoundError, match="unknown model 'nope'"):
        importers.load_model("nope")
    with pytest.raises(ValueError, match="cannot import module"):
        importers.load_model("no_such_module_xyz:make")


_MODEL_PY = """
import jax, jax.numpy as jnp, numpy as np

def _linear(w, x):
    return x.mean((1, 2)) @ w

def make():
    w = jnp.asarray(np.random.default_rng(0).normal(size=(3, 2)), jnp.float32)
    return jax.tree_util.Partial(_linear, w)
"""


def test_module_function_spec_wraps_a_partial(tmp_path):
    src = tmp_path / "mymodel.py"
    src.write_text(_MODEL_PY)
    clf = importers.load_model(f"{src}:make", input_shape="4x4x3", class_names=["no", "yes"])
    x = jnp.asarray(_images(2, 4, 4))
    w = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(clf(x)), np.asarray(x).mean((1, 2)) @ w, atol=1e-5)
    assert clf.arch == "partial" and jax.tree_util.tree_leaves(clf.params)[0].shape == (3, 2)
    with pytest.raises(ValueError, match="input_shape"):
        importers.load_model(f"{src}:make")


def test_cli_explains_an_onnx_model(onnx_files, tmp_path, capsys):
    from PIL import Image

    from shapjax import cli

    torch, m, files, x, ref = onnx_files
    Image.fromarray((x[0] * 255).astype(np.uint8)).save(tmp_path / "img.png")
    (tmp_path / "names.txt").write_text("cat\ndog\nfox\nowl\n")
    rc = cli.main(["explain", str(tmp_path / "img.png"), "--model", f"onnx:{files[17]}", "--normalize", "imagenet",
                   "--class-names", str(tmp_path / "names.txt"), "--segments", "grid:2x2", "--masker", "constant:0",
                   "--n-evals", "16", "--top-k", "1", "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["class_names"] == ["cat", "dog", "fox", "owl"]
    rc = cli.main(["explain", str(tmp_path / "img.png"), "--model", f"torch:{tmp_path / 'none.pt'}",
                   "--out", str(tmp_path / "out2"), "--quiet"])
    assert rc != 0 and "torch file" in capsys.readouterr().err
