"""`explain_dataset`: explain a whole dataset, streamed in batches, sharded over every device, stored resumably."""
from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.checks import check_int, check_key
from shapjax._util.outputs import parse_outputs
from shapjax.engine.estimators import get_estimator
from shapjax.engine.shapley import check_budget
from shapjax.image.maskers import Masker, get_masker
from shapjax.image.segment import Segmenter, check_segments, get_segmenter
from shapjax.pipeline import program as pg
from shapjax.pipeline.distributed import barrier, process
from shapjax.pipeline.sources import Source, as_source
from shapjax.pipeline.store import ResultStore, SettingsMismatch, is_store

log = logging.getLogger(__name__)

#: images segmented up front to size the segment axis of superpixel runs (and the 'mean' masker)
PROBE = 32


class Progress(NamedTuple):
    """What :func:`explain_dataset` reports after each written batch (its ``progress`` callback)."""

    done: int            # images done in the store (this process's view: earlier runs + this one)
    total: int           # images in the dataset
    explained: int       # images explained by this process in this run
    todo: int            # images this process had to explain when the run started
    seconds: float       # since the first batch was dispatched (compilation included)
    evals: int           # model evaluations spent by this process in this run


class Report(NamedTuple):
    """The result of :func:`explain_dataset`."""

    store: Path
    total: int           # images in the dataset
    explained: int       # explained by this process in this run
    skipped: int         # already done before this run (this process's chunks)
    done: int            # done in the store when this process finished
    seconds: float
    images_per_second: float
    evals_per_image: int  # with tol: the mean over the images explained in this run (rounded)
    settings: dict
    notes: list          # warnings said during the run (conversions, budgets, segment counts)
    evaluations: int = 0  # model evaluations (coalitions) spent by this process in this run


# --------------------------------------------------------------------------- helpers


def model_identity(model, *, name: Optional[str] = None) -> dict:
    """``{"name", "params"}``: what a stored run was computed with (the weights' SHA-256, when it has weights)."""
    _, tree = pg.split_model(model)
    fn = getattr(model, "func", model)  # a Partial's function
    label = name or getattr(model, "name", None) or getattr(fn, "__qualname__", None) or type(fn).__name__
    h = hashlib.sha256()
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(tree) if hasattr(leaf, "shape")]
    for leaf in leaves:
        a = np.asarray(leaf)
        h.update(str((a.shape, a.dtype)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return {"name": str(label), "params": h.hexdigest()[:16] if leaves else None}


def _input_shape(model, source: Source, input_shape):
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return tuple(int(s) for s in shape)
    native = source.native_shape()
    if native is None:
        raise ValueError("input_shape: the model has no input_shape and the source's first image gives none; "
                         "pass input_shape=(H, W, C)")
    return native


def _segmenter(segments):
    if isinstance(segments, str):
        return get_segmenter(segments), None
    if isinstance(segments, Segmenter):
        return segments, None
    if callable(segments):
        raise TypeError("segments: expected a segmenter from shapjax.segment, a spec such as 'grid:8x8', or an "
                        "int array [H, W] shared by every image")
    arr = np.asarray(segments)
    if arr.ndim != 2:
        raise ValueError(f"segments: an array of segment ids must be [H, W] (shared by every image); got shape "
                         f"{arr.shape}; use a segmenter for per-image segments")
    return None, arr


def _asked_segments(seg: Segmenter):
    return getattr(seg, "n_segments", None) if seg.fixed_n_segments is None else None


def _check_model_output(model, shape) -> int:
    try:
        out = jax.eval_shape(model, jax.ShapeDtypeStruct((2, *shape), jnp.float32))
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"model failed on images of shape [N, H, W, C] = {(2, *shape)}: {type(e).__name__}: {e}"
                         ) from e
    if getattr(out, "ndim", None) != 2 or out.shape[0] != 2:
        raise ValueError(f"model must map images [N, H, W, C] to outputs [N, K]; got {getattr(out, 'shape', out)}")
    return int(out.shape[1])


def _describe_outputs(outputs) -> Any:
    if outputs is None or isinstance(outputs, (str, int)):
        return outputs
    a = np.asarray(outputs)
    if a.ndim == 1:
        return a.astype(int).tolist()
    return f"per-image array {list(a.shape)} sha256:{hashlib.sha256(a.astype(np.int64).tobytes()).hexdigest()[:16]}"


def _say(notes: list, msg: str) -> None:
    notes.append(msg)
    log.warning(msg)


# --------------------------------------------------------------------------- the job


def explain_dataset(
    model,
    source,
    *,
    key,
    store,
    segments,
    masker,
    method: str = "kernel",
    n_evals: int = 2048,
    outputs=None,
    batch_size: Optional[int] = None,
    model_batch: Optional[int] = None,
    n_segments: Optional[int] = None,
    chunk: Optional[int] = None,
    store_images: bool = False,
    overwrite: bool = False,
    input_shape=None,
    resize: bool = True,
    model_name: Optional[str] = None,
    devices=None,
    mode: Optional[str] = None,
    progress: Optional[Callable[[Progress], None]] = None,
    extra_settings: Optional[dict] = None,
    tol: Optional[float] = None,
    round_evals: Optional[int] = None,
) -> Report:
    """Explain every image of a data source and write the results to a resumable on-disk store.

    Images stream from ``source`` in batches (memory stays flat in the
    dataset's size); every batch is sharded over the local devices on its
    image axis (a 1-D ``Mesh`` named ``"images"``, ``NamedSharding``; the model
    replicated) and each image ``i`` is explained with its own key
    ``fold_in(key, i)``, so its values do not depend on the batch size, the
    device or process count, or interruptions: image ``i``'s result equals
    ``shapjax.explain(model, x[i:i+1], key=fold_in(key, i), ...)``. Results go to
    the zarr v3 store ``store`` (layout: :mod:`shapjax.pipeline.store`) as each
    batch finishes, its ``done`` flags last.

    Rerunning on the same store explains only the images not done (an
    interrupted run, even by ``kill -9``, loses at most the batches in
    flight); a store holding results of other settings is refused with an
    error naming each difference, unless ``overwrite=True``. In a multi-process
    run (:func:`shapjax.pipeline.initialize` first) every process calls this with
    the same arguments and explains and writes its own chunks of the one store.

    Args:
      model: ``images [N, H, W, C] -> [N, n_classes]`` (a :class:`shapjax.models.Classifier`,
        a ``Partial``, or any JAX callable).
      source: a folder, an image path, ``"idx:IMAGES[,LABELS]"``, ``"tfds:NAME:SPLIT[:N]"``,
        ``"samples:NAME[:N]"``, a Grain ``MapDataset``, any ``(len, getitem)`` object, an
        array ``[N, H, W, C]``, a list of those, or a :class:`shapjax.pipeline.Source`.
      key: JAX PRNG key; image ``i`` uses ``fold_in(key, i)``.
      store: path of the results store (a folder, e.g. ``"out/results.zarr"``).
      segments: a segmenter (``shapjax.segment.grid(7, 7)``, ``slic(50)``...), its spec
        (``"grid:7x7"``) or an int array ``[H, W]`` shared by every image.
      masker: a masker from :mod:`shapjax.maskers` or its spec (``"blur:5"``; ``"mean"``
        takes the mean colour of the first 32 images).
      method, n_evals, outputs: as in :func:`shapjax.explain`; ``outputs`` may also be an
        ``[N, K]`` int array (per image of the dataset).
      batch_size: images per batch (default 8 per local device; rounded up to a multiple of
        the device count times the image group of the program; the last batch is padded).
      model_batch: composed images per model call (default: :func:`shapjax.explain`'s choice).
      n_segments: segment axis M for superpixels (default: 1.5x the largest count of the
        first 32 images; an image with more segments is an error naming this option).
      chunk: images per store chunk (default ``min(64, max(1, N // 8))``; fixed at creation).
      store_images: also store the explained images ``[N, H, W, C]``.
      overwrite: remove an existing store first.
      input_shape: the model's ``(H, W, C)`` (default ``model.input_shape``, else the first image's).
      resize: resize images to the model's input (else a size mismatch is an error).
      model_name: the model's name in the store's settings (default its ``name``).
      devices: local devices to use (default all).
      mode: ``"map"`` (default): one program per batch, ``jax.shard_map`` over the mesh with ``lax.map``
        over each device's images; ``"dispatch"``: one program call per image on the device its
        ``NamedSharding`` block would give it (asynchronous dispatch). The values agree to float rounding
        (different compiled programs); within one mode they do not depend on batch size or device count.
      progress: called with a :class:`Progress` after every written batch.
      extra_settings: more settings to record and compare on resume (e.g. the CLI's ``score``).
      tol, round_evals: the to-tolerance mode of :func:`shapjax.explain`, per image: each image runs
        rounds until its relative standard error is at most ``tol`` (``n_evals`` is the cap); the
        store then also holds ``evals [N]`` (evaluations each image spent) and ``rse [N]``.

    Returns:
      :class:`Report`; the results are read with :func:`shapjax.load_results`.

    Example:
      >>> clf = shapjax.models.pretrained("mnist-cnn")                         # doctest: +SKIP
      >>> shapjax.explain_dataset(clf, "idx:t10k-images-idx3-ubyte", key=jax.random.key(0),
      ...     store="out/results.zarr", segments="grid:7x7", masker="constant:0",
      ...     method="kernel", n_evals=512, outputs="top-1")                   # doctest: +SKIP
      >>> shapjax.load_results("out/results.zarr")[:4].values.shape           # doctest: +SKIP
      (4, 49, 1)
    """
    check_key(key)
    n_evals = check_int(n_evals, "n_evals", 1)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    if model_batch is not None:
        model_batch = check_int(model_batch, "model_batch", 1)
    est = get_estimator(method)
    src = as_source(source)
    shape = _input_shape(model, src, input_shape)
    src.with_shape(shape, resize=resize)
    N = len(src)
    if N < 1:
        raise ValueError("source: no images to explain")
    n_classes = _check_model_output(model, shape)
    pid, P = process()
    notes: list[str] = []

    # ---- players, masker, outputs (a probe of the first images sizes superpixel runs)
    segmenter, fixed = _segmenter(segments)
    probe = None
    if fixed is not None or segmenter.fixed_n_segments is not None:
        grid = fixed if fixed is not None else segmenter(np.zeros((1, *shape), np.float32))[0]
        grid, M = check_segments(grid, np.zeros((1, *shape), np.float32))
        grid = grid[0]
        if n_segments is not None and n_segments != M:
            raise ValueError(f"n_segments={n_segments}: the segments define {M} players")
    else:
        grid = None
        probe = src.read(np.arange(min(N, PROBE))).images
        counts = np.asarray([int(s.max()) + 1 for s in segmenter(probe)])
        asked = _asked_segments(segmenter)
        if asked is not None and counts.mean() < 0.7 * asked:
            _say(notes, f"segments: {segmenter.describe()} asked for {asked} segments but gives {counts.min()}-"
                        f"{counts.max()} (mean {counts.mean():.0f}) on the first {len(counts)} images")
        if counts.min() < 4:
            _say(notes, f"segments: {segmenter.describe()} gives only {counts.min()} segments on some images "
                        "(e.g. image {}): too few players to say much; use more/smaller segments or a grid"
                        .format(int(np.argmin(counts))))
        M = int(n_segments) if n_segments is not None else int(math.ceil(1.5 * counts.max())) + 1
        if M < counts.max():
            raise ValueError(f"n_segments={M} is smaller than the {counts.max()} segments of image "
                             f"{int(np.argmax(counts))}")
    if isinstance(masker, str):
        if masker.strip().lower() == "mean" and probe is None:
            probe = src.read(np.arange(min(N, PROBE))).images
        masker = get_masker(masker, images=probe)
    if not isinstance(masker, Masker):
        raise TypeError(f"masker: expected a masker from shapjax.maskers or a spec such as 'blur:5'; got "
                        f"{type(masker).__name__}")
    masker.check(np.zeros((1, *shape), np.float32))
    check_budget(est, M, n_evals, f"{M} segments")
    if tol is not None:
        from shapjax.engine.rounds import check_tol

        tol, round_evals = check_tol(tol, est, M, n_evals, round_evals, players=f"{M} segments")
    else:
        round_evals = None
    spec = parse_outputs(outputs, n_classes=n_classes, batch=N)
    per_image_outputs = spec.mode == "given" and np.asarray(outputs).ndim == 2

    # ---- the compiled program
    mesh = pg.local_mesh(devices)
    D = mesh.devices.size
    static_fn, model_tree = pg.split_model(model)
    plan = pg.make_plan(static_fn, n_segments=M, method=method, n_evals=n_evals, out_mode=spec.mode, k=spec.k,
                        pixels=int(np.prod(shape)), n_replacements=masker.n_replacements(), batch_size=model_batch,
                        masked=grid is None, tol=tol, round_evals=round_evals)
    B = batch_size or 8 * D
    B = int(math.ceil(B / (D * plan.group)) * D * plan.group)  # every device gets whole groups
    if plan.used_evals != n_evals and tol is None:
        _say(notes, f"n_evals: method={method!r} spends {plan.used_evals} of the {n_evals} evaluations asked per "
                    f"image with {M} segments" + (" (its schedule expands whole tree levels)"
                                                  if method == "partition" else ""))
    has_std = _has_std(plan, shape, masker, model_tree, spec)

    settings = {
        "model": model_identity(model, name=model_name), "method": method, "n_evals": n_evals,
        "used_evals": plan.used_evals, "masker": masker.describe(),
        "segments": segmenter.describe() if segmenter is not None else f"fixed array {list(grid.shape)} "
        f"sha256:{hashlib.sha256(np.ascontiguousarray(grid).tobytes()).hexdigest()[:16]}",
        "n_segments": M, "model_batch": plan.batch_size, "program": mode or "map",
        "outputs": _describe_outputs(outputs), "seed": np.asarray(jax.random.key_data(key))
        .reshape(-1).tolist(), "source": src.describe(), "n_images": N, "input_shape": list(shape),
        "resize": bool(resize), "store_images": bool(store_images),
        "shapjax_version": _version(), **(extra_settings or {}),
    }
    if tol is not None:  # only then: stores of fixed-budget runs keep their settings
        settings.update(tol=tol, round_evals=round_evals)
    store_path = Path(store)
    st = _open_store(store_path, settings=settings, overwrite=overwrite, pid=pid, P=P, n=N, M=M, k=spec.k,
                     shape=shape, n_classes=n_classes, has_std=has_std, grid=grid, store_images=store_images,
                     chunk=chunk or max(1, min(64, N // 8)), has_evals=tol is not None)
    todo = st.pending(pid, P)
    skipped = len(st.owned(pid, P)) - len(todo)
    if skipped:
        log.info("%s: %d of this process's %d images already done; explaining the other %d", store_path,
                 skipped, len(st.owned(pid, P)), len(todo))

    mode = mode or "map"
    if mode not in ("map", "dispatch"):
        raise ValueError(f"mode: expected 'map' or 'dispatch', got {mode!r}")
    masker_dev = pg.replicate(mesh, masker)
    model_dev = pg.replicate(mesh, model_tree)
    prog = pg.program(plan, mesh) if mode == "map" else pg.one_image_program(plan)
    local_devices = list(mesh.devices.flat)
    per_device = [(jax.device_put(masker, d), jax.device_put(model_tree, d)) for d in local_devices] \
        if mode == "dispatch" else None
    out_all = None if spec.mode != "given" else np.asarray(spec.index)

    def prepare(idx: np.ndarray):
        batch = src.read(idx)
        x = batch.images
        if grid is not None:
            seg = np.broadcast_to(grid, (len(idx), *grid.shape))
        else:
            seg = segmenter(x)
            too_many = [int(s.max()) + 1 for s in seg]
            j = int(np.argmax(too_many))
            if too_many[j] > M:
                raise ValueError(f"segments: image {idx[j]} ({batch.ids[j]}) has {too_many[j]} segments, more than "
                                 f"the store's n_segments={M}; rerun with a larger n_segments (a new store)")
        b = len(idx)
        n_used = np.asarray([len(np.unique(s)) for s in seg], np.int32) if grid is None else np.full(b, M, np.int32)
        active = None
        if plan.masked:
            active = np.stack([np.bincount(s.reshape(-1), minlength=M)[:M] > 0 for s in seg])
        trees = pg.trees_of(np.asarray(seg), M) if plan.partition else None
        o = None if out_all is None else (out_all[idx] if per_image_outputs else out_all[:b])
        pad = lambda a: pg.pad_rows(a, B)  # noqa: E731
        host = (pad(np.asarray(idx)), pad(x), pad(np.ascontiguousarray(seg, np.int32)), pad(o), pad(active),
                pad(trees))
        return idx, batch, np.asarray(seg), n_used, host

    def dispatch(prepared):
        idx, batch, seg, n_used, (pidx, x, s, o, a, t) = prepared
        keys = pg.image_keys(pidx, key=key)
        if mode == "map":
            args = pg.shard(mesh, (keys, x, s, o, a, t))
            return prepared, pg.run(plan, prog, *args, masker_dev, model_dev)
        outs, rows = [], B // D  # device j explains rows j*rows..(j+1)*rows-1, as P("images") would place them
        for r in range(len(idx)):
            dev = local_devices[r // rows]
            m_d, t_d = per_device[r // rows]
            row = lambda a: None if a is None else jax.device_put(a[r], dev)  # noqa: E731
            tree_r = None if t is None else pg.Tree(*(jax.device_put(v[r], dev) for v in t))
            outs.append(prog(jax.device_put(keys[r], dev), row(x), row(s), row(o), row(a), tree_r, m_d, t_d))
        return prepared, outs

    def write(prepared, out):
        idx, batch, seg, n_used, _ = prepared
        b = len(idx)
        if isinstance(out, list):  # dispatch mode: one result per image
            out = [None if f[0] is None else np.stack([np.asarray(a) for a in f]) for f in zip(*out)]
        phi, std, v0, v1, oi, logits, *info = (None if a is None else np.asarray(a)[:b] for a in out)
        ev, rse = info if info else (np.full(b, plan.used_evals, np.int64), None)
        spent[0] += int(np.sum(ev))
        if not (np.isfinite(phi).all() and np.isfinite(v0).all() and np.isfinite(v1).all()):
            bad = idx[~(np.isfinite(phi).all((1, 2)) & np.isfinite(v0).all(1) & np.isfinite(v1).all(1))]
            raise ValueError(f"model returned NaN or infinite values (or method={method!r} is singular with "
                             f"n_evals={n_evals}) on images {bad[:10].tolist()}; nothing was written for them")
        st.write(idx, dict(values=phi, std=std, base_values=v0, full_values=v1, output_indexes=oi,
                           model_outputs=logits, segments=seg, n_segments=n_used,
                           images=batch.images if store_images else None, ids=np.asarray(batch.ids, dtype=object),
                           labels=batch.labels, evals=ev if info else None, rse=rse))

    # ---- stream: read+segment the next batch while the device explains this one, write the last one
    t0, explained, done0 = time.perf_counter(), 0, st.n - len(st.pending(0, 1))
    batches = [todo[i:i + B] for i in range(0, len(todo), B)]
    reported = set()
    spent = [0]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="shapjax-read") as pool:
        nxt = pool.submit(prepare, batches[0]) if batches else None
        inflight = None
        for i in range(len(batches)):
            prepared = nxt.result()
            nxt = pool.submit(prepare, batches[i + 1]) if i + 1 < len(batches) else None
            for m in src.notes.report(shape[:2]):
                if m not in reported:
                    notes.append(m)
                    reported.add(m)
            cur = dispatch(prepared)
            if inflight is not None:
                write(*inflight)
                explained += len(inflight[0][0])
                _tick(progress, done0 + explained, N, explained, len(todo), t0, spent[0])
            inflight = cur
        if inflight is not None:
            write(*inflight)
            explained += len(inflight[0][0])
            _tick(progress, done0 + explained, N, explained, len(todo), t0, spent[0])
    seconds = time.perf_counter() - t0
    done = int(st.done_mask().sum())
    return Report(store=store_path, total=N, explained=explained, skipped=skipped, done=done, seconds=seconds,
                  images_per_second=explained / seconds if seconds > 0 else 0.0,
                  evals_per_image=plan.used_evals if tol is None else int(round(spent[0] / max(explained, 1))),
                  settings=st.settings, notes=notes, evaluations=spent[0])


def _tick(progress, done, total, explained, todo, t0, spent):
    if progress is not None:
        progress(Progress(done=done, total=total, explained=explained, todo=todo,
                          seconds=time.perf_counter() - t0, evals=spent))


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("shapjax")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _has_std(plan, shape, masker, model_tree, spec) -> bool:
    """Whether the method returns standard errors (from the program's shapes; nothing is computed)."""
    from shapjax.image.explain import explain_one_image

    M = plan.n_segments
    H, W, C = shape
    f32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)  # noqa: E731
    tree = None
    if plan.partition:
        t = pg.trees_of(np.zeros((1, H, W), np.int32) + (np.arange(H * W).reshape(1, H, W) % M), M)
        tree = pg.Tree(*(a[0] for a in t))
    out = jax.eval_shape(
        lambda k, x, s, o, a: explain_one_image(x, s, masker, o, a, tree, model_tree, key=k, model_fn=plan.model_fn,
                                                n_segments=M, method=plan.method, n_evals=plan.n_evals,
                                                batch_size=plan.batch_size, out_mode=plan.out_mode, k=plan.k,
                                                ks=plan.ks, tol=plan.tol, round_evals=plan.round_evals),
        jax.random.key(0), f32(H, W, C), jax.ShapeDtypeStruct((H, W), jnp.int32),
        None if spec.mode != "given" else jax.ShapeDtypeStruct((spec.k,), jnp.int32),
        jax.ShapeDtypeStruct((M,), jnp.bool_) if plan.masked else None)
    return out[1] is not None


_BARRIERS = [0]


def _open_store(path: Path, *, settings, overwrite, pid, P, n, M, k, shape, n_classes, has_std, grid,
                store_images, chunk, has_evals=False) -> ResultStore:
    """Process 0 creates (or checks) the store; then every process opens and checks it."""
    _BARRIERS[0] += 1
    name = f"shapjax-store-{_BARRIERS[0]}"
    error = None
    if pid == 0:
        try:
            if overwrite or not path.exists() or (path.is_dir() and not any(path.iterdir())):
                ResultStore.create(path, settings=settings, n=n, n_segments=M, k=k, image_shape=shape,
                                   n_classes=n_classes, has_std=has_std, grid_segments=grid,
                                   store_images=store_images, chunk=chunk, overwrite=overwrite or path.exists(),
                                   has_evals=has_evals)
            elif not is_store(path):
                raise ValueError(f"store: {path} exists and is not a shapjax results store (choose another path)")
            else:
                st = ResultStore.open(path, mode="r+")
                st.check_settings(settings)
                if st.clean_partial_files():
                    log.info("%s: removed temporary files of an interrupted write", path)
        except Exception as e:  # noqa: BLE001 - every process must leave the barrier
            error = e
    barrier(name, marker=path.parent / f".{path.name}.ready")
    if error is not None:
        raise error
    st = ResultStore.open(path, mode="r+")
    try:
        st.check_settings(settings)
    except SettingsMismatch:
        raise
    return st
