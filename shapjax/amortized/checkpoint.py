"""Explainer checkpoints (flax msgpack weights + JSON beside them) and the shipped explainers.

``PATH.msgpack`` holds ``{"params": explainer variables, "segments": [H, W]}``; ``PATH.json`` holds
the network, the explained outputs, the input shape, the segmentation and masker (description and a
spec to rebuild them) and the identity of the model it explains (name and weight fingerprint,
:func:`~shapjax.amortized.explainer.fingerprint`), plus the training record.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
from flax import serialization

from shapjax._util.io import atomic_write, checkpoint_paths
from shapjax._util.io import read_metadata as read_json_metadata
from shapjax.image.maskers import Blur, Constant, Masker, SegmentMean, get_masker

from .explainer import Explainer, build, fingerprint, model_name, segments_hash
from .network import ExplainerNet, init_params

FORMAT = "shapjax-explainer-v1"


_paths = checkpoint_paths  # (PATH.msgpack, PATH.json)


def masker_spec(masker: Masker) -> Optional[str]:
    """The :func:`shapjax.maskers.get_masker` spec that rebuilds ``masker`` (None when there is none)."""
    if isinstance(masker, Constant):
        return "constant:" + ",".join(repr(float(v)) for v in masker.value)
    if isinstance(masker, Blur):
        return f"blur:{float(masker.sigma)!r}" if getattr(masker, "truncate", 3.0) == 3.0 else None
    if isinstance(masker, SegmentMean):
        return "segment_mean"
    return None


def save(path, explainer: Explainer, *, metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``PATH.msgpack`` + ``PATH.json`` (atomically); returns the ``.msgpack`` path."""
    if not isinstance(explainer, Explainer):
        raise TypeError(f"explainer: expected a shapjax.amortized.Explainer, got {type(explainer).__name__}")
    from shapjax.models.checkpoint import _dumps

    weights, meta_path = _paths(path)
    net = explainer.net
    meta = {"format": FORMAT, **explainer.meta,
            "network": {"n_players": net.n_players, "n_outputs": net.n_outputs, "widths": list(net.widths),
                        "hidden": net.hidden, "reduce": net.reduce},
            "classes": list(explainer.classes), "n_classes": explainer.n_classes,
            "input_shape": list(explainer.input_shape), "masker_spec": masker_spec(explainer.masker)}
    for k, v in (metadata or {}).items():
        meta.setdefault(k, v)
    host = {"params": _host(explainer.params), "segments": np.asarray(explainer.segments, np.int32)}
    data = serialization.msgpack_serialize(host)
    atomic_write(weights, lambda f: f.write(data))
    text = (_dumps(meta) + "\n").encode()
    atomic_write(meta_path, lambda f: f.write(text))
    return weights


def _host(tree):
    import jax

    return jax.tree_util.tree_map(np.asarray, serialization.to_state_dict(tree))


def read_metadata(path) -> dict:
    """The JSON metadata of an explainer checkpoint."""
    return read_json_metadata(_paths(path)[1], what="explainer", kind="an explainer checkpoint", check=_check_meta)


def _check_meta(meta, where: str) -> None:
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
        raise ValueError(f"{where}: not an explainer checkpoint (expected format {FORMAT!r}, got "
                         f"{meta.get('format') if isinstance(meta, Mapping) else type(meta).__name__!r})")
    missing = [k for k in ("network", "classes", "n_classes", "input_shape", "model_fingerprint", "segments",
                           "masker") if k not in meta]
    if missing:
        raise ValueError(f"{where}: explainer metadata lacks {missing}")


def _from_bytes(meta: Mapping, data: bytes, model, masker: Optional[Masker], *, source: str,
                check_model: bool = True) -> Explainer:
    _check_meta(meta, source)
    want = meta.get("value_model_fingerprint", meta["model_fingerprint"])
    if check_model:
        got = fingerprint(model)
        if got != want:
            raise ValueError(f"model: {source} explains the model {meta.get('model_name', '?')!r} with weight "
                             f"fingerprint {want}; the model given ({model_name(model)!r}) has fingerprint {got}. "
                             "An explainer is only valid for the weights it was trained on: train one for this "
                             "model (shapjax.amortized.train / shapjax amortize)")
    if masker is None:
        spec = meta.get("masker_spec")
        if spec is None:
            raise ValueError(f"masker: {source} was trained with masker {meta['masker']}, which cannot be rebuilt "
                             "from its file; pass masker=")
        masker = get_masker(spec)
    if masker.describe() != meta["masker"]:
        raise ValueError(f"masker: {source} was trained with masker {meta['masker']}; got {masker.describe()}")
    n = meta["network"]
    net = ExplainerNet(n_players=int(n["n_players"]), n_outputs=int(n["n_outputs"]),
                       widths=tuple(int(w) for w in n["widths"]), hidden=int(n["hidden"]),
                       reduce=int(n.get("reduce", 0)))
    import jax

    template = jax.eval_shape(lambda: init_params(net, meta["input_shape"], key=jax.random.key(0)))
    try:
        raw = serialization.msgpack_restore(data)
        params = serialization.from_state_dict(template, raw["params"])
        seg = np.asarray(raw["segments"], np.int32)
    except Exception as e:  # noqa: BLE001 - msgpack/flax raise many unrelated types on bad files
        raise ValueError(f"{source}: weights do not fit the explainer network {n} ({type(e).__name__}: {e})") from None
    for t, v in zip(jax.tree_util.tree_leaves(template), jax.tree_util.tree_leaves(params)):
        if tuple(t.shape) != tuple(np.shape(v)):
            raise ValueError(f"{source}: weight of shape {np.shape(v)} where the network expects {tuple(t.shape)}")
    params = jax.tree_util.tree_map(lambda t, v: jax.numpy.asarray(v, t.dtype), template, params)
    info = {k: meta[k] for k in ("model_name", "model_fingerprint", "value_model_fingerprint", "segments",
                                 "segments_sha", "masker") if k in meta}
    return build(net, params, model, segments=seg, masker=masker, classes=meta["classes"],
                 n_classes=meta["n_classes"], input_shape=meta["input_shape"], info=info)


def load(path, model, *, masker: Optional[Masker] = None) -> Explainer:
    """Read an explainer checkpoint and bind it to ``model`` (checked against the stored fingerprint).

    ``masker`` defaults to the one rebuilt from the file (constant, blur, segment mean).
    """
    weights, meta_path = _paths(path)
    if not weights.is_file():
        raise FileNotFoundError(f"explainer checkpoint {weights} not found")
    meta = read_metadata(meta_path)
    return _from_bytes(meta, weights.read_bytes(), model, masker, source=f"explainer {weights}")


# ------------------------------------------------------------------------------------------- shipped


def _weights_dir():
    return resources.files(__package__).joinpath("weights")


def available() -> list[dict]:
    """The shipped explainers: one dict per file (``name``, ``model_name``, ``segments``, ``masker``...)."""
    d = _weights_dir()
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.iterdir(), key=lambda p: p.name):
        if p.name.endswith(".json") and d.joinpath(p.name[:-5] + ".msgpack").is_file():
            meta = json.loads(p.read_text())
            out.append({"name": p.name[:-5], **{k: meta.get(k) for k in (
                "model_name", "model_fingerprint", "value_model_fingerprint", "segments", "segments_sha", "masker",
                "classes", "input_shape")}})
    return out


def find(model, images_shape, *, segments, masker: Masker) -> Explainer:
    """The shipped explainer for ``model`` (by weight fingerprint), ``segments`` and ``masker``.

    Raises a ``ValueError`` that lists the shipped explainers and what differs when none matches.
    """
    from .train import resolve_segments

    seg, M, seg_desc = resolve_segments(segments, np.zeros((1,) + tuple(images_shape)[-3:], np.float32))
    fp = fingerprint(model)
    sha = segments_hash(seg)
    shipped = available()
    for e in shipped:
        if (e.get("value_model_fingerprint") or e["model_fingerprint"]) == fp and e["segments_sha"] == sha \
                and e["masker"] == masker.describe():
            d = _weights_dir()
            meta = json.loads(d.joinpath(e["name"] + ".json").read_text())
            return _from_bytes(meta, d.joinpath(e["name"] + ".msgpack").read_bytes(), model, masker,
                               source=f"shipped explainer {e['name']!r}", check_model=False)
    listing = "; ".join(f"{e['name']} ({e['model_name']}, fingerprint {e['model_fingerprint']}, {e['segments']}, "
                        f"{e['masker']})" for e in shipped) or "none"
    raise ValueError(f"method='amortized': no shipped explainer matches model {model_name(model)!r} (fingerprint "
                     f"{fp}), segments {seg_desc} and masker {masker.describe()}. Shipped: {listing}. Train one "
                     "with shapjax.amortized.train(...) or `shapjax amortize`, then pass explainer= (CLI: --explainer FILE)")


def pretrained(name: str, *, model=None) -> Explainer:
    """Load a shipped explainer by file name (see :func:`available`); ``model`` defaults to the shipped
    classifier it explains (``shapjax.models.pretrained(model_name)``)."""
    names = [e["name"] for e in available()]
    if not isinstance(name, str) or name not in names:
        raise ValueError(f"name: unknown shipped explainer {name!r}; valid names: {names}")
    d = _weights_dir()
    meta = json.loads(d.joinpath(name + ".json").read_text())
    if model is None:
        from shapjax.models import pretrained as pretrained_model

        model = pretrained_model(meta["model_name"])
    return _from_bytes(meta, d.joinpath(name + ".msgpack").read_bytes(), model, None,
                       source=f"shipped explainer {name!r}")

