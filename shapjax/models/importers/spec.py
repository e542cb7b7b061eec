"""``load_model(spec)``: one string names any model the CLI can explain.

=================================  ============================================================
spec                               model
=================================  ============================================================
``mnist-cnn``                      a shipped model (:func:`shapjax.models.pretrained`)
``PATH.msgpack`` (``PATH.json``)   a shapjax checkpoint (:func:`shapjax.models.load_checkpoint`)
``FOLDER`` / ``orbax:FOLDER``      an orbax checkpoint folder (:func:`.orbax_io.load_orbax`)
``torch:FILE``                     a torchvision-layout ResNet ``state_dict`` (:func:`.from_torch.load_torch`)
``keras:FILE``                     a Keras 3 ``.keras`` / ``.weights.h5`` (:func:`.from_keras.load_keras`)
``onnx:FILE``                      an ONNX graph (:func:`.from_onnx.load_onnx`)
``module:function``                ``function()`` of an importable module (or ``path/file.py:function``)
                                   returning a Classifier, an object with ``apply`` + ``params``,
                                   a ``jax.tree_util.Partial`` or a plain function
=================================  ============================================================

Options (keyword arguments, or the CLI flags of :func:`add_model_arguments`)
override a small JSON file beside the model file (``FILE.json``, or ``FILE``
with its suffix replaced by ``.json``), whose keys are the option names:
``{"class_names": "imagenet", "normalize": "imagenet", "arch": "resnet50",
"input_shape": [224, 224, 3]}``.

- ``class_names``: ``"imagenet"`` (the 1000 ILSVRC-2012 names shipped with
  shapjax), ``"cifar10"``, a text file with one name per line (or a JSON
  list), or a list.
- ``normalize``: ``"imagenet"``, ``"cifar10"``, ``"inception"``, ``"none"``,
  ``"MEAN,STD"`` (two numbers for every channel) or ``"M1,M2,M3,S1,S2,S3"``.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
from importlib import resources
from pathlib import Path
from typing import Any

from ..classifier import Classifier
from ..network import check_normalization

PREFIXES = ("torch", "keras", "onnx", "orbax")

#: CIFAR-10's classes, in label order.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def imagenet_class_names() -> list[str]:
    """The 1000 ILSVRC-2012 class names in the usual label order (``"tench"``, ``"goldfish"``, ...).

    Shipped with shapjax (``assets/imagenet_classes.txt``, taken from
    torchvision 0.29.1's ``torchvision/models/_meta.py``, BSD-3-Clause), the
    order of the class indices of torchvision's and Keras's ImageNet models.
    """
    text = resources.files(__package__).joinpath("assets", "imagenet_classes.txt").read_text(encoding="utf-8")
    names = [line for line in text.splitlines() if line]
    assert len(names) == 1000
    return names


def resolve_class_names(spec: Any) -> list[str] | None:
    """``None``, ``"imagenet"``, ``"cifar10"``, a file (one per line, or a JSON list) or a list -> names."""
    if spec is None:
        return None
    if isinstance(spec, str):
        low = spec.lower()
        if low == "imagenet":
            return imagenet_class_names()
        if low in ("cifar10", "cifar-10"):
            return list(CIFAR10_CLASSES)
        p = Path(spec)
        if not p.is_file():
            raise ValueError(f"class_names: {spec!r} is neither 'imagenet', 'cifar10' nor a file")
        text = p.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            try:
                names = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"class_names: {p} is not a valid JSON list: {e}") from None
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
        return [str(n) for n in names]
    if isinstance(spec, (list, tuple)):
        return [str(n) for n in spec]
    raise TypeError(f"class_names: expected a name, a file or a list, got {type(spec).__name__}")


def parse_normalize(spec: Any) -> Any:
    """``"imagenet"``/``"cifar10"``/``"inception"``/``"none"``/``"MEAN,STD"``/six numbers -> a normalisation."""
    if spec is None or not isinstance(spec, str):
        return spec
    if "," not in spec:
        check_normalization(spec, argname="normalize")
        return None if spec.lower() == "none" else spec.lower()
    try:
        vals = [float(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(f"normalize: expected MEAN,STD or six numbers M1,M2,M3,S1,S2,S3, got {spec!r}") from None
    if len(vals) % 2 or not vals:
        raise ValueError(f"normalize: expected as many means as stds, got {spec!r}")
    n = len(vals) // 2
    return check_normalization((vals[:n], vals[n:]), argname="normalize")


def parse_input_shape(spec: Any) -> tuple[int, int, int] | None:
    """``"HxW"`` / ``"HxWxC"`` / ``(H, W, C)`` -> ``(H, W, C)`` (C = 3 when left out)."""
    if spec is None:
        return None
    parts = spec.lower().replace(",", "x").split("x") if isinstance(spec, str) else list(spec)
    try:
        dims = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"input_shape: expected HxW or HxWxC, got {spec!r}") from None
    if len(dims) == 2:
        dims.append(3)
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"input_shape: expected HxW or HxWxC of positive ints, got {spec!r}")
    return tuple(dims)


def _sidecar(path: Path) -> dict:
    for cand in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if cand.is_file() and cand != path:
            try:
                meta = json.loads(cand.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{cand}: not valid JSON: {e}") from None
            if not isinstance(meta, dict):
                raise ValueError(f"{cand}: expected a JSON object of options")
            if "normalization" in meta and "normalize" not in meta:
                meta["normalize"] = meta.pop("normalization")
            return meta
    return {}


def _call_target(spec: str):
    mod_name, _, fn_name = spec.rpartition(":")
    if mod_name.endswith(".py") and Path(mod_name).is_file():
        s = importlib.util.spec_from_file_location(Path(mod_name).stem, mod_name)
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
    else:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise ValueError(f"model: cannot import module {mod_name!r} of {spec!r}: {e}") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ValueError(f"model: {mod_name} has no function {fn_name!r}")
    return fn()


def as_classifier(obj: Any, *, input_shape=None, class_names=None, normalization=None,
                  name: str = "") -> Classifier:
    """A Classifier from what a ``module:function`` returned.

    A :class:`Classifier` is kept; an object with ``apply(params, x)`` and
    ``params`` (flax linen style), a ``jax.tree_util.Partial`` or a plain
    function ``images [B, H, W, C] -> [B, K]`` is wrapped (``input_shape``
    from the object's ``input_shape`` attribute, else required).
    """
    import jax

    if isinstance(obj, Classifier):
        out = obj
        if class_names is not None:
            out = out.replace(class_names=class_names)
        if normalization is not None:
            out = out.replace(normalization=normalization)
        return out
    input_shape = input_shape or getattr(obj, "input_shape", None)
    if input_shape is None:
        raise ValueError("input_shape: give the model's input size (--input-size HxWxC) for "
                         f"a {type(obj).__name__} model")
    input_shape = parse_input_shape(input_shape)
    kw = dict(input_shape=input_shape, class_names=class_names or getattr(obj, "class_names", None),
              normalization=normalization, name=name)
    if hasattr(obj, "apply") and hasattr(obj, "params") and callable(obj.apply):
        return Classifier.from_functions(obj.apply, obj.params, arch=type(obj).__name__, **kw)
    if isinstance(obj, jax.tree_util.Partial):
        return Classifier.from_functions(_call_partial, obj, arch="partial", **kw)
    if callable(obj):
        return Classifier.from_functions(_Plain(obj), {}, arch="function", **kw)
    raise TypeError(f"model: expected a Classifier, an object with apply+params, a Partial or a function, got "
                    f"{type(obj).__name__}")


def _call_partial(fn, x):
    return fn(x)


class _Plain:
    """A plain function of the images as ``apply(params, x)`` (no parameters travel)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, params, x):
        return self.fn(x)


def load_model(spec: str, *, arch: str | None = None, class_names: Any = None, normalize: Any = None,
               input_shape: Any = None, name: str = "") -> Classifier:
    """The :class:`~shapjax.models.Classifier` that ``spec`` names (see the module docstring).

    Args:
      spec: a shipped name, a checkpoint path, ``torch:FILE``, ``keras:FILE``,
        ``onnx:FILE``, an orbax folder (or ``orbax:FOLDER``) or ``module:function``.
      arch: the architecture, where the file does not say it
        (``torch:``: ``resnet18|34|50|101|152``, checked; a plain orbax folder).
      class_names: ``"imagenet"``, ``"cifar10"``, a file or a list.
      normalize: the model's input normalisation (``"imagenet"``,
        ``"cifar10"``, ``"inception"``, ``"none"``, ``"MEAN,STD"``, or
        ``(mean, std)``); defaults: ``imagenet`` for torch ResNets,
        ``inception`` for Keras's InceptionV3, none for ONNX and other models,
        the stored one for checkpoints.
      input_shape: ``"HxW[xC]"`` or ``(H, W, C)``.
      name: display name.

    Raises:
      FileNotFoundError, ValueError, TypeError, ImportError (a framework
      extra is missing), each naming the spec and what was expected.
    """
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"model: expected a model spec string, got {spec!r}")
    prefix, sep, rest = spec.partition(":")
    kind = prefix.lower() if sep and prefix.lower() in PREFIXES else None
    target = Path(rest if kind else spec)
    side = _sidecar(target) if kind not in (None, "orbax") and target.is_file() else {}
    arch = arch or side.get("arch")
    names = resolve_class_names(class_names if class_names is not None else side.get("class_names"))
    norm_given = normalize is not None or "normalize" in side
    norm = parse_normalize(normalize if normalize is not None else side.get("normalize"))
    shape = parse_input_shape(input_shape if input_shape is not None else side.get("input_shape"))
    name = name or side.get("name", "")
    opts = dict(class_names=names, name=name)
    if kind == "torch":
        from .from_torch import load_torch

        return load_torch(target, arch=arch, input_shape=shape, normalization=norm if norm_given else "imagenet",
                          **opts)
    if kind == "keras":
        from .from_keras import load_keras

        return load_keras(target, input_shape=shape, normalization=norm if norm_given else "default", **opts)
    if kind == "onnx":
        from .from_onnx import load_onnx

        return load_onnx(target, input_shape=shape, normalization=norm, layout=side.get("layout"), **opts)
    from .orbax_io import is_orbax_folder, load_orbax

    if kind == "orbax" or is_orbax_folder(target):
        extra = dict(arch=arch, num_classes=len(names)) if arch is not None and names else {}
        return load_orbax(target, input_shape=shape, normalization=norm if norm_given else "default",
                          **extra, **opts)
    from .. import load_checkpoint, pretrained
    from ..pretrained import available

    if spec in available():
        clf = pretrained(spec)
    elif target.is_file() or target.with_name(target.name + ".msgpack").is_file():
        clf = load_checkpoint(target)
    elif ":" in spec and not target.exists():
        return as_classifier(_call_target(spec), input_shape=shape, class_names=names, normalization=norm,
                             name=name)
    else:
        raise FileNotFoundError(
            f"unknown model {spec!r}: not a shipped model ({', '.join(available()) or 'none shipped'}), a checkpoint "
            "(NAME.msgpack + NAME.json), an orbax folder, torch:FILE, keras:FILE, onnx:FILE nor module:function")
    if names is not None:
        clf = clf.replace(class_names=names)
    if norm_given:
        clf = clf.replace(normalization=norm)
    return clf


def add_model_arguments(parser) -> None:
    """Add ``--arch``, ``--class-names``, ``--normalize`` and ``--input-size`` to an argparse parser."""
    parser.add_argument("--arch", default=None, help="architecture of a torch: state_dict (resnet18|34|50|101|152; "
                        "checked against the file) or of a plain orbax folder")
    parser.add_argument("--class-names", default=None, metavar="FILE|imagenet|cifar10",
                        help="class names: a file (one per line), imagenet or cifar10")
    parser.add_argument("--normalize", default=None, metavar="imagenet|cifar10|inception|none|MEAN,STD",
                        help="the model's input normalisation of [0, 1] images (default: imagenet for torch:, "
                             "inception for Keras's InceptionV3, none for onnx:, the stored one for checkpoints)")
    parser.add_argument("--input-size", default=None, metavar="HxW[xC]",
                        help="model input size where the file does not say it")


def model_options(args) -> dict:
    """The :func:`load_model` options from parsed :func:`add_model_arguments` flags."""
    return dict(arch=getattr(args, "arch", None), class_names=getattr(args, "class_names", None),
                normalize=getattr(args, "normalize", None), input_shape=getattr(args, "input_size", None))
