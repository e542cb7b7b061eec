"""``python -m benchmarks [throughput] [peers] [accuracy] [summary] [readme] [--quick]``.

With no benchmark named, runs throughput, peers and accuracy, then writes
``results/SUMMARY.md`` (``SUMMARY_quick.md`` with ``--quick``). ``summary``
and ``readme`` only regenerate the markdown from the existing JSON files.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0].strip("`"))
    ap.add_argument("what", nargs="*", choices=["throughput", "peers", "accuracy", "summary", "readme", []],
                    help="what to run (default: throughput peers accuracy, then summary)")
    ap.add_argument("--quick", action="store_true",
                    help="small configuration (a few minutes on 2 CPU cores); writes *_quick.json files")
    ap.add_argument("--out", default=None, help="results folder (default: benchmarks/results)")
    ap.add_argument("--models", nargs="*", default=None,
                    help="throughput only: restrict to these models (small-cnn resnet18-32 resnet50-224)")
    a = ap.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")

    from benchmarks import common

    out = a.out or str(common.RESULTS_DIR)
    todo = a.what or ["throughput", "peers", "accuracy", "summary"]
    t0 = time.perf_counter()
    common.log(f"benchmarks: {' '.join(todo)} ({'quick' if a.quick else 'full'}), backend {common.backend()}, "
               f"results in {out}")
    if "throughput" in todo:
        from benchmarks import throughput

        throughput.run(quick=a.quick, out_dir=out, models=a.models)
    if "peers" in todo:
        from benchmarks import peers

        peers.run(quick=a.quick, out_dir=out)
    if "accuracy" in todo:
        from benchmarks import accuracy

        accuracy.run(quick=a.quick, out_dir=out)
    if "summary" in todo or len(todo) > 1:
        from benchmarks import summary

        common.log(f"wrote {summary.write_summary(out, quick=a.quick)}")
    if "readme" in todo:
        from benchmarks import readme_table

        ok = readme_table.update_readme(results_dir=out)
        common.log("README table updated" if ok else "README not updated (see above)")
    common.log(f"benchmarks: done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
