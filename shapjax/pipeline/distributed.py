"""Multi-process runs: :func:`initialize` (``jax.distributed``), the process's share of the work, a barrier.

Each process of a multi-host run explains the images of the store chunks it
owns (chunk ``c`` belongs to process ``c % P``) on its own local devices and
writes those chunks; no array crosses processes, so a slow or dead process
never stalls the others (its chunks stay not-done, and a rerun finishes them).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import jax

log = logging.getLogger(__name__)


def initialize(coordinator_address: str | None = None, *, num_processes: int | None = None,
               process_id: int | None = None, **kwargs) -> tuple[int, int]:
    """Join a multi-process JAX run (:func:`jax.distributed.initialize`); returns ``(process_index, process_count)``.

    With no arguments the cluster is detected from the environment (SLURM,
    Open MPI, Kubernetes/TPU pods) or from ``SHAPJAX_COORDINATOR``,
    ``SHAPJAX_NUM_PROCESSES`` and ``SHAPJAX_PROCESS_ID``. Calling it twice is harmless.
    """
    from jax._src import distributed as _d

    if _d.global_state.client is None:
        env = os.environ
        coordinator_address = coordinator_address or env.get("SHAPJAX_COORDINATOR")
        if num_processes is None and env.get("SHAPJAX_NUM_PROCESSES"):
            num_processes = int(env["SHAPJAX_NUM_PROCESSES"])
        if process_id is None and env.get("SHAPJAX_PROCESS_ID"):
            process_id = int(env["SHAPJAX_PROCESS_ID"])
        jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)
    return jax.process_index(), jax.process_count()


def process() -> tuple[int, int]:
    """``(process_index, process_count)`` of this process (``(0, 1)`` without :func:`initialize`)."""
    return jax.process_index(), jax.process_count()


def barrier(name: str, *, timeout_s: float = 600.0, marker: Path | None = None) -> None:
    """Wait until every process reaches ``name`` (the ``jax.distributed`` coordination service).

    Without a distributed client (one process) this returns at once. With a
    client that has no barrier, processes other than 0 wait for the file
    ``marker`` written by process 0.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed as _d

    client = _d.global_state.client
    if client is not None and hasattr(client, "wait_at_barrier"):
        client.wait_at_barrier(name, int(timeout_s * 1000))
        return
    if marker is None:  # pragma: no cover - every supported jax has wait_at_barrier
        raise RuntimeError("barrier: no jax.distributed barrier and no marker file")
    if jax.process_index() == 0:
        marker.write_text(name)
        return
    t0 = time.monotonic()
    while not (marker.is_file() and marker.read_text() == name):  # pragma: no cover
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"barrier {name!r}: process 0 did not arrive within {timeout_s:.0f} s")
        time.sleep(0.2)
