"""Shared helpers of the benchmarks: machine record, timing, memory, result files, host-callable models.

Nothing here is imported by :mod:`shapjax` itself. Peer libraries (shap, lime,
captum, torch) are imported lazily by the peer benchmarks only.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
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
import jax.numpy as jnp
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


def machine_line(m: dict, *, libs: Sequence[str] = ()) -> str:
    """``CPU, N cores, JAX version backend[, lib version...], date, load average at the end a, b, c`` of a result
    file's machine record (the parenthesis of a result table's title)."""
    v = m.get("versions") or {}
    load = m.get("load_average_end") or []
    parts = [str(m.get("cpu_model", "?")), f"{m.get('cpu_cores_usable', '?')} cores",
             f"JAX {v.get('jax') or '?'} {m.get('jax_backend', '')}".rstrip()]
    parts += [f"{lib} {v.get(lib) or '?'}" for lib in libs]
    parts += [str(m.get("date", ""))[:10], "load average at the end " + (", ".join(f"{x:.1f}" for x in load) or "?")]
    return ", ".join(parts)


def write_report(name: str, payload: dict, markdown: Callable[[dict, dict], str], *,
                 out_dir: Path | str = RESULTS_DIR) -> str:
    """``out_dir/name.json`` (:func:`write_result`: ``payload`` plus the machine record) and ``out_dir/name.md``
    = ``markdown(machine, payload)``, the machine record as stored in the JSON file; returns the markdown."""
    path = write_result(name, payload, out_dir=out_dir)
    machine = json.loads(path.read_text())["machine"]
    md = markdown(machine, payload)
    (Path(out_dir) / f"{name}.md").write_text(md)
    return md


def main_quick(doc: str, name: str, run: Callable[..., dict], markdown: Callable[[dict, dict], str],
               argv=None) -> str:
    """The command line of a benchmark ``run(quick=...)``: ``[--quick] [--out DIR]``; writes
    ``DIR/name.json`` + ``.md`` (:func:`write_report`), prints the markdown and returns it."""
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the small configuration")
    ap.add_argument("--out", default=str(RESULTS_DIR), help="results folder (default: benchmarks/results)")
    a = ap.parse_args(argv)
    md = write_report(name, run(quick=a.quick), markdown, out_dir=a.out)
    print(md)
    return md


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of ``fn()`` with every JAX array in its result blocked on."""
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - t0, out


def median(xs: Sequence[float]) -> float:
    return float(np.median(np.asarray(xs, dtype=np.float64)))


def steady_seconds(fn: Callable[..., Any], *args, repeats: int = 3, statistic: str = "best") -> float:
    """Seconds of ``fn(*args)`` (its JAX arrays blocked on) after one warm-up call (compilation and first run):
    the best (``"best"``) or the median (``"median"``) of ``repeats`` calls."""
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    if statistic == "best":
        return min(ts)
    if statistic == "median":
        return median(ts)
    raise ValueError(f"statistic: expected 'best' or 'median', got {statistic!r}")


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


def run_worker(script: str, *args, timeout: float) -> Any:
    """Run ``python -c script args...`` in a fresh process; returns the JSON its last ``RESULT {...}`` stdout
    line carries (a ``RuntimeError`` with the end of its stderr when it fails)."""
    import sys

    p = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])


# --------------------------------------------------------------------------- explain internals


class _Captured(Exception):
    pass


def capture_program(module: str, impl: str, call: Callable[[], Any], *, what: str | None = None):
    """The jitted function ``module.impl`` and the arguments ``call()`` hands it: ``(jitted_fn, args, kwargs)``.

    Runs ``call`` (the host-side preparation of a library call) with ``module.impl`` swapped for a
    recorder that stops the call there, so the program can be lowered and compiled ahead of time
    (compile time measured apart from run time; the executable lands in the cache that the next
    call uses).
    """
    mod = importlib.import_module(module)
    orig = getattr(mod, impl)
    box: dict[str, Any] = {}

    def recorder(*args, **kwargs):
        box["args"], box["kwargs"] = args, kwargs
        raise _Captured

    setattr(mod, impl, recorder)
    try:
        call()
    except _Captured:
        pass
    finally:
        setattr(mod, impl, orig)
    if "args" not in box:  # pragma: no cover - the library changed shape
        raise RuntimeError(f"could not capture {what or module + '.' + impl}'s compiled program")
    return orig, box["args"], box["kwargs"]


def compile_timed(fn, args, kwargs) -> tuple[dict[str, float], Any]:
    """Trace+lower, then compile ``fn(*args, **kwargs)`` ahead of time: ``({trace_lower_s, compile_s,
    total_compile_s}, compiled)``."""
    t0 = time.perf_counter()
    lowered = fn.lower(*args, **kwargs)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return {"trace_lower_s": t1 - t0, "compile_s": t2 - t1, "total_compile_s": t2 - t0}, compiled


def capture_explain_program(model_fn, images, **explain_kwargs):
    """The jitted program behind one :func:`shapjax.explain` call, with its arguments
    (:func:`capture_program` of ``shapjax.image.explain._explain_impl``)."""
    import shapjax

    # the module by name: shapjax.image.explain is also the function
    return capture_program("shapjax.image.explain", "_explain_impl",
                           lambda: shapjax.explain(model_fn, images, **explain_kwargs), what="shapjax.explain")


def compile_explain(model_fn, images, **explain_kwargs) -> dict[str, Any]:
    """Trace, lower and compile explain's program; returns times (s), chunk size and XLA memory."""
    fn, args, kwargs = capture_explain_program(model_fn, images, **explain_kwargs)
    times, compiled = compile_timed(fn, args, kwargs)
    return {**times, "batch_size": int(kwargs["batch_size"]), "xla_memory": memory_analysis_mib(compiled)}


# --------------------------------------------------------------------------- host-callable model


# HostModel and compose_numpy live in the library (shapjax.evaluation.peers), shared with `shapjax compare`.
from shapjax.evaluation.peers import HostModel, compose_numpy  # noqa: E402,F401


def _tanh_net(p, z):
    return jnp.tanh(z.astype(jnp.float32) @ p[0] + p[1]) @ p[2]


def network_game(M: int, seed: int, *, n_outputs: int = 3):
    """A cheap game on the coalition vector: a two-layer tanh network with parameters drawn from ``seed``, its
    weights passed as data (a new game object every call, the same structure for the same ``M``)."""
    rng = np.random.default_rng(seed)
    p = (jnp.asarray(rng.normal(size=(M, 32)) / np.sqrt(M), jnp.float32), jnp.asarray(rng.normal(size=32), jnp.float32),
         jnp.asarray(rng.normal(size=(32, n_outputs)) / np.sqrt(32), jnp.float32))
    return jax.tree_util.Partial(_tanh_net, p)


def forward_rate(apply, params, input_shape, batch_size: int, *, n_batches: int = 1, seed: int = 0) -> float:
    """Images per second of the plain jitted forward at one batch size (already compiled)."""
    fwd = jax.jit(apply)
    x = jax.random.uniform(jax.random.key(seed), (batch_size,) + tuple(input_shape))
    t0 = time.perf_counter()
    for _ in range(n_batches):
        out = fwd(params, x)
    jax.block_until_ready(out)
    return n_batches * batch_size / (time.perf_counter() - t0)
