"""Keras 3 models -> :class:`~shapjax.models.Classifier`.

Two routes:

- ``keras.applications.InceptionV3`` saved by Keras 3 (``model.save("m.keras")``
  or ``model.save_weights("m.weights.h5")``) becomes shapjax's flax
  :class:`~shapjax.models.InceptionV3`, read from the file with ``h5py`` alone
  (Keras is not needed, and is not imported). Keras names the layers
  ``conv2d_<n>`` and ``batch_normalization_<n>`` in the order
  ``inception_v3.py`` creates them, and the n-th pair is the flax unit
  ``conv<n>``; the weights file stores them in ``model.layers`` order, which
  the ``.keras`` config (or :data:`KERAS_INCEPTION_ORDER`) maps back
  (Keras's HWIO kernels are flax's; BatchNorm has no scale, epsilon 1e-3). The softmax of the ``predictions`` layer is left out: the
  classifier returns logits. Normalisation: ``"inception"`` ([0, 1] -> [-1, 1],
  Keras's ``preprocess_input``).
- Any other Keras model (``.keras`` file; needs ``keras`` with
  ``KERAS_BACKEND=jax``) runs through its stateless call,
  ``model.stateless_call(trainable, non_trainable, x)``, with its variables as
  the classifier's ``params``: explained, differentiated and jitted as data.
  A ``Sequential`` model whose last 4-D output feeds a chain of layers also
  gets ``features``/``head`` for Grad-CAM. Its outputs are what the model
  returns (probabilities when its last layer has a softmax).

References:
  F. Chollet et al. Keras 3 (https://keras.io), the ``.keras`` format
  (a zip of ``config.json`` and ``model.weights.h5``).
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..checkpoint import from_variables
from ..classifier import Classifier
from ..inception import N_UNITS

logger = logging.getLogger(__name__)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("h5py: reading Keras weight files needs h5py (pip install 'shapjax[keras]')") from None
    return h5py


def read_keras_file(path: str | Path) -> tuple[dict | None, dict[str, list[np.ndarray]]]:
    """``.keras`` or ``.weights.h5`` (Keras 3) -> ``(config or None, {layer name: [arrays]})``.

    The arrays of a layer are in Keras's variable order (``vars/0``, ``vars/1``...).
    """
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras file {path} not found")
    config = None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "model.weights.h5" not in names:
                raise ValueError(f"{path}: a zip without model.weights.h5 is not a Keras 3 .keras file")
            if "config.json" in names:
                config = json.loads(z.read("config.json"))
            raw = io.BytesIO(z.read("model.weights.h5"))
        f = h5py.File(raw, "r")
    else:
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise ValueError(f"{path}: neither a .keras (zip) nor an HDF5 weights file: {e}") from None
    with f:
        if "layers" not in f:
            hint = " (a Keras 2 / tf.keras HDF5 file: re-save it with Keras 3)" if "model_weights" in f or \
                "layer_names" in f.attrs else ""
            raise ValueError(f"{path}: not a Keras 3 weights file, no 'layers' group{hint}")
        weights = {}
        for name, g in f["layers"].items():
            if "vars" in g:
                v = g["vars"]
                weights[name] = [np.asarray(v[k]) for k in sorted(v.keys(), key=int)]
    return config, weights


def _creation_order(names, prefix):
    pat = re.compile(rf"^{prefix}(?:_(\d+))?$")
    found = [(int(m.group(1) or 0), n) for n in names if (m := pat.match(n))]
    return [n for _, n in sorted(found)]


def _input_shape_from_config(config) -> tuple[int, int, int] | None:
    if not config:
        return None
    for layer in config.get("config", {}).get("layers", []):
        if layer.get("class_name") == "InputLayer":
            shape = layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape")
            if shape and len(shape) == 4 and all(s is not None for s in shape[1:]):
                return tuple(int(s) for s in shape[1:])
    return None


#: For ``keras.applications.InceptionV3``: the creation index (``conv<k>``) of the
#: i-th ``Conv2D`` of ``model.layers`` (Keras's topological order, in which a
#: ``.weights.h5`` file names them ``conv2d``, ``conv2d_1``...). Read off a
#: Keras 3.15 ``.keras`` config; used only for weights files without a config,
#: and checked against Keras in ``tests/test_importers.py``.
KERAS_INCEPTION_ORDER = (
    0, 1, 2, 3, 4, 8, 6, 9, 5, 7, 10, 11, 15, 13, 16, 12, 14, 17, 18, 22, 20, 23, 19, 21, 24, 25, 27, 28, 26,
    29, 34, 35, 31, 36, 32, 37, 30, 33, 38, 39, 44, 45, 41, 46, 42, 47, 40, 43, 48, 49, 54, 55, 51, 56, 52, 57,
    50, 53, 58, 59, 64, 65, 61, 66, 62, 67, 60, 63, 68, 69, 72, 73, 70, 74, 71, 75, 80, 77, 81, 78, 79, 82, 83,
    76, 84, 89, 86, 90, 87, 88, 91, 92, 85, 93)


def is_inception_v3(config, weights) -> bool:
    """Whether a Keras file holds ``keras.applications.InceptionV3`` with its top (by name or by layers)."""
    if config and config.get("config", {}).get("name") == "inception_v3":
        return True
    convs = _creation_order(weights, "conv2d")
    return (len(convs) == N_UNITS and len(_creation_order(weights, "dense")) == 1
            and weights[convs[0]][0].shape == (3, 3, 3, 32) and weights[convs[-1]][0].shape[-1] == 192)


def _unit_order(config) -> list[int]:
    """Unit index of the i-th Conv2D of ``model.layers``: from the config's layer names, else the constant."""
    if not config:
        return list(KERAS_INCEPTION_ORDER)
    names = [layer["config"]["name"] for layer in config["config"]["layers"] if layer.get("class_name") == "Conv2D"]
    ranks = {n: r for r, n in enumerate(_creation_order(names, r"[A-Za-z_]*?conv2d"))}
    if len(ranks) != len(names):
        raise ValueError("Keras InceptionV3: its Conv2D layers are not named conv2d[_n] (renamed layers cannot be "
                         "matched to the architecture)")
    return [ranks[n] for n in names]


def inception_variables(weights: dict[str, list[np.ndarray]], *, config: dict | None = None) -> dict:
    """Flax variables of :class:`~shapjax.models.InceptionV3` from Keras's per-layer arrays.

    ``weights`` names the layers as a Keras 3 weights file does (by class, in
    ``model.layers`` order: ``conv2d``, ``conv2d_1``...); ``config`` (the
    ``.keras`` file's) gives each one's creation index.
    """
    convs = _creation_order(weights, "conv2d")
    bns = _creation_order(weights, "batch_normalization")
    dense = _creation_order(weights, "dense")
    if len(convs) != N_UNITS or len(bns) != N_UNITS:
        raise ValueError(f"Keras InceptionV3: expected {N_UNITS} conv2d and batch_normalization layers, found "
                         f"{len(convs)} and {len(bns)} (is it keras.applications.InceptionV3 with its top?)")
    if len(dense) != 1 or len(weights[dense[0]]) != 2:
        raise ValueError("Keras InceptionV3: no 'predictions' Dense layer (include_top=True is needed)")
    order = _unit_order(config)
    if sorted(order) != list(range(N_UNITS)):
        raise ValueError(f"Keras InceptionV3: the config lists {len(order)} Conv2D layers, expected {N_UNITS}")
    params, stats = {}, {}
    for c, b, k in zip(convs, bns, order):
        if len(weights[c]) != 1:
            raise ValueError(f"Keras InceptionV3: layer {c} has {len(weights[c])} variables, expected a bias-free "
                             "kernel")
        if len(weights[b]) != 3:
            raise ValueError(f"Keras InceptionV3: layer {b} has {len(weights[b])} variables, expected beta, "
                             "moving_mean, moving_variance (scale=False)")
        beta, mean, var = weights[b]
        params[f"conv{k}"] = {"conv": {"kernel": weights[c][0]}, "bn": {"bias": beta}}
        stats[f"conv{k}"] = {"bn": {"mean": mean, "var": var}}
    kernel, bias = weights[dense[0]]
    return {"params": {"body": params, "fc": {"kernel": kernel, "bias": bias}}, "batch_stats": {"body": stats}}


def load_keras(path: str | Path, *, input_shape: Sequence[int] | None = None,
               class_names: Sequence[str] | None = None, normalization: Any = "default",
               name: str = "") -> Classifier:
    """Read a Keras 3 file (``.keras`` or ``.weights.h5``) as a Classifier.

    Args:
      path: the file. An InceptionV3 is converted to flax (no Keras needed);
        another model needs ``keras`` (JAX backend) and a ``.keras`` file.
      input_shape: ``(H, W, C)`` (default: from the file's config; 299x299x3
        for an InceptionV3 weights file).
      class_names: one per output.
      normalization: ``"default"`` (``"inception"`` for InceptionV3, none for
        other models), ``None``, a name or ``(mean, std)``.
      name: display name.
    """
    path = Path(path)
    config, weights = read_keras_file(path)
    if is_inception_v3(config, weights):
        variables = inception_variables(weights, config=config)
        shape = tuple(input_shape) if input_shape is not None else (_input_shape_from_config(config) or (299, 299, 3))
        K = int(variables["params"]["fc"]["kernel"].shape[1])
        act = None
        for layer in (config or {}).get("config", {}).get("layers", []):
            if layer.get("name") == "predictions":
                act = layer["config"].get("activation")
        if act not in (None, "linear"):
            logger.info("%s: returning the logits of the 'predictions' layer (its %s is left out)", path, act)
        norm = "inception" if isinstance(normalization, str) and normalization == "default" else normalization
        return from_variables("inception_v3", {"num_classes": K}, variables, input_shape=shape,
                              class_names=class_names, normalization=norm, name=name or path.stem.split(".")[0],
                              source=f"Keras file {path}")
    if config is None:
        raise ValueError(f"{path}: a weights-only file of a model other than InceptionV3 cannot be rebuilt; "
                         "save the whole model (model.save('m.keras'))")
    keras = _keras()
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for unknown layers etc.
        raise ValueError(f"{path}: Keras could not load the model: {type(e).__name__}: {e}") from None
    norm = None if isinstance(normalization, str) and normalization == "default" else normalization
    return from_keras_model(model, input_shape=input_shape, class_names=class_names, normalization=norm,
                            name=name or path.stem.split(".")[0])


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        raise ImportError("keras: this Keras model needs keras 3 (pip install 'shapjax[keras]')") from None
    if keras.backend.backend() != "jax":
        raise RuntimeError(f"keras: the model must run on the JAX backend (KERAS_BACKEND=jax), Keras runs on "
                           f"{keras.backend.backend()!r}; set KERAS_BACKEND=jax before importing keras")
    return keras


class _KerasCall:
    """``(params, x) -> model(x)`` through Keras's stateless call; ``params`` = (trainable, non-trainable)."""

    def __init__(self, model, all_tv, all_ntv):
        ids_t = {id(v): i for i, v in enumerate(all_tv)}
        ids_n = {id(v): i for i, v in enumerate(all_ntv)}
        self.model = model
        self.t_idx = [ids_t[id(v)] for v in model.trainable_variables]
        self.n_idx = [ids_n[id(v)] for v in model.non_trainable_variables]

    def __call__(self, params, x):
        tv = [params["trainable"][i] for i in self.t_idx]
        ntv = [params["non_trainable"][i] for i in self.n_idx]
        out, _ = self.model.stateless_call(tv, ntv, x, training=False)
        return out


def from_keras_model(model: Any, *, input_shape: Sequence[int] | None = None,
                     class_names: Sequence[str] | None = None, normalization: Any = None,
                     name: str = "") -> Classifier:
    """A Classifier from a live Keras 3 model (JAX backend): its variables become ``params``.

    ``input_shape`` defaults to the model's (``model.input_shape[1:]``).
    """
    keras = _keras()
    if input_shape is None:
        shape = getattr(model, "input_shape", None)
        if not shape or len(shape) != 4 or any(s is None for s in shape[1:]):
            raise ValueError(f"input_shape: the Keras model's input shape is {shape}; give (H, W, C)")
        input_shape = tuple(int(s) for s in shape[1:])
    all_tv, all_ntv = list(model.trainable_variables), list(model.non_trainable_variables)
    import jax.numpy as jnp

    params = {"trainable": [jnp.asarray(v.value) for v in all_tv],
              "non_trainable": [jnp.asarray(v.value) for v in all_ntv]}
    features = head = None
    if isinstance(model, keras.Sequential):
        layers = list(model.layers)
        cut = max((i for i, layer in enumerate(layers) if len(layer.output.shape) == 4), default=None)
        if cut is not None and cut < len(layers) - 1:
            feat_model = keras.Sequential([keras.Input(tuple(input_shape))] + layers[: cut + 1])
            head_model = keras.Sequential([keras.Input(layers[cut].output.shape[1:])] + layers[cut + 1:])
            features, head = _KerasCall(feat_model, all_tv, all_ntv), _KerasCall(head_model, all_tv, all_ntv)
    return Classifier.from_functions(_KerasCall(model, all_tv, all_ntv), params, input_shape=input_shape,
                                     class_names=class_names, features=features, head=head,
                                     normalization=normalization, name=name or model.name, arch="keras")
