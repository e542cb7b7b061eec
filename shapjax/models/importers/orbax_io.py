"""Orbax checkpoints of shapjax classifiers: a folder with the variables and a JSON description.

Layout of ``FOLDER/``::

    shapjax.json     the classifier's metadata (architecture, its keyword arguments,
                     input shape, normalisation, class names; as a .msgpack checkpoint's .json)
    variables/       an orbax StandardCheckpointer checkpoint of the flax variables

``shapjax.json`` is written last, so a folder that has it is complete. A plain
orbax checkpoint of a shapjax architecture's variables (no ``shapjax.json``)
loads too when the architecture is given (``arch``, ``num_classes``,
``input_shape``).

References:
  Orbax checkpointing, https://orbax.readthedocs.io (``StandardCheckpointer``).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from ..._util.io import atomic_write
from ..checkpoint import _dumps, from_variables, variable_template
from ..classifier import Classifier

logger = logging.getLogger(__name__)

META_NAME = "shapjax.json"
VARIABLES_NAME = "variables"
_ORBAX_MARKERS = ("_CHECKPOINT_METADATA", "_METADATA", "manifest.ocdbt", "checkpoint")


def _ocp():
    try:
        import orbax.checkpoint as ocp
    except ImportError:
        raise ImportError("orbax: orbax-checkpoint is needed (pip install orbax-checkpoint)") from None
    return ocp


def is_orbax_folder(path: str | Path) -> bool:
    """True for a folder written by :func:`save_orbax` or a plain orbax checkpoint folder."""
    p = Path(path)
    if not p.is_dir():
        return False
    if (p / META_NAME).is_file():
        return True
    return any((p / m).exists() for m in _ORBAX_MARKERS) or any(
        (p / VARIABLES_NAME / m).exists() for m in _ORBAX_MARKERS)


def save_orbax(path: str | Path, classifier: Classifier, *, metadata: dict | None = None,
               force: bool = False) -> Path:
    """Write ``classifier`` as an orbax checkpoint folder (``variables/`` + ``shapjax.json``).

    Args:
      path: the folder (created).
      classifier: one of shapjax's architectures (an imported torch ResNet or
        Keras InceptionV3 is one; an ONNX or generic Keras classifier is not).
      metadata: extra JSON-serialisable entries for ``shapjax.json``.
      force: overwrite an existing checkpoint.

    Returns:
      The folder.
    """
    if not isinstance(classifier, Classifier):
        raise TypeError(f"classifier: expected a Classifier, got {type(classifier).__name__}")
    if not classifier.is_architecture:
        raise TypeError(f"classifier: a {classifier.arch!r} classifier given by functions cannot be saved with "
                        "orbax (no architecture to rebuild it from); keep the file it was imported from")
    ocp = _ocp()
    path = Path(path).absolute()
    if (path / META_NAME).exists() and not force:
        raise FileExistsError(f"path: {path} already holds a checkpoint (force=True overwrites it)")
    path.mkdir(parents=True, exist_ok=True)
    if (path / META_NAME).exists():
        (path / META_NAME).unlink()  # the folder is incomplete until the new metadata is written
    host = jax.tree_util.tree_map(np.asarray, dict(classifier.params))
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path / VARIABLES_NAME, host, force=True)
    ckpt.wait_until_finished()
    meta = classifier.metadata()
    meta["format"] = "shapjax-orbax-v1"
    if metadata:
        meta.update({k: v for k, v in metadata.items() if k not in meta or k == "name"})
    atomic_write(path / META_NAME, lambda f: f.write((_dumps(meta) + "\n").encode()))
    return path


def load_orbax(path: str | Path, *, arch: str | None = None, num_classes: int | None = None,
               input_shape: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
               normalization: Any = "default", name: str = "", **arch_kwargs: Any) -> Classifier:
    """Read an orbax checkpoint folder as a Classifier.

    A folder written by :func:`save_orbax` needs no other argument (given
    ``class_names`` / ``normalization`` / ``name`` replace the stored ones). A
    plain orbax checkpoint of a shapjax architecture's variables needs
    ``arch``, ``num_classes`` and ``input_shape`` (and ``arch_kwargs``).
    """
    ocp = _ocp()
    path = Path(path).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"orbax checkpoint folder {path} not found")
    meta_path = path / META_NAME
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{meta_path} is not valid JSON: {e}") from None
        missing = [k for k in ("architecture", "architecture_kwargs", "input_shape", "class_names") if k not in meta]
        if missing:
            raise ValueError(f"{meta_path} lacks {missing}")
        arch, kwargs = meta["architecture"], dict(meta["architecture_kwargs"])
        input_shape = meta["input_shape"] if input_shape is None else input_shape
        class_names = meta["class_names"] if class_names is None else class_names
        norm = meta.get("normalization") if normalization == "default" else normalization
        name = name or meta.get("name", "") or path.name
        var_dir = path / VARIABLES_NAME
    else:
        if arch is None or num_classes is None or input_shape is None:
            raise ValueError(f"{path}: no {META_NAME} beside the orbax checkpoint; give arch, num_classes and "
                             "input_shape (e.g. --arch resnet18 --input-size 32x32x3)")
        kwargs = dict(arch_kwargs, num_classes=int(num_classes))
        norm = None if normalization == "default" else normalization
        var_dir = path / VARIABLES_NAME if (path / VARIABLES_NAME).is_dir() else path
        name = name or path.name
    template = variable_template(arch, kwargs, input_shape)
    try:
        variables = ocp.StandardCheckpointer().restore(var_dir, template)
    except Exception as e:  # noqa: BLE001 - orbax raises many types on mismatching trees
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"{path}: the orbax checkpoint does not hold {arch} {kwargs} variables "
                         f"({type(e).__name__}: {msg})") from None
    return from_variables(arch, kwargs, variables, input_shape=input_shape, class_names=class_names,
                          normalization=norm, name=name, source=f"orbax checkpoint {path}")
