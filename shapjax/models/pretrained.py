"""Weights shipped with the package, loaded offline from package data.

Each shipped model is a pair ``weights/NAME.msgpack`` + ``weights/NAME.json``
in this package (see ``shapjax/models/README.md`` for how each was trained).
The list of names is read from the package data, so there is no registry to
keep in sync.
"""
from __future__ import annotations

import json
from importlib import resources

from .checkpoint import classifier_from_bytes
from .classifier import Classifier


def _weights_dir():
    return resources.files(__package__).joinpath("weights")


def available() -> list[str]:
    """Names of the shipped models, e.g. ``["mnist-cnn", "planted-patch"]``."""
    d = _weights_dir()
    if not d.is_dir():
        return []
    names = {p.name[: -len(".msgpack")] for p in d.iterdir() if p.name.endswith(".msgpack")}
    return sorted(n for n in names if d.joinpath(n + ".json").is_file())


def metadata(name: str) -> dict:
    """The JSON metadata of a shipped model (architecture, classes, training, accuracy)."""
    _check_name(name)
    return json.loads(_weights_dir().joinpath(name + ".json").read_text())


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    valid = available()
    if name not in valid:
        raise ValueError(f"name: unknown pretrained model {name!r}; valid names: {valid}")


def pretrained(name: str) -> Classifier:
    """Load a shipped model by name (offline, from package data).

    Args:
      name: one of :func:`available` (``"mnist-cnn"``: small CNN on 28x28x1
        MNIST digits; ``"planted-patch"``: small CNN on 32x32x3 synthetic
        images whose class is a planted texture patch).

    Returns:
      A :class:`~shapjax.models.Classifier` (inference mode).

    Raises:
      ValueError: unknown name (the message lists the valid ones) or corrupt
        weight file.
    """
    meta = metadata(name)
    data = _weights_dir().joinpath(name + ".msgpack").read_bytes()
    clf = classifier_from_bytes(meta, data, source=f"pretrained model {name!r}")
    return clf.replace(name=name)
