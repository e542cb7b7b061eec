"""One LAPACK thread for XLA:CPU's linear algebra, so that it leaves the cores to the model.

XLA:CPU runs its linear-algebra custom calls (the Cholesky factor and triangular solves of the
regression estimators' solve) through the LAPACK of scipy's OpenBLAS. OpenBLAS's worker threads
busy-wait after each call (its ``THREAD_TIMEOUT``: about 2**28 cycles, a tenth of a second), so on
a machine with few cores they take the cores that XLA's own thread pool needs for the model's
forward passes that run next. Measured on a 2-core CPU (``benchmarks/ceiling.py``'s narrow CNN,
one process each way): KernelSHAP at M = 16 took 0.212 s with OpenBLAS's default threads and
0.163 s with one, 0.248 s and 0.192 s at M = 64, and 2.59 s and 2.56 s at M = 4096, where the
Cholesky factor is 4096 x 4096 (one thread loses nothing there).

:func:`quiet_lapack` caps scipy's OpenBLAS at one thread (with ``threadpoolctl``), once per process,
on the CPU backend, as soon as scipy's LAPACK is loaded (JAX loads it when it first lowers or loads
a program with linear algebra). ``SHAPJAX_LAPACK_THREADS=n`` sets another cap, and
``SHAPJAX_LAPACK_THREADS=keep`` leaves OpenBLAS alone. Only the OpenBLAS that scipy ships is capped
(numpy's own BLAS is not), unless scipy uses a system BLAS, which is then capped.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

_LOG = logging.getLogger(__name__)
ENV = "SHAPJAX_LAPACK_THREADS"
_done = False
_lock = threading.Lock()


def _cap() -> int | None:
    raw = os.environ.get(ENV, "1").strip().lower()
    if raw == "keep":
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        _LOG.warning("%s=%r is neither a positive int nor 'keep'; using 1", ENV, raw)
        n = 1
    return n


def _scipy_blas(controllers) -> list:
    """The BLAS libraries scipy's LAPACK runs on: those shipped inside scipy's own folders, else every
    BLAS that is loaded (scipy then uses a system BLAS, shared with numpy)."""
    import scipy

    here = Path(scipy.__file__).resolve().parent
    roots = (str(here), str(here.parent / "scipy.libs"))
    blas = [c for c in controllers if c.user_api == "blas"]
    own = [c for c in blas if str(Path(c.filepath).resolve()).startswith(roots)]
    return own or blas


def quiet_lapack() -> bool:
    """Cap scipy's OpenBLAS (the LAPACK of XLA:CPU's custom calls) at one thread; see the module doc.

    Cheap after the first time. Does nothing off the CPU backend, with ``SHAPJAX_LAPACK_THREADS=keep``,
    or while scipy's LAPACK is not loaded yet (it is tried again at the next call). Returns whether the
    cap is in place (or was left alone on purpose)."""
    global _done
    if _done:
        return True
    if "scipy.linalg.cython_lapack" not in sys.modules:
        return False
    with _lock:
        if _done:
            return True
        import jax

        cap = _cap()
        if cap is None or jax.default_backend() != "cpu":
            _done = True
            return True
        try:
            from threadpoolctl import ThreadpoolController

            for lib in _scipy_blas(ThreadpoolController().lib_controllers):
                if lib.num_threads > cap:
                    lib.set_num_threads(cap)
        except Exception as e:  # noqa: BLE001 - a missing or foreign BLAS costs speed, never correctness
            _LOG.debug("LAPACK threads left as they are: %s: %s", type(e).__name__, e)
        _done = True
        return True


__all__ = ["quiet_lapack", "ENV"]
