"""Count and time JAX compilations (through :mod:`jax.monitoring`), e.g. to split a job's time into
compilation and steady state, or to check that a call compiled nothing new.

>>> with CompileLog() as log:
...     f(x)
>>> log.compiles, log.seconds, log.cache_hits

``compiles`` counts XLA compilations requested (a persistent-cache hit is one too, counted again in
``cache_hits``); ``seconds`` is the time spent tracing, lowering and compiling (or reading the
cache) in this thread and others while the block ran — except shapjax's own background threads
(the warm-up of :mod:`shapjax._util.aot`), which compile nothing the block asked for.
"""
from __future__ import annotations

import threading

import jax.monitoring as monitoring

from shapjax._util.aot import background_threads

TRACE = "/jax/core/compile/jaxpr_trace_duration"
LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
BACKEND = "/jax/core/compile/backend_compile_duration"
HITS = "/jax/compilation_cache/cache_hits"


class CompileLog:
    """A context manager that listens to JAX's compile events while it is open (re-entrant, thread-safe)."""

    def __init__(self):
        self.compiles = 0
        self.cache_hits = 0
        self.trace_seconds = 0.0
        self.lower_seconds = 0.0
        self.backend_seconds = 0.0
        self.by_name: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def seconds(self) -> float:
        return self.trace_seconds + self.lower_seconds + self.backend_seconds

    def _on_duration(self, event, duration, **kwargs):
        if threading.get_ident() in background_threads:
            return
        with self._lock:
            if event == BACKEND:
                self.compiles += 1
                self.backend_seconds += duration
                name = str(kwargs.get("fun_name", "?"))
                self.by_name[name] = self.by_name.get(name, 0) + 1
            elif event == TRACE:
                self.trace_seconds += duration
            elif event == LOWER:
                self.lower_seconds += duration

    def _on_event(self, event, **kwargs):
        if event == HITS and threading.get_ident() not in background_threads:
            with self._lock:
                self.cache_hits += 1

    def __enter__(self):
        monitoring.register_event_duration_secs_listener(self._on_duration)
        monitoring.register_event_listener(self._on_event)
        return self

    def __exit__(self, *exc):
        monitoring.unregister_event_duration_listener(self._on_duration)
        monitoring.unregister_event_listener(self._on_event)
        return False

    def count(self, name: str) -> int:
        """Compilations of programs whose name contains ``name`` (e.g. ``"_explain_impl"``)."""
        return sum(n for k, n in self.by_name.items() if name in k)

    def as_dict(self) -> dict:
        return {"compiles": self.compiles, "cache_hits": self.cache_hits, "compile_seconds": round(self.seconds, 3),
                "trace_seconds": round(self.trace_seconds, 3), "lower_seconds": round(self.lower_seconds, 3),
                "backend_compile_seconds": round(self.backend_seconds, 3)}


__all__ = ["CompileLog"]
