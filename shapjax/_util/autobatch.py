"""The default chunk size of ``explain``: chosen from the model, by a short, cached probe.

The number of composed images per model call matters: on CPU a small CNN on 64x64 images ran 3.8x
slower at batch 64 than at 256, while ResNet-18 at 32x32 ran 1.46x faster at 256 than at 16 in one run (flat in another). A
fixed element budget cannot know this, so for jobs big enough to care (at least
:data:`PROBE_MIN_ROWS` rows, and whose forward passes at the fallback chunk are predicted to take
at least :data:`PROBE_MIN_JOB_SECONDS`: one forward call is compiled and timed to tell; a shorter
one-off job would spend more on the probe than it could gain) :func:`choose_batch_size` times explain's chunk step in miniature
(:data:`PROBE_CHUNKS` chunks under ``lax.map`` and ``lax.cond``, each composing masked copies of an
image and running the jitted model on them) at a few powers of two and keeps the fastest per image,
within a memory budget and a time budget (:func:`search` is the rule; :func:`probe` feeds it the
real model):

* candidates ``16, 32, ... 2048`` (no more than the job's rows), tried in increasing order;
* each is compiled; its memory analysis bounds the candidates (temporaries of one call must stay
  under :data:`MEMORY_FRACTION` of the device's free memory, or of ``MemAvailable`` on CPU);
* each program is run until at least 3 runs and :data:`MIN_TIMED_SECONDS` are spent (50 runs at
  most), or only twice once a run takes more than :data:`SLOW_CALL_SECONDS`; the fastest run
  counts (other processes only ever add time);
* the next candidate is tried only if its predicted model call (the last one scaled by the batch
  ratio) stays under :data:`MAX_CALL_SECONDS` and its predicted cost (the last compile plus its runs)
  keeps the whole probe within :data:`PROBE_SECONDS`. There is no early stop on a slower
  candidate: on XLA:CPU the throughput is not unimodal in the batch size (a small CNN ran well at
  16 and 128-256 but 2x slower at 32-64 and 512, ``benchmarks/results/chunk_size_cpu.md``), and a
  big model's throughput keeps rising slowly with the batch (ResNet-18 at 2 cores: 0.26 s per
  call at 16, 2.8 s at 256, the best in one run), which the old rule (stop after a 0.5 s call) never reached;
* the winner is the smallest batch within 3 % of the best throughput.

Why the chunk step and not the forward pass alone (rule 2): in rule 2's run of
``benchmarks/results/chunk_size_cpu.md`` the forward pass rated batch 16 well above 128-256 for the
small CNN while explain ran 18-19 % faster at 128-256: the loop and the composition cost something
per chunk, which a forward pass alone does not see.

Small models reach the last candidate in seconds; a model whose calls take seconds stops
at the call or time limit. Results are cached per model structure (tree structure, leaf shapes and
dtypes, code location of a plain function), input shape, number of replacements, backend and the
version of this rule: in the process, and — when the persistent compilation cache is on — in
``autobatch.json`` beside it, so a later process skips the probe. Smaller jobs use the
element-budget rule of :func:`shapjax.engine.games.auto_batch_size`.
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
PROBE_MIN_JOB_SECONDS = 2.0
CANDIDATES = (16, 32, 64, 128, 256, 512, 1024, 2048)
MEMORY_FRACTION = 0.25
MIN_TIMED_SECONDS = 0.1
SLOW_CALL_SECONDS = 0.25
MAX_CALL_SECONDS = 4.0
PROBE_SECONDS = 45.0
PROBE_CHUNKS = 2
RULE_VERSION = 3  # part of the cache key: results of an older rule are probed again

_LOCK = threading.Lock()
_MEMO: dict[str, int] = {}
#: The probes run in this process, oldest first: ``{"rates": {batch: images/s}, "seconds": s, "chosen": b}``.
PROBES: list[dict] = []


def _strip_addresses(text: str) -> str:
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def fingerprint(static, dynamic, image_shape, n_replacements: int) -> str:
    """A key that is the same in every process for the same model structure and input shape."""
    from shapjax._util.modelfn import _FnPlan

    parts = [f"rule{RULE_VERSION}", static.kind, jax.default_backend(), str(jax.devices()[0].device_kind), str(tuple(image_shape)),
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


def _time_calls(call, clock) -> float:
    """Seconds of the fastest of the calls of ``call`` (see the module doc for how many)."""
    times = []
    while True:
        t0 = clock()
        call()
        times.append(clock() - t0)
        if times[0] > SLOW_CALL_SECONDS:
            if len(times) >= 2:
                break
        elif len(times) >= 3 and (sum(times) >= MIN_TIMED_SECONDS or len(times) >= 50):
            break
    return min(times)


def search(compile_at, *, max_rows: int, free: int | None = None, clock=time.perf_counter, chunks: int = 1):
    """The probe's rule (module doc) over ``compile_at(b) -> (call, temp_bytes)``.

    ``call()`` runs ``chunks`` model calls of ``b`` images each. Returns ``(chosen batch, {batch: images per
    second})``.
    """
    start = clock()
    rates: dict[int, float] = {}
    last_b = last_call = last_compile = None
    for b in CANDIDATES:
        if b > max(max_rows, CANDIDATES[0]):
            break
        if last_b is not None:
            predicted_call = last_call * b / last_b  # one run of the program: `chunks` model calls
            calls = 2 if predicted_call > SLOW_CALL_SECONDS else min(50, max(3, MIN_TIMED_SECONDS / predicted_call))
            predicted_cost = last_compile + calls * predicted_call
            if predicted_call / chunks > MAX_CALL_SECONDS or clock() - start + predicted_cost > PROBE_SECONDS:
                break
        t0 = clock()
        call, temp = compile_at(b)
        compile_s = clock() - t0
        if free is not None and rates and temp > MEMORY_FRACTION * free:
            break
        t = _time_calls(call, clock)
        rates[b] = chunks * b / max(t, 1e-9)
        last_b, last_call, last_compile = b, t, compile_s
    best = max(rates.values())
    return min(b for b, r in rates.items() if r >= 0.97 * best), rates


def _chunk_program(static, image_shape):
    """Explain's chunk loop in miniature: ``lax.map`` over chunks of coalitions, each composed into masked
    copies of one image (an 8x8 grid of segments, zero replacement) and passed through the model."""
    from shapjax._util.modelfn import join_model

    H, W = image_shape[0], image_shape[1]
    cells = ((np.arange(H)[:, None] * 8 // H) * 8 + np.arange(W)[None] * 8 // W).reshape(-1)

    def program(dynamic, image, coalitions):  # coalitions [chunks, b, 64] bool
        model = join_model(static, dynamic)

        def chunk(z):
            mask = jnp.take(z, jnp.asarray(cells), axis=1).reshape(z.shape[0], H, W, 1)
            out = jnp.asarray(model(jnp.where(mask, image, 0.0)))
            return out.reshape(out.shape[0], -1)[:, :1].astype(jnp.float32)

        def step(a):
            z, i = a
            return jax.lax.cond(i < coalitions.shape[0], chunk, lambda z: jnp.zeros((z.shape[0], 1), jnp.float32), z)

        return jax.lax.map(step, (coalitions, jnp.arange(coalitions.shape[0])))

    return jax.jit(program)


def probe(static, dynamic, image_shape, *, max_rows: int) -> int:
    """Time explain's chunk step at the :data:`CANDIDATES` by the rule of :func:`search`; return the best batch."""
    from shapjax._util.checks import available_memory

    program = _chunk_program(static, image_shape)
    image = jax.random.uniform(jax.random.key(0), tuple(image_shape), jnp.float32)

    def compile_at(b):
        z = jax.random.bernoulli(jax.random.key(1), 0.5, (PROBE_CHUNKS, b, 64))
        compiled = program.lower(dynamic, image, z).compile()
        try:
            temp = compiled.memory_analysis().temp_size_in_bytes
        except Exception:  # noqa: BLE001 - not every backend reports it
            temp = 0
        return (lambda: jax.block_until_ready(compiled(dynamic, image, z))), temp

    t0 = time.perf_counter()
    chosen, rates = search(compile_at, max_rows=max_rows, free=available_memory(), chunks=PROBE_CHUNKS)
    seconds = time.perf_counter() - t0
    PROBES.append({"rates": rates, "seconds": seconds, "chosen": chosen})
    _LOG.info("chunk-size probe (%.1f s): images/s by batch %s -> %d", seconds,
              {b: round(r) for b, r in rates.items()}, chosen)
    return chosen


def job_seconds(static, dynamic, image_shape, *, batch: int, rows: int, key: str | None = None) -> float:
    """The job's forward passes at ``batch`` images per call, predicted from the fastest timed call (the
    probe's rule, :func:`_time_calls`; one compile; the call's time is kept per model fingerprint ``key`` and batch, in the process and
    beside the compilation cache, so later jobs of the same model decide at no cost)."""
    from shapjax._util.modelfn import join_model

    b = int(max(1, min(batch, rows)))
    fkey = None if key is None else f"{key}|forward-us@{b}"
    with _LOCK:
        us = _MEMO.get(fkey) if fkey else None
    if us is None and fkey:
        us = _read_disk(fkey)
    if us is None:
        x = jnp.zeros((b, *image_shape), jnp.float32)
        fwd = jax.jit(lambda d, x: join_model(static, d)(x)).lower(dynamic, x).compile()
        call = lambda: jax.block_until_ready(fwd(dynamic, x))  # noqa: E731
        call()  # the first run of an executable pays one-time costs
        us = max(1, round(_time_calls(call, time.perf_counter) * 1e6))
        if fkey:
            _write_disk(fkey, us)
    if fkey:
        with _LOCK:
            _MEMO[fkey] = us
    return us * 1e-6 * rows / b


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
    if hit is None and job_seconds(static, dynamic, image_shape, batch=fallback * n_replacements,
                                   rows=rows * n_replacements, key=key) < PROBE_MIN_JOB_SECONDS:
        return fallback  # a job this short gains less than the probe costs
    if hit is None:
        per_call = probe(static, dynamic, image_shape, max_rows=rows * n_replacements)
        hit = max(1, per_call // max(int(n_replacements), 1))
        _write_disk(key, hit)
    with _LOCK:
        _MEMO[key] = hit
    return int(min(hit, rows))
