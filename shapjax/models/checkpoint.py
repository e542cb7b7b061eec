"""Checkpoints of :class:`~shapjax.models.classifier.Classifier`: flax msgpack variables + a JSON file
with the architecture, input shape, classes and training history beside them (``CHECKPOINT_FORMAT``)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from shapjax._util.io import checkpoint_paths
from shapjax._util.io import read_metadata as read_json_metadata

from .classifier import ARCHITECTURES, Classifier, _tuplify

_paths = checkpoint_paths  # (PATH.msgpack, PATH.json); the CLI uses the name


def _dumps(obj: Any) -> str:
    """JSON with 2-space indents, but lists of scalars kept on one line."""
    text = json.dumps(obj, indent=2)
    return re.sub(r"\[\s*([^\[\]{}]*?)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",\n")) + "]"
                  if "\n" in m.group(0) else m.group(0), text)


def save_checkpoint(path: str | os.PathLike, classifier: Classifier, *,
                    metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``PATH.msgpack`` (flax msgpack variables) and ``PATH.json`` (metadata).

    Args:
      path: destination; ``.msgpack`` is appended when missing.
      classifier: the model to save.
      metadata: extra JSON-serialisable entries (training command, data,
        accuracy...) stored in the JSON file.

    Returns:
      The path of the ``.msgpack`` file.
    """
    if not isinstance(classifier, Classifier):
        raise TypeError(f"classifier: expected a Classifier, got {type(classifier).__name__}")
    if not classifier.is_architecture:
        raise TypeError(f"classifier: a {classifier.arch!r} classifier given by functions cannot be saved as a "
                        f"checkpoint (only {sorted(ARCHITECTURES)} can); keep the file it was imported from")
    weights, meta_path = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    meta = classifier.metadata()
    if metadata:
        meta.update({k: v for k, v in metadata.items() if k not in meta or k == "name"})
    host = jax.tree_util.tree_map(np.asarray, classifier.params)
    weights.write_bytes(serialization.to_bytes(host))
    meta_path.write_text(_dumps(meta) + "\n")
    return weights


def _read_metadata(meta_path: Path) -> dict[str, Any]:
    return read_json_metadata(meta_path, what="checkpoint", kind="a checkpoint", check=_check_file_metadata)


def _check_file_metadata(meta: Any, where: str) -> None:
    missing = [k for k in ("architecture", "architecture_kwargs", "input_shape", "class_names") if k not in meta]
    if missing:
        raise ValueError(f"checkpoint metadata {where} lacks {missing}")
    check_metadata(meta, where)


def check_metadata(meta: Mapping[str, Any], where: str) -> None:
    """Field types of checkpoint metadata, checked before flax sees them (one clear error, not a deep one)."""
    def bad(field, expected):
        raise ValueError(f"checkpoint metadata {where}: field {field!r} must be {expected}, got {meta.get(field)!r}")

    if not isinstance(meta, Mapping):
        raise ValueError(f"checkpoint metadata {where}: expected a JSON object, got {type(meta).__name__}")
    if not isinstance(meta.get("architecture"), str):
        bad("architecture", f"one of {sorted(ARCHITECTURES)} (a string)")
    kw = meta.get("architecture_kwargs")
    if not isinstance(kw, Mapping) or not all(isinstance(k, str) for k in kw):
        bad("architecture_kwargs", "an object of constructor arguments")
    nc = kw.get("num_classes")
    if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
        raise ValueError(f"checkpoint metadata {where}: architecture_kwargs.num_classes must be a positive int, "
                         f"got {nc!r}")
    shape = meta.get("input_shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        bad("input_shape", "[H, W, C] of positive ints")
    names = meta.get("class_names")
    if not (isinstance(names, (list, tuple)) and all(isinstance(c, (str, int)) for c in names)):
        bad("class_names", "a list of strings")
    if len(names) != nc:
        raise ValueError(f"checkpoint metadata {where}: {len(names)} class_names for num_classes={nc}")


def classifier_from_bytes(meta: Mapping[str, Any], data: bytes, *, source: str = "checkpoint") -> Classifier:
    """Rebuild a :class:`Classifier` from its metadata dict and msgpack bytes."""
    check_metadata(meta, source)
    arch = meta["architecture"]
    if arch not in ARCHITECTURES:
        raise ValueError(f"{source}: unknown architecture {arch!r}; valid: {sorted(ARCHITECTURES)}")
    kwargs = {k: _tuplify(v) for k, v in meta["architecture_kwargs"].items()}
    try:
        module = ARCHITECTURES[arch](**kwargs)
    except TypeError as e:  # an unknown or mistyped constructor argument
        raise ValueError(f"{source}: architecture_kwargs do not fit {arch}: {e}") from None
    input_shape = tuple(meta["input_shape"])
    template = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, *input_shape), jnp.float32)))
    template = {k: v for k, v in template.items()}
    try:
        raw = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ValueError(f"{source}: not a valid flax msgpack checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict) or "params" not in raw:
        raise ValueError(f"{source}: not a flax variables checkpoint (no 'params' entry)")
    try:
        variables = serialization.from_state_dict(template, raw)
    except Exception as e:
        raise ValueError(f"{source}: weights do not match architecture {arch} {kwargs}: {e}") from None
    for t, v in zip(jax.tree_util.tree_leaves(template), jax.tree_util.tree_leaves(variables)):
        if tuple(t.shape) != tuple(np.shape(v)):
            raise ValueError(f"{source}: weight of shape {np.shape(v)} where architecture {arch} "
                             f"expects {tuple(t.shape)}")
    variables = jax.tree_util.tree_map(lambda t, v: jnp.asarray(v, t.dtype), template, variables)
    return Classifier(arch, kwargs, variables, input_shape=input_shape,
                      class_names=meta["class_names"], name=meta.get("name", ""),
                      normalization=meta.get("normalization"))


def variable_template(arch: str, arch_kwargs: Mapping[str, Any], input_shape: Sequence[int]) -> dict:
    """The variables of architecture ``arch`` as ``jax.ShapeDtypeStruct`` leaves (nothing is computed)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: unknown architecture {arch!r}; valid: {sorted(ARCHITECTURES)}")
    module = ARCHITECTURES[arch](**{k: _tuplify(v) for k, v in dict(arch_kwargs).items()})
    x = jnp.zeros((1, *tuple(int(s) for s in input_shape)), jnp.float32)
    return dict(jax.eval_shape(lambda: module.init(jax.random.key(0), x)))


def from_variables(arch: str, arch_kwargs: Mapping[str, Any], variables: Mapping[str, Any], *,
                   input_shape: Sequence[int], class_names: Sequence[str] | None = None,
                   normalization: Any = None, name: str = "", source: str = "variables") -> Classifier:
    """A :class:`Classifier` from nested variables (numpy or jax arrays), checked against ``arch``.

    Every entry of the architecture must be present with its shape, and nothing
    else; the message of the ``ValueError`` otherwise names the first
    mismatching entries (``source`` names where the variables came from).
    """
    template = variable_template(arch, arch_kwargs, input_shape)
    flat_t = dict(jax.tree_util.tree_flatten_with_path(template)[0])
    flat_v = dict(jax.tree_util.tree_flatten_with_path(dict(variables))[0])
    if set(flat_t) != set(flat_v):
        extra = sorted(jax.tree_util.keystr(k) for k in set(flat_v) - set(flat_t))
        lack = sorted(jax.tree_util.keystr(k) for k in set(flat_t) - set(flat_v))
        raise ValueError(f"{source}: do not fit architecture {arch} (unexpected {extra[:3]}, missing {lack[:3]})")
    for k, t in flat_t.items():
        if tuple(t.shape) != tuple(np.shape(flat_v[k])):
            raise ValueError(f"{source}: {jax.tree_util.keystr(k)} has shape {tuple(np.shape(flat_v[k]))}, "
                             f"architecture {arch} expects {tuple(t.shape)}")
    variables = jax.tree_util.tree_map(lambda t, v: jnp.asarray(v, t.dtype), template, dict(variables))
    return Classifier(arch, arch_kwargs, variables, input_shape=input_shape, class_names=class_names,
                      normalization=normalization, name=name)


def load_checkpoint(path: str | os.PathLike) -> Classifier:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
      FileNotFoundError: the ``.msgpack`` or ``.json`` file is missing.
      ValueError: a file is corrupt or the weights do not fit the architecture.
    """
    weights, meta_path = _paths(path)
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint {weights} not found")
    meta = _read_metadata(meta_path)
    return classifier_from_bytes(meta, weights.read_bytes(), source=f"checkpoint {weights}")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint."""
    return _read_metadata(_paths(path)[1])
