"""Compiled programs kept on disk, found again *without tracing*: a fresh process's first explanation.

JAX's persistent compilation cache (:mod:`shapjax._util.compilation_cache`) skips XLA's compile,
but a fresh process still traces and lowers the whole program to compute that cache's key — on a
small CNN that is ten times the explanation itself. This module keeps the *executable* of a
shapjax program under a key that is computed without tracing the program:

* the library's own code: the size and mtime of each of shapjax's source files; the host CPU (its
  model and feature flags: XLA:CPU code is compiled for them);
  JAX's and jaxlib's versions, the backend (platform, its version, device kinds and count), every
  JAX configuration value (x64 mode, matmul precision, the PRNG implementation...) and ``XLA_FLAGS``;
* the static arguments of the program (ints, strings, tuples, shapjax's own layouts), by ``repr``;
* the structure of the dynamic arguments (their tree) and each leaf's shape, dtype, weak type and
  sharding — the *values* (images, weights, keys) are arguments of the executable, never in it;
* the user's model, by the jaxpr it traces to at every input shape the program calls it with, and
  the bytes of every constant that jaxpr closes over. The jaxpr *is* the model's computation: new
  weights of the same shapes reuse the executable, and any change of code or constants changes
  the key.

Where a part cannot be described stably — an object whose ``repr`` holds a memory address, a
model whose jaxpr calls back into Python, a masker class from outside shapjax — the program is not
stored and runs through ``jax.jit`` as always (never a stale executable). Within a process the
executables are kept by the same key ``jax.jit`` uses (static arguments by hash, leaves by aval),
so a second call traces nothing either.

It is on when :func:`shapjax.enable_compilation_cache` is (the command line's default); the
executables go to ``<cache folder>/programs`` (at most :data:`MAX_STORE_BYTES`, the least recently
used deleted first). ``SHAPJAX_NO_CACHE=1`` turns both off.

Reading an executable back costs about as much as running a small one (XLA rebuilds its HLO module
and links its code: 0.05 s for a small CNN's explanation), so :func:`enable` starts a background
thread that reads the executables the previous process used first (``recent.json``, at most
:data:`PRELOAD`) while the caller builds its model. A preloaded executable is only *used* when the
key computed for a call names its file, exactly as a read from disk would be; a wrong guess costs
that thread's time and nothing else. The thread also runs a tiny matrix product once, so that the
one-off set-up of XLA:CPU's GEMM library (0.02 s, once per process) is not paid by the first call.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import threading
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import numpy as np

from shapjax._util.cpu_threads import quiet_lapack

_LOG = logging.getLogger(__name__)
_MEMO_SIZE = 32  # executables kept in the process (each holds its own code mappings)
MAX_STORE_BYTES = 2 << 30  # the stored executables kept on disk; the least recently used go first
FORMAT = 2  # bump when the stored layout changes
PRELOAD = 2  # executables read back in the background by enable (the first ones the last process used)
RECENT = "recent.json"

_state = {"folder": None, "gemm_warmed": False}
_memo: "OrderedDict[Any, Any]" = OrderedDict()
_lock = threading.Lock()
_env_cache: dict = {}
_preloaded: "dict[str, Future]" = {}  # file name -> the preload thread's executable (None: unreadable)
_used: list = []  # the files this process used, in order (the first PRELOAD go to recent.json)
stats = {"preloaded": 0}  # calls served by a preloaded executable (for tests and benchmarks)
background_threads: set = set()  # idents of shapjax's own background threads (CompileLog skips them)


class NotStorable(Exception):
    """A part of the program has no stable description: it runs through ``jax.jit`` instead."""


def enable(folder: Optional[os.PathLike]) -> Optional[Path]:
    """Keep executables in ``folder`` (None: off). Returns the folder, or None when it cannot be made."""
    if folder is None:
        _state["folder"] = None
        with _lock:
            _preloaded.clear()
        return None
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # an unwritable cache must not stop the job
        _LOG.warning("stored programs disabled: cannot create %s (%s)", path, e)
        _state["folder"] = None
        return None
    _state["folder"] = path
    with _lock:
        _used.clear()  # (recent.json is per folder)
    try:  # the one-time set-up a stored program may need, done here rather than in the first call
        _initialize_lapack()
    except Exception as e:  # noqa: BLE001 - then it happens when a program needs it
        _LOG.debug("LAPACK set-up deferred: %s", e)
    _start_preload(path)
    return path


def folder() -> Optional[Path]:
    return _state["folder"]


def clear() -> None:
    """Forget the executables held in this process (the stored ones stay), as if it were a fresh one."""
    with _lock:
        _memo.clear()
        _preloaded.clear()
        _used.clear()


# ----------------------------------------------------------------------------- preloading

def _start_preload(path: Path) -> None:
    """Read back, in a background thread, the executables named in ``path/recent.json`` (see the module doc)."""
    try:
        if jax.process_count() > 1:  # (call does not use stored programs there)
            return
        names = json.loads((path / RECENT).read_text()) if (path / RECENT).exists() else []
        names = [n for n in names if isinstance(n, str) and n.endswith(".xla") and "/" not in n][:PRELOAD]
    except (OSError, ValueError) as e:
        _LOG.debug("no preload: %s", e)
        names = []
    jobs = []
    with _lock:
        for name in names:
            if name not in _preloaded and (path / name).exists():
                _preloaded[name] = Future()
                jobs.append((name, _preloaded[name]))
    cpu = jax.default_backend() == "cpu" and not _state["gemm_warmed"]
    if not jobs and not cpu:
        return
    # Not a daemon: the interpreter waits for it at exit (a few tenths of a second at most) rather
    # than tearing XLA down under it.
    threading.Thread(target=_preload, args=(path, jobs, cpu), name="shapjax-preload").start()


def _preload(path: Path, jobs: list, cpu: bool) -> None:
    background_threads.add(threading.get_ident())
    try:
        for name, future in jobs:
            try:
                future.set_result(_read(path / name))
            except Exception as e:  # noqa: BLE001 - the call reads the file itself, and reports
                _LOG.debug("preload of %s failed: %s: %s", name, type(e).__name__, e)
                future.set_result(None)
        if cpu:
            _warm_gemm()
    finally:
        background_threads.discard(threading.get_ident())


def _warm_gemm() -> None:
    """Run one small matrix product whose lhs is contracted on its first axis: XLA:CPU runs such a dot
    through Eigen and oneDNN's sgemm, whose kernels are generated once per process on first use."""
    import jax.numpy as jnp

    if _state["gemm_warmed"]:
        return
    _state["gemm_warmed"] = True
    try:
        a = np.ones((8, 8), np.float32)
        np.asarray(jax.jit(lambda a, b: jnp.einsum("ki,kj->ij", a, b))(a, a))
    except Exception as e:  # noqa: BLE001 - only a warm-up
        _LOG.debug("GEMM warm-up failed: %s", e)


def _take_preloaded(name: str):
    """The executable the preload thread read from ``name`` (waiting for it), or None."""
    with _lock:
        future = _preloaded.pop(name, None)
    try:
        exe = None if future is None else future.result(timeout=60.0)
    except TimeoutError:  # (the thread is stuck: the call reads the file itself)
        exe = None
    if exe is not None:
        stats["preloaded"] += 1
    return exe


def _note_used(path: Path, file: Path) -> None:
    """Remember the first executables this process uses, for the next process's preload."""
    with _lock:
        if file.name in _used or len(_used) >= PRELOAD:
            return
        _used.append(file.name)
        names = list(_used)
    try:
        _write(path / RECENT, json.dumps(names).encode())
    except OSError as e:
        _LOG.debug("recent programs not noted: %s", e)


# ----------------------------------------------------------------------------- stable descriptions

def _source_stamp() -> tuple:
    root = Path(__file__).resolve().parent.parent  # the shapjax package
    stamp = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                st = os.stat(os.path.join(dirpath, name))
                stamp.append((os.path.relpath(os.path.join(dirpath, name), root), st.st_size, st.st_mtime_ns))
    return tuple(stamp)


def _host_cpu() -> str:
    """XLA:CPU compiles for the host's instruction set: a cache folder shared between machines must not
    hand one machine's code to another (Linux: the model name and feature flags of /proc/cpuinfo)."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        seen = dict.fromkeys(ln.strip() for ln in lines)
        return hashlib.sha256("\n".join(seen).encode()).hexdigest()
    except OSError:
        return f"{platform.machine()}|{platform.processor()}"


def _environment() -> str:
    """Everything outside the program's arguments that decides what it compiles to."""
    if "source" not in _env_cache:
        _env_cache["source"] = hashlib.sha256(repr(_source_stamp()).encode()).hexdigest()
        _env_cache["cpu"] = _host_cpu()
    import jaxlib

    from jax.extend.backend import get_backend

    backend = get_backend()
    devices = jax.devices()
    config = sorted((k, v) for k, v in jax.config.values.items()
                    if isinstance(v, (bool, int, float, str, type(None))) and not any(
                        w in k for w in ("cache", "log", "_dir", "traceback", "debug_nans_", "profil")))
    return repr((FORMAT, _env_cache["source"], _env_cache["cpu"], jax.__version__, jaxlib.__version__,
                 devices[0].platform, getattr(backend, "platform_version", "?"),
                 tuple(sorted({d.device_kind for d in devices})), len(devices), jax.process_count(),
                 os.environ.get("XLA_FLAGS", ""), config))


def stable_repr(value) -> str:
    """``repr`` of a static argument, refused (:class:`NotStorable`) when it depends on the process."""
    text = repr(value)
    if " at 0x" in text or "object at" in text:
        raise NotStorable(f"{type(value).__name__} has no stable description")
    return text


_TREE_MODULES = ("builtins", "collections", "shapjax", "jax", "jaxlib", "flax")


def tree_repr(treedef) -> str:
    """``repr`` of an argument tree, refused when a node type comes from outside shapjax and JAX (a
    user's class of the same name could behave differently under the same description)."""
    stack = [treedef]
    while stack:
        t = stack.pop()
        data = t.node_data()
        if data is not None:
            mod = (getattr(data[0], "__module__", None) or "").split(".")[0]
            if mod not in _TREE_MODULES:
                raise NotStorable(f"argument node {data[0].__qualname__} from module {mod!r}")
        stack.extend(t.children())
    return stable_repr(treedef)


def model_jaxpr(fn: Callable, *avals) -> str:
    """The model's computation at these input avals: its jaxpr, with the bytes of its constants."""
    closed = jax.make_jaxpr(fn)(*avals)
    text = str(closed)
    if "callback" in text or " at 0x" in text:
        raise NotStorable("the model calls back into Python or has an unstable description")
    h = hashlib.sha256(text.encode())
    for c in closed.consts:
        a = np.asarray(c)
        h.update(repr((a.shape, str(a.dtype))).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _leaf_spec(x) -> tuple:
    if isinstance(x, jax.core.Tracer):
        raise NotStorable("traced argument")
    if isinstance(x, jax.Array):
        return ("A", x.shape, str(x.dtype), bool(getattr(x, "weak_type", False)), str(x.sharding))
    if isinstance(x, (np.ndarray, np.generic)):
        return ("N", x.shape, str(x.dtype))
    if isinstance(x, (bool, int, float, complex)):
        return ("P", type(x).__name__)
    raise NotStorable(f"argument of type {type(x).__name__}")


# ----------------------------------------------------------------------------- the model's calls

_rec = threading.local()


def recorded(fn: Callable) -> Callable:
    """``fn`` (the joined model, inside a program's trace), noting the input aval of every call while
    :func:`call` compiles a program to store; ``fn`` itself otherwise (no cost)."""
    calls = getattr(_rec, "calls", None)
    if calls is None:
        return fn

    def model(x, *rest, **kw):
        calls.add((tuple(x.shape), str(x.dtype)))
        return fn(x, *rest, **kw)

    return model


def _model_key(model, calls) -> str:
    """The model (``(static, dynamic)`` of :func:`shapjax._util.modelfn.split_model`) at each recorded call."""
    from shapjax._util.modelfn import join_model

    static, dynamic = model
    parts = [repr(calls)]
    for shape, dtype in calls:
        parts.append(model_jaxpr(lambda d, x: join_model(static, d)(x), dynamic, jax.ShapeDtypeStruct(shape, dtype)))
    return "|".join(parts)


# ----------------------------------------------------------------------------- the call

def call(jitted, args: tuple, static: dict, *, kwargs: Optional[dict] = None, model=None, model_arg: str = "model_fn",
         describe: Callable[[], str] = lambda: ""):
    """``jitted(*args, **static)``, from a stored executable where there is one (see the module doc).

    ``static`` are the jit's static arguments (hashable), ``args`` and ``kwargs`` the others.
    ``model`` is ``(static, dynamic)`` of the user's model (:func:`shapjax._util.modelfn.split_model`),
    whose static half is ``static[model_arg]``: it is described by its jaxpr at the input avals the
    program calls it with (noted through :func:`recorded` when the program is first compiled and
    stored beside it), not by ``repr``. ``describe()`` adds what the jitted function closes over (a
    stable string; it may raise :class:`NotStorable`). Plain ``jitted`` when no folder is set, and
    in a multi-process run (each process would need the same files).
    """
    kwargs = kwargs or {}
    quiet_lapack()  # (once per process: see shapjax._util.cpu_threads)
    path = _state["folder"]
    if path is None or jax.process_count() > 1:
        return jitted(*args, **kwargs, **static)
    try:
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        specs = tuple(_leaf_spec(x) for x in leaves)
    except NotStorable:
        return jitted(*args, **kwargs, **static)
    memo_key = (jitted, treedef, specs, tuple(sorted(static.items())))
    with _lock:
        exe = _memo.get(memo_key)
        if exe is not None:
            _memo.move_to_end(memo_key)
    if exe is None:
        exe = _load_or_compile(jitted, args, kwargs, static, treedef, specs, model, model_arg, describe, path)
        if exe is None:
            return jitted(*args, **kwargs, **static)
        with _lock:
            _memo[memo_key] = exe
            while len(_memo) > _MEMO_SIZE:
                _memo.popitem(last=False)
    return exe(*args, **kwargs)


def _load_or_compile(jitted, args, kwargs, static, treedef, specs, model, model_arg, describe, path: Path):
    from jax.experimental import serialize_executable as se

    name = f"{getattr(jitted, '__module__', '?')}.{getattr(jitted, '__qualname__', '?')}"
    try:
        text = repr((_environment(), name, tree_repr(treedef), specs,
                     tuple((k, stable_repr(v)) for k, v in sorted(static.items()) if not (model and k == model_arg)),
                     describe()))
    except NotStorable as e:
        _LOG.debug("program not stored: %s", e)
        return None
    key1 = hashlib.sha256(text.encode()).hexdigest()
    calls_file, unstorable = path / f"{key1}.calls", path / f"{key1}.unstorable"
    if unstorable.exists():  # found once not to store: jax.jit, with JAX's own persistent cache, as before
        return None
    try:
        if model is not None and calls_file.exists():
            calls = tuple(tuple((tuple(s), d)) for s, d in json.loads(calls_file.read_text()))
            file = path / f"{_key2(key1, model, calls)}.xla"
        else:
            file = path / f"{key1}.xla"
        exe = _take_preloaded(file.name)
        if exe is None and file.exists():
            exe = _read(file)
        if exe is not None:
            _touch(file)
            _note_used(path, file)
            return exe
    except NotStorable as e:
        _LOG.debug("program not stored: %s", e)
        return None
    except Exception as e:  # noqa: BLE001 - a damaged or foreign entry is rebuilt, never trusted
        _LOG.warning("stored program %s unreadable (%s: %s); compiling again", key1[:12], type(e).__name__, e)
    _rec.calls = set() if model is not None else None
    try:
        with _fresh_compile() as hits:
            compiled = jitted.trace(*args, **kwargs, **static).lower().compile()
    except Exception:  # noqa: BLE001 - jax.jit raises the error again, with its own traceback
        return None
    finally:
        calls, _rec.calls = _rec.calls, None
    if hits:  # read from JAX's cache after all: such an executable does not serialise whole
        _LOG.debug("program not stored: it came from JAX's persistent cache")
        _write(unstorable, b"")
        return compiled
    try:
        if model is not None:
            calls = tuple(sorted(calls))
            file = path / f"{_key2(key1, model, calls)}.xla"
            _write(calls_file, json.dumps([[list(s), d] for s, d in calls]).encode())
        else:
            file = path / f"{key1}.xla"
        lapack = jax.default_backend() == "cpu" and "lapack" in compiled.as_text()
        _write(file, pickle.dumps((*se.serialize(compiled), lapack)))
        _note_used(path, file)
        _evict(path)
    except Exception as e:  # noqa: BLE001 - NotStorable, or an executable that does not serialise (host callbacks...)
        _LOG.debug("program not stored: %s: %s", type(e).__name__, e)
        # Remembered, so that later processes go through jax.jit and JAX's persistent cache instead of
        # compiling past it again (per program and argument shapes: a model of the same shapes is then
        # not stored either, which costs time, never correctness).
        _write(unstorable, b"")
    return compiled


@contextlib.contextmanager
def _fresh_compile():
    """Compile past JAX's persistent cache: an executable *read* from that cache serialises without
    its code (loaded in another process it fails with "Function ... not found"). Yields a list that
    holds an entry if the cache was read all the same (then the executable must not be stored)."""
    import jax.monitoring as monitoring
    from jax._src import compilation_cache as cc

    hits: list = []
    me = threading.get_ident()

    def on_event(event, **kw):
        if event == "/jax/compilation_cache/cache_hits" and threading.get_ident() == me:
            hits.append(event)

    monitoring.register_event_listener(on_event)
    lock = getattr(cc, "_cache_initialized_mutex", None)
    saved = None
    if lock is not None and hasattr(cc, "_cache_used"):
        with lock:
            saved = (cc._cache_checked, cc._cache_used)
            cc._cache_checked, cc._cache_used = True, False
    try:
        yield hits
    finally:
        if saved is not None:
            with lock:
                cc._cache_checked, cc._cache_used = saved
        monitoring.unregister_event_listener(on_event)


def _read(file: Path):
    """The executable stored in ``file`` (raises when it is unreadable)."""
    from jax.experimental import serialize_executable as se

    payload, in_tree, out_tree, lapack = pickle.loads(file.read_bytes())
    if lapack:  # (normally done by enable already)
        _initialize_lapack()
    return se.deserialize_and_load(payload, in_tree, out_tree)


def _initialize_lapack() -> None:
    """What a fresh process sets up lazily when it first *lowers* a linear-algebra op on CPU (the
    LAPACK kernels behind XLA:CPU's custom calls, from ``scipy.linalg``: about 0.2 s): a deserialised
    executable that calls them before that crashes the process. ``jax.export`` does the same
    before it runs a stored module."""
    from jax._src.lax import linalg

    linalg.initialize_lapack()
    quiet_lapack()  # scipy's OpenBLAS at one thread: its idle workers would spin on the model's cores


def _key2(key1: str, model, calls) -> str:
    return hashlib.sha256(f"{key1}|{_model_key(model, calls)}".encode()).hexdigest()


def _touch(file: Path) -> None:
    try:
        os.utime(file)  # recency for _evict (atime is often not kept)
    except OSError:
        pass


def _evict(path: Path) -> None:
    """Delete the least recently used executables while the store holds more than MAX_STORE_BYTES."""
    try:
        files = sorted((f.stat().st_mtime, f.stat().st_size, f) for f in path.glob("*.xla"))
        total = sum(size for _, size, _ in files)
        for _, size, f in files[:-1]:  # never the one just written
            if total <= MAX_STORE_BYTES:
                break
            f.unlink(missing_ok=True)
            total -= size
    except OSError as e:  # a store that cannot be pruned must not stop the job
        _LOG.debug("stored programs not pruned: %s", e)


def _write(file: Path, blob: bytes) -> None:
    tmp = file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, file)  # atomic: a concurrent reader sees all of it or nothing


__all__ = ["enable", "folder", "clear", "call", "recorded", "model_jaxpr", "stable_repr", "NotStorable"]
