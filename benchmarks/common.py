"""Shared helpers of the benchmarks: machine record, timing, memory, result files, host-callable models.

Nothing here is imported by :mod:`shapjax` itself. Peer libraries (shap, lime,
captum, torch) are imported lazily by the peer benchmarks only.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import json
import os
import platform
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Distributions whose versions are recorded in every result file.
VERSIONED = ("shapjax", "jax", "jaxlib", "flax", "numpy", "scikit-image", "scikit-learn",
             "shap", "shapiq", "lime", "captum", "torch", "numba")


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        if dist == "shapjax":
            import shapjax

            return getattr(shapjax, "__version__", None)
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def backend() -> str:
    """``"cpu"``, ``"gpu"`` or ``"tpu"``: the default JAX backend (used in result file names)."""
    return jax.default_backend()


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, JAX backend/devices, library versions, load average and time."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores_visible": os.cpu_count(),
        "cpu_cores_usable": affinity,
        "ram_gib": _ram_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax_backend": backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "versions": {d: _version(d) for d in VERSIONED},
        "git_commit": _git_commit(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_result(name: str, payload: dict, *, out_dir: Path | str = RESULTS_DIR) -> Path:
    """Write ``payload`` (plus the machine record) to ``out_dir/name.json``; returns the path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "machine": machine_info(), **payload}
    record["machine"]["load_average_end"] = record["machine"].pop("load_average")
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(record, indent=1, default=_json_default) + "\n")
    return path


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of ``fn()`` with every JAX array in its result blocked on."""
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - t0, out


def median(xs: Sequence[float]) -> float:
    return float(np.median(np.asarray(xs, dtype=np.float64)))


class PeakRSS:
    """Context manager sampling this process's resident set size in a thread.

    ``peak_delta_mib`` is the peak RSS during the block minus the RSS when it
    was entered: host memory, which on the CPU backend includes the device
    buffers. XLA releases the GIL while it runs, so the sampler keeps ticking.
    """

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.peak = 0
        self.start = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):  # pragma: no cover - not Linux
            return 0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval_s)

    @staticmethod
    def trim() -> None:
        """Hand freed heap pages back to the OS (glibc), so the baseline is not inflated by earlier calls."""
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            pass

    def __enter__(self):
        self.trim()
        self.start = self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def peak_delta_mib(self) -> float:
        return round((self.peak - self.start) / 2**20, 1)


def device_peak_mib() -> float | None:
    """The device allocator's lifetime peak (GPU/TPU), None where the backend has no memory stats."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backend dependent
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return round(stats["peak_bytes_in_use"] / 2**20, 1)


def memory_analysis_mib(compiled) -> dict[str, float] | None:
    """XLA's static buffer sizes of a compiled program (temp = peak scratch), in MiB."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - backend dependent
        return None
    if m is None:
        return None
    mib = lambda b: round(float(b) / 2**20, 2)  # noqa: E731
    return {"temp_mib": mib(m.temp_size_in_bytes), "argument_mib": mib(m.argument_size_in_bytes),
            "output_mib": mib(m.output_size_in_bytes),
            "generated_code_mib": mib(getattr(m, "generated_code_size_in_bytes", 0))}


# --------------------------------------------------------------------------- explain internals


class _Captured(Exception):
    pass


def capture_explain_program(model_fn, images, **explain_kwargs):
    """The jitted program behind one :func:`shapjax.explain` call, with its arguments.

    Runs ``explain``'s host-side preparation with the compiled core swapped
    for a recorder, and returns ``(jitted_fn, args, kwargs)`` so the program
    can be lowered and compiled ahead of time (compile time measured apart
    from run time; the compiled executable lands in the same cache that the
    next ``explain`` call uses).
    """
    import importlib

    import shapjax

    ex = importlib.import_module("shapjax.image.explain")  # the module (shapjax.explain is also the function)

    orig = ex._explain_impl
    box: dict[str, Any] = {}

    def recorder(*args, **kwargs):
        box["args"], box["kwargs"] = args, kwargs
        raise _Captured

    ex._explain_impl = recorder
    try:
        shapjax.explain(model_fn, images, **explain_kwargs)
    except _Captured:
        pass
    finally:
        ex._explain_impl = orig
    if "args" not in box:  # pragma: no cover - explain changed shape
        raise RuntimeError("could not capture shapjax.explain's compiled program")
    return orig, box["args"], box["kwargs"]


def compile_explain(model_fn, images, **explain_kwargs) -> dict[str, Any]:
    """Trace, lower and compile explain's program; returns times (s), chunk size and XLA memory."""
    fn, args, kwargs = capture_explain_program(model_fn, images, **explain_kwargs)
    t0 = time.perf_counter()
    lowered = fn.lower(*args, **kwargs)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return {"trace_lower_s": t1 - t0, "compile_s": t2 - t1, "total_compile_s": t2 - t0,
            "batch_size": int(kwargs["batch_size"]), "xla_memory": memory_analysis_mib(compiled)}


# --------------------------------------------------------------------------- host-callable model


# HostModel and compose_numpy live in the library (shapjax.evaluation.peers), shared with `shapjax compare`.
from shapjax.evaluation.peers import HostModel, compose_numpy  # noqa: E402,F401


def forward_rate(apply, params, input_shape, batch_size: int, *, n_batches: int = 1, seed: int = 0) -> float:
    """Images per second of the plain jitted forward at one batch size (already compiled)."""
    fwd = jax.jit(apply)
    x = jax.random.uniform(jax.random.key(seed), (batch_size,) + tuple(input_shape))
    t0 = time.perf_counter()
    for _ in range(n_batches):
        out = fwd(params, x)
    jax.block_until_ready(out)
    return n_batches * batch_size / (time.perf_counter() - t0)
