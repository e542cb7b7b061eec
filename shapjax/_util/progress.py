"""Progress bars for compiled programs: a ``jax.debug.callback`` ticks the bar of one call.

A compiled program cannot hold a Python object, so each call that wants a bar opens one here and
passes its integer *token* into the program as a traced argument; the program's callback reports
finished rows against that token. Bars of concurrent calls never mix, nothing is recompiled per
bar, and with ``progress=False`` (the default) no callback is compiled in at all.
"""
from __future__ import annotations

import contextlib
import itertools
import threading

import numpy as np


class Bars:
    """Open progress bars, by token (one instance, :data:`BARS`, serves the process)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._bars: dict[int, object] = {}
        self._tokens = itertools.count(1)

    @contextlib.contextmanager
    def open(self, *, total: int, desc: str, unit: str = "eval"):
        """Context manager: a new bar; yields its token (an int to pass into the program)."""
        from tqdm.auto import tqdm

        bar = tqdm(total=int(total), unit=unit, desc=desc, leave=False)
        with self._lock:
            token = next(self._tokens)
            self._bars[token] = bar
        try:
            yield token
        finally:
            with self._lock:
                self._bars.pop(token, None)
            bar.close()

    def tick(self, token, n) -> None:
        """Host callback: ``n`` more rows done for the bar ``token`` (ignored once it is closed)."""
        with self._lock:
            bar = self._bars.get(int(np.asarray(token)))
        if bar is not None:
            bar.update(int(np.sum(n)))


BARS = Bars()
