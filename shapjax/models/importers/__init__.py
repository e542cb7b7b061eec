"""Bring your own model: other frameworks' checkpoints as :class:`shapjax.models.Classifier`.

- :func:`load_model` — one spec string for every route (``torch:FILE``,
  ``keras:FILE``, ``onnx:FILE``, an orbax folder, a shipped name, a
  checkpoint, ``module:function``), used by ``shapjax explain --model``.
- :func:`load_torch` / :func:`from_state_dict` — torchvision-layout ResNets
  (18/34/50/101/152) into shapjax's flax ResNets.
- :func:`load_keras` — Keras 3 InceptionV3 into shapjax's flax InceptionV3
  (h5py only), other Keras models through their stateless call
  (:func:`from_keras_model`).
- :func:`load_onnx` — ONNX graphs through ``jaxonnxruntime``.
- :func:`save_orbax` / :func:`load_orbax` — orbax checkpoint folders.

Every importer returns a :class:`~shapjax.models.Classifier`, with its input
normalisation and class names, so :func:`shapjax.explain`, the gradient
methods (Grad-CAM included where the network has a feature map) and the
metrics take it unchanged. The frameworks are optional extras
(``shapjax[torch]``, ``shapjax[keras]``, ``shapjax[onnx]``), imported only
when their route is used.
"""
from .from_keras import from_keras_model, load_keras
from .from_onnx import load_onnx
from .from_torch import from_state_dict, load_torch
from .orbax_io import is_orbax_folder, load_orbax, save_orbax
from .spec import (
    CIFAR10_CLASSES,
    add_model_arguments,
    as_classifier,
    imagenet_class_names,
    load_model,
    model_options,
    parse_normalize,
    resolve_class_names,
)

__all__ = [
    "load_model", "load_torch", "from_state_dict", "load_keras", "from_keras_model", "load_onnx",
    "save_orbax", "load_orbax", "is_orbax_folder", "as_classifier", "imagenet_class_names", "CIFAR10_CLASSES",
    "resolve_class_names", "parse_normalize", "add_model_arguments", "model_options",
]
