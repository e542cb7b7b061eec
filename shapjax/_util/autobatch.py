"""The default chunk size of ``explain``: chosen from the model, by a short, cached probe.

The number of composed images per model call matters: on CPU a small CNN on 64x64 images ran 3.8x
slower at batch 64 than at 256, while ResNet-18 preferred 16-64 (caches). A fixed element budget
cannot know this, so for jobs big enough to care (at least :data:`PROBE_MIN_ROWS` rows)
:func:`choose_batch_size` times the model's jitted forward pass at a few powers of two and keeps
the fastest per image, within a memory budget:

* candidates ``16, 32, ... 2048`` (no more than the job's rows), tried in increasing order;
* each is compiled (its memory analysis bounds the candidates: temporaries of one call must stay
  under :data:`MEMORY_FRACTION` of the device's free memory, or of ``MemAvailable`` on CPU) and run
  at least 3 times and for at least 0.1 s; the median call counts;
* the probe stops when a call takes more than :data:`MAX_CALL_SECONDS`, or when two candidates
  at least 4x the best batch are more than 10 % slower per image than the best;
* the winner is the smallest batch within 3 % of the best throughput.

Results are cached per model structure (tree structure, leaf shapes and dtypes, code location of a
plain function), input shape, number of replacements and backend: in the process, and — when the
persistent compilation cache is on — in ``autobatch.json`` beside it, so a later process skips
the probe. Smaller jobs use the element-budget rule of :func:`shapjax.engine.games.auto_batch_size`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

_LOG = logging.getLogger(__name__)

PROBE_MIN_ROWS = 2048
MAX_CALL_SECONDS = 0.5
MEMORY_FRACTION = 0.25
CANDIDATES = (16, 32, 64, 128, 256, 512, 1024, 2048)

_LOCK = threading.Lock()
_MEMO: dict[str, int] = {}


def _strip_addresses(text: str) -> str:
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def fingerprint(static, dynamic, image_shape, n_replacements: int) -> str:
    """A key that is the same in every process for the same model structure and input shape."""
    from shapjax._util.modelfn import _FnPlan

    parts = [static.kind, jax.default_backend(), str(jax.devices()[0].device_kind), str(tuple(image_shape)),
             str(int(n_replacements))]
    payload = static.payload
    if isinstance(payload, _FnPlan):
        fn = payload.fn
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        parts.append(f"{getattr(code, 'co_filename', '?')}:{getattr(code, 'co_firstlineno', '?')}:"
                     f"{getattr(fn, '__qualname__', '?')}")
    else:
        parts.append(_strip_addresses(str(payload))[:4000])
    leaves = jax.tree_util.tree_leaves(dynamic)
    parts += [f"{tuple(np.shape(x))}:{getattr(x, 'dtype', type(x).__name__)}" for x in leaves]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _disk_cache() -> Path | None:
    folder = jax.config.jax_compilation_cache_dir
    return Path(folder) / "autobatch.json" if folder else None


def _read_disk(key: str) -> int | None:
    path = _disk_cache()
    if path is None or not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text()).get(key))
    except (ValueError, TypeError, OSError):
        return None


def _write_disk(key: str, value: int) -> None:
    path = _disk_cache()
    if path is None:
        return
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
        data[key] = int(value)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=0, sort_keys=True))
        os.replace(tmp, path)
    except (OSError, ValueError) as e:  # a cache that cannot be written must not stop the job
        _LOG.debug("autobatch cache not written: %s", e)


def probe(static, dynamic, image_shape, *, max_rows: int) -> int:
    """Time the forward pass at the :data:`CANDIDATES` (see the module doc) and return the best batch."""
    from shapjax._util.checks import available_memory
    from shapjax._util.modelfn import join_model

    fwd = jax.jit(lambda d, x: join_model(static, d)(x))
    free = available_memory()
    best_b, best_rate, worse, rates = None, 0.0, 0, {}
    for b in CANDIDATES:
        if b > max(max_rows, CANDIDATES[0]):
            break
        x = jnp.zeros((b, *image_shape), jnp.float32)
        compiled = fwd.lower(dynamic, x).compile()
        try:
            temp = compiled.memory_analysis().temp_size_in_bytes
        except Exception:  # noqa: BLE001 - not every backend reports it
            temp = 0
        if free is not None and best_b is not None and temp > MEMORY_FRACTION * free:
            break
        jax.block_until_ready(compiled(dynamic, x))
        times, spent = [], 0.0
        while len(times) < 3 or (spent < 0.1 and len(times) < 50):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(dynamic, x))
            times.append(time.perf_counter() - t0)
            spent += times[-1]
        t = float(np.median(times))
        rate = b / max(t, 1e-9)
        rates[b] = rate
        if rate > best_rate:
            best_b, best_rate, worse = b, rate, 0
        elif rate < 0.9 * best_rate:
            worse += 1
        if t > MAX_CALL_SECONDS or (worse >= 2 and b >= 4 * best_b):
            break
    chosen = min(b for b, r in rates.items() if r >= 0.97 * best_rate)
    _LOG.info("chunk-size probe: images/s by batch %s -> %d", {b: round(r) for b, r in rates.items()}, chosen)
    return chosen


def choose_batch_size(static, dynamic, image_shape, *, rows: int, n_replacements: int = 1,
                      fallback: int) -> int:
    """Composed images (explained rows) per model call for a job of ``rows`` rows; ``fallback`` for small jobs."""
    if rows < PROBE_MIN_ROWS or any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(dynamic)):
        return fallback
    key = fingerprint(static, dynamic, image_shape, n_replacements)
    with _LOCK:
        hit = _MEMO.get(key)
    if hit is None:
        hit = _read_disk(key)
    if hit is None:
        per_call = probe(static, dynamic, image_shape, max_rows=rows * n_replacements)
        hit = max(1, per_call // max(int(n_replacements), 1))
        _write_disk(key, hit)
    with _LOCK:
        _MEMO[key] = hit
    return int(min(hit, rows))
