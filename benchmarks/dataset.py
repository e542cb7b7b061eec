"""Whole datasets: ``shapjax explain`` on the 10,000 MNIST test images, memory, devices, processes.

``python -m benchmarks.dataset [--quick] [--mnist DIR]`` measures, in one run:

* the CLI on the MNIST test set (IDX files read from ``--mnist``, default
  ``../shared/data/mnist`` - read by this benchmark only, never by the package):
  images/s, and its ratio to the model's forward-pass ceiling at the same budget
  (the plain jitted forward of the same model at the same model batch: evals/s /
  evaluations per image);
* the peak RSS of the CLI process for 1,000 and 10,000 images (memory flat in the
  dataset's size);
* 1 vs 2 vs 4 forced host devices and 1 vs 2 processes on a subset: steady-state
  time (after compilation), parallel efficiency ``t_1 / (n * t_n)`` and whether the
  stores are equal bit for bit;
* the cost of per-image keys: :func:`shapjax.explain` on batches of 8 (one
  coalition design shared by the batch) against the per-image program of
  :func:`shapjax.explain_dataset` on the same images and budget.

Writes ``benchmarks/results/dataset.json`` and ``dataset.md`` (``dataset_quick.*`` with ``--quick``).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: ``../shared/data/mnist`` beside the checkout (a worktree one level deeper looks one more level up)
SHARED_MNIST = next((p / "shared" / "data" / "mnist" for p in (ROOT.parent, ROOT.parent.parent)
                     if (p / "shared" / "data" / "mnist").is_dir()), ROOT.parent / "shared" / "data" / "mnist")
CFG = dict(segments="grid:7x7", masker="constant:0", method="kernel", n_evals=128, outputs="top-1")


def _plain_idx(mnist: Path, tmp: Path) -> tuple[Path, Path]:
    """The gzipped IDX files decompressed once into ``tmp`` (plain files are memory-mapped by the source)."""
    out = []
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        src = mnist / name
        if not src.exists():
            src = mnist / f"{name}.gz"
        dst = tmp / name
        with (gzip.open(src) if src.suffix == ".gz" else open(src, "rb")) as f, open(dst, "wb") as g:
            shutil.copyfileobj(f, g)
        out.append(dst)
    return out[0], out[1]


def _env(devices: int = 1) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", TQDM_DISABLE="1")


def _child(args: list[str], devices: int = 1, timeout: int = 3600) -> dict:
    r = subprocess.run([sys.executable, "-m", "benchmarks.dataset", "--child", *args], env=_env(devices),
                       capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- children


def child_cli(images: str, labels: str, n: int, out: str) -> dict:
    """One ``shapjax explain`` run in this process; its peak RSS and the summary's timing."""
    from shapjax.cli import main

    argv = ["explain", f"idx:{images},{labels}", "--limit", str(n), "--model", "mnist-cnn", "--segments",
            CFG["segments"], "--masker", CFG["masker"], "--method", CFG["method"], "--n-evals", str(CFG["n_evals"]),
            "--top-k", "1", "--figures", "8", "--out", out, "--quiet", "--overwrite", "--no-store-images"]
    rc = main(argv)
    assert rc == 0, rc
    s = json.loads((Path(out) / "summary.json").read_text())
    return {"n": n, "rc": rc, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": s["seconds"], "images_per_second": s["images_per_second"],
            "evaluations_per_second": s["evaluations_per_second"], "evals_per_image": s["n_evals"]}


def child_run(images: str, labels: str, n: int, store: str, batch: int, *dist) -> dict:
    """A warm-up run (compiles), then the timed run of ``n`` images (optionally one process of several)."""
    import jax

    if dist:
        from shapjax.pipeline import initialize

        initialize(dist[0], num_processes=int(dist[1]), process_id=int(dist[2]))
    import shapjax
    from shapjax.pipeline import Head, explain_dataset, idx_source

    clf = shapjax.models.pretrained("mnist-cnn")
    src = idx_source(images, labels=labels)
    warm = Path(store).with_name(Path(store).name + ".warm")  # one batch per process: compiles the program
    kw = dict(key=jax.random.key(0), batch_size=batch, model_batch=256, **CFG)
    explain_dataset(clf, Head(idx_source(images, labels=labels), batch * jax.process_count()), store=warm,
                    overwrite=True, **kw)
    t0 = time.perf_counter()
    r = explain_dataset(clf, Head(src, n), store=store, **kw)
    return {"process": jax.process_index(), "processes": jax.process_count(), "devices": len(jax.local_devices()),
            "explained": r.explained, "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- in the parent


def forward_ceiling(model_batch: int = 256, repeats: int = 20) -> dict:
    """evals/s of the plain jitted forward of mnist-cnn at the CLI's model batch."""
    import jax
    import numpy as np

    import shapjax
    from benchmarks import common

    clf = shapjax.models.pretrained("mnist-cnn")
    fwd = jax.jit(clf.apply)
    x = jax.random.uniform(jax.random.key(0), (model_batch, 28, 28, 1))
    jax.block_until_ready(fwd(clf.params, x))
    rates = [common.forward_rate(clf.apply, clf.params, (28, 28, 1), model_batch, n_batches=8) for _ in range(repeats)]
    return {"model_batch": model_batch, "evals_per_second": float(np.median(rates)),
            "evals_per_second_best": float(np.max(rates))}


def per_image_key_cost(n_images: int = 64) -> dict:
    """shapjax.explain on batches of 8 (shared design) vs the pipeline's per-image program, same images/budget."""
    import jax
    import numpy as np

    import shapjax
    from shapjax import maskers, segment
    from shapjax.pipeline import program as pg

    clf = shapjax.models.pretrained("mnist-cnn")
    x = np.tile(np.asarray(shapjax.data.samples("mnist").images), (n_images // 16 + 1, 1, 1, 1))[:n_images]
    seg, m = segment.grid(7, 7), maskers.constant(0.0)
    kw = dict(segments=seg, masker=m, method="kernel", n_evals=CFG["n_evals"], outputs="top-1", batch_size=256)

    def batched():
        return [shapjax.explain(clf, x[i:i + 8], key=jax.random.fold_in(jax.random.key(0), i), **kw).values
                for i in range(0, n_images, 8)]

    static, tree = pg.split_model(clf)
    plan = pg.make_plan(static, n_segments=49, method="kernel", n_evals=CFG["n_evals"], out_mode="top", k=1,
                        pixels=784, n_replacements=1, batch_size=256, masked=False)
    mesh = pg.local_mesh()
    prog = pg.program(plan, mesh)
    s = seg(x)
    md, td = pg.replicate(mesh, m), pg.replicate(mesh, tree)

    def per_image():
        outs = []
        for i in range(0, n_images, 8):
            idx = np.arange(i, i + 8)
            args = pg.shard(mesh, (pg.image_keys(idx, key=jax.random.key(0)), x[idx], s[idx], None, None, None))
            outs.append(prog(*args, md, td)[0])
        return outs

    from benchmarks import common

    res = {}
    for name, fn in (("shared_design_batches_of_8", batched), ("per_image_keys", per_image)):
        common.timed(fn)  # compile
        res[name] = common.median([common.timed(fn)[0] for _ in range(3)])
    res["ratio_per_image_over_shared"] = res["per_image_keys"] / res["shared_design_batches_of_8"]
    res["n_images"] = n_images
    return res


def child_rss_curve(images: str, labels: str) -> dict:
    """Peak RSS every 1,000 images of a 10,000-image run with a tiny linear model (the pipeline's own memory)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from shapjax.pipeline import explain_dataset, idx_source

    w = jnp.asarray(np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32))
    model = jax.tree_util.Partial(lambda w, x: x.reshape(x.shape[0], -1) @ w, w)
    marks = {}

    def progress(p):
        if p.done % 1000 < 64 or p.done == p.total:
            marks[int(p.done)] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    with tempfile.TemporaryDirectory() as d:
        explain_dataset(model, idx_source(images, labels=labels), key=jax.random.key(0), store=Path(d) / "r.zarr",
                        segments="grid:2x2", masker="constant:0", n_evals=16, outputs="top-1", batch_size=64,
                        progress=progress)
    return {"peak_rss_mib_by_images_done": marks}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same(a: Path, b: Path) -> bool:
    import numpy as np

    from shapjax.pipeline import load_results

    ra, rb = load_results(a), load_results(b)
    return all(np.array_equal(ra.fields[f][...], rb.fields[f][...]) for f in ra.fields)


def run(*, quick: bool, mnist: Path, out_dir: Path) -> Path:
    from benchmarks import common

    sizes = (100, 1000) if quick else (1000, 10000)
    subset = 64 if quick else 512
    tmp = Path(tempfile.mkdtemp(prefix="shapjax-dataset-bench-"))
    result = {"config": {**CFG, "model": "mnist-cnn", "sizes": sizes, "subset": subset, "quick": quick}}
    try:
        images, labels = _plain_idx(mnist, tmp)
        common.log("forward-pass ceiling")
        result["forward"] = forward_ceiling()
        cli = {}
        for n in sizes:
            common.log(f"shapjax explain on {n} MNIST test images")
            cli[str(n)] = _child(["cli", str(images), str(labels), str(n), str(tmp / f"cli{n}")])
            common.log(f"  {cli[str(n)]}")
        result["cli"] = cli
        big = cli[str(sizes[-1])]
        result["ceiling_images_per_second"] = result["forward"]["evals_per_second"] / big["evals_per_image"]
        result["ratio_to_ceiling"] = big["images_per_second"] / result["ceiling_images_per_second"]
        result["rss_growth"] = big["peak_rss_mib"] / cli[str(sizes[0])]["peak_rss_mib"] - 1

        dev = {}
        for d in (1, 2, 4):
            common.log(f"{subset} images on {d} forced host device(s)")
            dev[str(d)] = _child(["run", str(images), str(labels), str(subset), str(tmp / f"d{d}.zarr"), str(8 * d)],
                                 devices=d)
        for d in ("2", "4"):
            dev[d]["efficiency"] = dev["1"]["seconds"] / (int(d) * dev[d]["seconds"])
            dev[d]["equal_to_1_device"] = _same(tmp / "d1.zarr", tmp / f"d{d}.zarr")
        result["devices"] = dev

        common.log(f"{subset} images on 2 processes (coordinator 127.0.0.1)")
        addr = f"127.0.0.1:{_free_port()}"
        args = [str(images), str(labels), str(subset), str(tmp / "p2.zarr"), "8", addr, "2"]
        procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.dataset", "--child", "run", *args, str(p)],
                                  env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                 for p in (0, 1)]
        outs = [p.communicate(timeout=3600) for p in procs]
        for p, (o, e) in zip(procs, outs):
            if p.returncode != 0:
                raise RuntimeError(f"process failed:\n{o[-2000:]}\n{e[-3000:]}")
        parts = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
        t2 = max(p["seconds"] for p in parts)
        result["processes"] = {"1": dev["1"], "2": {"per_process": parts, "seconds": t2,
                                                    "efficiency": dev["1"]["seconds"] / (2 * t2),
                                                    "equal_to_1_process": _same(tmp / "d1.zarr", tmp / "p2.zarr")}}
        common.log("the pipeline's own memory: RSS every 1,000 images (tiny linear model)")
        result["rss_curve"] = _child(["rss_curve", str(images), str(labels)])
        common.log("per-image keys against the shared batch design")
        result["per_image_keys"] = per_image_key_cost(64 if quick else 128)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    name = "dataset_quick" if quick else "dataset"
    path = common.write_result(name, result, out_dir=out_dir)
    (Path(out_dir) / f"{name}.md").write_text(markdown(json.loads(path.read_text())))
    common.log(f"wrote {path} and {name}.md")
    return path


def _rss_curve_lines(r: dict) -> list[str]:
    if "rss_curve" not in r:
        return []
    marks = {int(k): v for k, v in r["rss_curve"]["peak_rss_mib_by_images_done"].items()}
    ks = sorted(marks)
    lo, hi = ks[0], ks[-1]
    per = (marks[hi] - marks[lo]) / max(1, hi - lo) * 1024
    return [f"The pipeline's own memory (the same source through `explain_dataset` with a tiny linear model, "
            f"so compilation and the model do not dominate): peak RSS {marks[lo]:.0f} MiB after {lo:,} images, "
            f"{marks[hi]:.0f} MiB after {hi:,}: {per:.2f} KiB per image, about the memory-mapped IDX file "
            "(784 bytes per image; file-backed pages count in RSS and are reclaimable). The CLI run's larger "
            "growth is not explained by the pipeline's buffers; the likely causes are allocator (glibc arena) "
            "growth over a long multi-threaded run on the loaded machine - not investigated further.", ""]


def markdown(r: dict) -> str:
    m, c, f = r["machine"], r["cli"], r["forward"]
    sizes = [str(s) for s in r["config"]["sizes"]]
    big = c[sizes[-1]]
    lines = [
        "# Whole datasets: `shapjax explain` through `explain_dataset`",
        "",
        f"Machine: {m['cpu_model']}, {m['cpu_cores_usable']} cores, JAX {m['versions']['jax']} ({m['jax_backend']}), "
        f"{m['date'][:10]}; load average at the end {', '.join(f'{v:.1f}' for v in m['load_average_end'])} "
        "(the machine is shared). Generated by `python -m benchmarks.dataset"
        f"{' --quick' if r['config']['quick'] else ''}`.",
        "",
        f"Configuration: mnist-cnn, {r['config']['segments']} (M = 49), masker {r['config']['masker']}, "
        f"{r['config']['method']}, {r['config']['n_evals']} evaluations per image, top-1 class.",
        "",
        "## The CLI on the MNIST test set",
        "",
        "| images | seconds (compile included) | images/s | evaluations/s | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for s in sizes:
        e = c[s]
        lines.append(f"| {int(s):,} | {e['seconds']:.1f} | {e['images_per_second']:.1f} | "
                     f"{e['evaluations_per_second']:,.0f} | {e['peak_rss_mib']:.0f} |")
    lines += [
        "",
        f"Forward-pass ceiling (the plain jitted forward at model batch {f['model_batch']}): "
        f"{f['evals_per_second']:,.0f} evaluations/s = {r['ceiling_images_per_second']:.1f} images/s at "
        f"{big['evals_per_image']} evaluations per image. The CLI reaches **{r['ratio_to_ceiling']:.2f}** of it "
        f"on {int(sizes[-1]):,} images (compilation, reading, segmenting, the regression and the store included).",
        "",
        f"Peak RSS grows by **{100 * r['rss_growth']:+.1f}%** from {int(sizes[0]):,} to {int(sizes[-1]):,} images "
        f"(goal: flat within 10%: {'met' if abs(r['rss_growth']) <= 0.10 else 'MISSED'}).",
        "",
        *_rss_curve_lines(r),
        f"## Devices and processes ({r['config']['subset']} images, steady state after a warm-up run)",
        "",
        "| run | seconds | parallel efficiency t1/(n tn) | store equal to 1 device |",
        "|---|---|---|---|",
        f"| 1 device | {r['devices']['1']['seconds']:.1f} | 1 | - |",
    ]
    for d in ("2", "4"):
        e = r["devices"][d]
        lines.append(f"| {d} forced host devices | {e['seconds']:.1f} | {e['efficiency']:.2f} | "
                     f"{'yes, bit for bit' if e['equal_to_1_device'] else 'NO'} |")
    p = r["processes"]["2"]
    lines += [
        f"| 2 processes x 1 device | {p['seconds']:.1f} | {p['efficiency']:.2f} | "
        f"{'yes, bit for bit' if p['equal_to_1_process'] else 'NO'} |",
        "",
        f"This machine has {m['cpu_cores_usable']} cores: forced host devices are threads of one CPU "
        "client sharing those cores (XLA's CPU backend already spreads one device's work over the cores), "
        "so more devices cannot beat one by much and 4 devices oversubscribe 2 cores; 2 processes each bring a "
        "full XLA thread pool to the same 2 cores. The efficiencies show the overhead of sharding, "
        "not a speed-up a real multi-device machine would see; what they do show is that the results are the "
        "same bit for bit.",
        "",
        "## The price of per-image keys",
        "",
    ]
    k = r["per_image_keys"]
    lines += [
        f"{k['n_images']} images at the same budget: `shapjax.explain` on batches of 8 (one coalition design "
        f"shared by the batch, the regression factored once) {k['shared_design_batches_of_8']:.2f} s; the "
        f"pipeline's per-image keys (each image its own design and factorisation, `lax.map` over the images) "
        f"{k['per_image_keys']:.2f} s: ratio **{k['ratio_per_image_over_shared']:.2f}**.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dataset", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100/1,000 images, a 64-image subset (a few minutes)")
    ap.add_argument("--mnist", type=Path, default=Path(os.environ.get("SHAPJAX_MNIST", SHARED_MNIST)),
                    help="folder with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--rss-curve-only", action="store_true", help="only add the pipeline's RSS curve to the results")
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        what, *rest = a.child
        fn = {"cli": child_cli, "run": child_run, "rss_curve": child_rss_curve}[what]
        conv = [int(v) if v.isdigit() else v for v in rest]
        print(json.dumps(fn(*conv)), flush=True)
        return 0
    if a.rss_curve_only:  # add the RSS curve to existing results and regenerate the markdown
        from benchmarks import common

        name = "dataset_quick" if a.quick else "dataset"
        path = a.out / f"{name}.json"
        rec = json.loads(path.read_text())
        with tempfile.TemporaryDirectory() as d:
            images, labels = _plain_idx(a.mnist, Path(d))
            rec["rss_curve"] = _child(["rss_curve", str(images), str(labels)])
        path.write_text(json.dumps(rec, indent=1, default=common._json_default) + "\n")
        (a.out / f"{name}.md").write_text(markdown(rec))
        return 0
    run(quick=a.quick, mnist=a.mnist, out_dir=a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
