"""Subprocess worker of tests/test_pipeline.py: one explain_dataset run (optionally one process of several).

usage: python tests/pipeline_worker.py STORE BATCH [COORDINATOR NPROC PID] [--sleep S]
Environment: XLA_FLAGS decides the device count. --sleep pauses after every written batch (for the kill test).
"""
import sys
import time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
sleep = float(sys.argv[sys.argv.index("--sleep") + 1]) if "--sleep" in sys.argv else 0.0
if "--sleep" in sys.argv:
    args.remove(sys.argv[sys.argv.index("--sleep") + 1])
store, batch = args[0], int(args[1])

import jax  # noqa: E402

if len(args) > 2:
    from shapjax.pipeline import initialize

    initialize(args[2], num_processes=int(args[3]), process_id=int(args[4]))

from pipeline_model import linear_model  # noqa: E402

from shapjax.pipeline import explain_dataset  # noqa: E402

report = explain_dataset(linear_model(), "samples:mnist:12", key=jax.random.key(3), store=store, segments="grid:4x4",
                         masker="constant:0", method="kernel", n_evals=40, outputs="top-2", batch_size=batch,
                         chunk=1, progress=(lambda p: (print("batch", p.done, flush=True), time.sleep(sleep))))
print("report", jax.process_index(), jax.process_count(), len(jax.local_devices()), report.explained,
      report.skipped, flush=True)
