"""What ``outputs=`` means, in every function that takes it (one parser for all of them).

* ``None`` — every output of the model (``K`` = the number of classes);
* an ``int`` ``c`` — class ``c`` for every image (``K = 1``);
* a 1-D sequence or array of ``K`` ints — those classes for every image;
* a ``[B, K]`` int array — per image (row ``b`` for image ``b``);
* ``"top-k"`` (``"top-1"``, ``"top-3"``...) — the ``k`` largest outputs of each unmasked image.

Single-output methods (the gradient family, the metrics) explain one output per image: they
take the same values with ``K = 1`` (an int, ``[c]``, a ``[B, 1]`` array, ``"top-1"``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

Outputs = Union[None, int, Sequence[int], str, jax.Array]

_FORMS = "None (every output), an int, a list of K ints, an int array [B, K] or 'top-k' (e.g. 'top-3')"


class OutputSpec(NamedTuple):
    """Parsed ``outputs``: ``mode`` is ``"all"``, ``"given"`` or ``"top"``; ``index`` is ``[B, k]``
    int32 when ``mode == "given"`` (else None); ``k`` is the number of explained outputs."""

    mode: str
    k: int
    index: Optional[jax.Array]


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def parse_outputs(outputs: Outputs, *, n_classes: int, batch: int, name: str = "outputs") -> OutputSpec:
    """Check ``outputs`` against a model with ``n_classes`` outputs and a batch of ``batch`` images."""
    if outputs is None:
        return OutputSpec("all", int(n_classes), None)
    if isinstance(outputs, str):
        s = outputs.strip().lower()
        if s.startswith("top-") and s[4:].isdigit() and int(s[4:]) >= 1:
            k = int(s[4:])
            if k > n_classes:
                raise ValueError(f"{name}={outputs!r} asks for more classes than the model's {n_classes} outputs")
            return OutputSpec("top", k, None)
        raise ValueError(f"{name} must be {_FORMS}; got {outputs!r}")
    if isinstance(outputs, bool):
        raise TypeError(f"{name} must be {_FORMS}; got {outputs!r}")
    if isinstance(outputs, (int, np.integer)):
        outputs = [int(outputs)]
    try:
        idx = outputs if _is_traced(outputs) else jnp.asarray(np.asarray(outputs) if isinstance(outputs, (list, tuple)) else outputs)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {_FORMS}; got {outputs!r}") from None
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise TypeError(f"{name} must hold int class indexes; got dtype {idx.dtype} ({_FORMS})")
    if idx.ndim not in (1, 2) or idx.size == 0:
        raise ValueError(f"{name} must be ints [K] or [B, K]; got shape {tuple(idx.shape)}")
    if not _is_traced(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n_classes):
        raise ValueError(f"{name} indexes must be in 0..{n_classes - 1} (the model returns {n_classes} outputs); "
                         f"got {np.asarray(idx).tolist()}")
    if idx.ndim == 1:
        idx = jnp.broadcast_to(idx[None], (batch, idx.shape[0]))
    elif idx.shape[0] != batch:
        raise ValueError(f"{name} of shape [B, K] must have B={batch} rows (one per image); got {tuple(idx.shape)}")
    return OutputSpec("given", int(idx.shape[1]), idx.astype(jnp.int32))


def parse_single_output(outputs: Outputs, *, n_classes: int, batch: int, name: str = "outputs") -> Optional[jax.Array]:
    """For methods that explain one output per image: ``None`` for ``"top-1"`` (the prediction, picked
    inside the program) or the ``[B]`` int32 explained class of each image."""
    spec = parse_outputs(outputs, n_classes=n_classes, batch=batch, name=name)
    if spec.mode == "all" and n_classes == 1:
        return jnp.zeros((batch,), jnp.int32)
    if spec.k != 1:
        shown = outputs if isinstance(outputs, str) or outputs is None else f"shape {tuple(np.shape(outputs))}"
        raise ValueError(
            f"{name}: this method explains one output per image, but {name}={shown} selects {spec.k} outputs "
            "(None means every output, a 1-D list means those classes for every image); pass an int, "
            "'top-1', or a [B, 1] array for one class per image (e.g. classes[:, None])")
    if spec.mode == "top":
        return None
    return spec.index[:, 0]


def select(spec: OutputSpec, logits: jax.Array) -> jax.Array:
    """The ``[B, k]`` explained output indexes of ``spec`` given the unmasked outputs ``[B, n_classes]``."""
    B = logits.shape[0]
    if spec.mode == "top":
        return jax.lax.top_k(logits, spec.k)[1].astype(jnp.int32)
    if spec.mode == "all":
        return jnp.broadcast_to(jnp.arange(spec.k, dtype=jnp.int32)[None], (B, spec.k))
    return spec.index
