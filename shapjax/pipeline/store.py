"""The results store of :func:`shapjax.explain_dataset`: a zarr v3 group, one chunked array per field.

Layout of ``PATH`` (a zarr v3 group; every array chunked along the image axis,
``chunk`` images per chunk file)::

    values          [N, M, K] float32   attribution of segment m to explained output k
    std             [N, M, K] float32   standard errors (methods that define them)
    base_values     [N, K]    float32   v(empty): every segment masked
    full_values     [N, K]    float32   v(all): the unmasked image
    output_indexes  [N, K]    int32     which model output column k explains
    model_outputs   [N, C]    float32   the model's outputs on the unmasked image (every class)
    segments        [N, H, W] int32     per image (superpixels), or [H, W] once (a grid)
    n_segments      [N]       int32     segments the image really uses (<= M)
    evals           [N]       int32     evaluations the image spent (only with tol=: to-tolerance runs)
    rse             [N]       float32   relative standard error it reached (only with tol=)
    images          [N, H, W, C] float32  the explained images (only with store_images=True)
    ids             [N]       str       file path / dataset index of each image
    labels          [N]       int32     ground-truth label (-1 unknown)
    done            [N]       bool      written last: True = every field of that image is complete

and the group attribute ``shapjax`` = ``{"format", "settings", "layout"}``: the
run's settings (model identity, method, budget asked and used, masker,
segments, outputs, seed, source, shapjax version) and the shapes.

Exactly once: a batch's fields are written first, its ``done`` flags last.
zarr-python writes every chunk file to a temporary name and renames it into
place (``LocalStore``), so a ``kill -9`` leaves each chunk either old or new,
never torn; an image whose ``done`` flag is unset is explained again on the next
run, and one whose flag is set has every field written. Each chunk is written by
one process only (process ``p`` of ``P`` owns the chunks ``c`` with
``c % P == p``), so processes never overwrite each other's chunks.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "shapjax.results/1"
#: fields with a row per image, in write order (done is always last)
ROW_FIELDS = ("values", "std", "base_values", "full_values", "output_indexes", "model_outputs", "segments",
              "n_segments", "evals", "rse", "images", "ids", "labels")


def _zarr():
    try:
        import zarr
    except ImportError as e:  # pragma: no cover - zarr is a dependency
        raise ImportError("the results store needs zarr-python 3: pip install 'zarr>=3.1'") from e
    if int(zarr.__version__.split(".")[0]) < 3:  # pragma: no cover
        raise ImportError(f"the results store needs zarr-python >= 3.1 (zarr v3 format); found {zarr.__version__}")
    return zarr


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def settings_difference(stored: dict, wanted: dict) -> list[str]:
    """The settings that differ, one ``"name: stored X, this run Y"`` string each."""
    out = []
    for k in sorted(set(stored) | set(wanted)):
        a, b = stored.get(k, "(unset)"), wanted.get(k, "(unset)")
        if a != b:
            out.append(f"{k}: {a!r} in the store, {b!r} in this run")
    return out


class SettingsMismatch(ValueError):
    """A store holds results of other settings (the message names every difference)."""


def is_store(path) -> bool:
    p = Path(path)
    if not (p / "zarr.json").is_file():
        return False
    try:
        return "shapjax" in json.loads((p / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False


class ResultStore:
    """Read/write access to one results store (see the module docstring for the layout)."""

    def __init__(self, group, path):
        self.group = group
        self.path = Path(path)
        meta = dict(group.attrs).get("shapjax")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"store: {path} is not a shapjax results store (no 'shapjax' attribute of format "
                             f"{FORMAT!r})")
        self.meta = meta
        self.settings: dict = meta["settings"]
        self.layout: dict = meta["layout"]

    # ----------------------------------------------------------- create / open

    @classmethod
    def create(cls, path, *, settings: dict, n: int, n_segments: int, k: int, image_shape, n_classes: int,
               has_std: bool, grid_segments: Optional[np.ndarray], store_images: bool, chunk: int,
               overwrite: bool = False, has_evals: bool = False) -> "ResultStore":
        """A new empty store (``overwrite=True`` removes an existing one first)."""
        zarr = _zarr()
        path = Path(path)
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"store: {path} exists (pass overwrite=True to start over)")
            if not is_store(path) and any(path.iterdir()):
                raise ValueError(f"store: {path} exists and is not a shapjax results store; not removing it")
            shutil.rmtree(path)
        H, W, C = (int(s) for s in image_shape)
        N, M, K, ch = int(n), int(n_segments), int(k), int(max(1, min(chunk, n)))
        g = zarr.open_group(str(path), mode="w-", zarr_format=3)

        def arr(name, shape, dtype, fill):
            g.create_array(name, shape=shape, chunks=(ch,) + tuple(shape[1:]), dtype=dtype, fill_value=fill)

        arr("values", (N, M, K), "float32", 0.0)
        if has_std:
            arr("std", (N, M, K), "float32", 0.0)
        for f in ("base_values", "full_values"):
            arr(f, (N, K), "float32", 0.0)
        arr("output_indexes", (N, K), "int32", -1)
        arr("model_outputs", (N, int(n_classes)), "float32", 0.0)
        if grid_segments is None:
            arr("segments", (N, H, W), "int32", -1)
        else:
            a = g.create_array("segments", shape=(H, W), chunks=(H, W), dtype="int32", fill_value=-1)
            a[...] = np.asarray(grid_segments, np.int32)
        arr("n_segments", (N,), "int32", 0)
        if has_evals:
            arr("evals", (N,), "int32", 0)
            arr("rse", (N,), "float32", 0.0)
        if store_images:
            arr("images", (N, H, W, C), "float32", 0.0)
        arr("ids", (N,), str, "")
        arr("labels", (N,), "int32", -1)
        arr("done", (N,), "bool", False)
        layout = dict(n=N, n_segments=M, k=K, image_shape=[H, W, C], n_classes=int(n_classes), chunk=ch,
                      has_std=bool(has_std), per_image_segments=grid_segments is None,
                      store_images=bool(store_images))
        g.attrs["shapjax"] = _jsonable({"format": FORMAT, "settings": settings, "layout": layout})
        log.info("created results store %s: %d images, %d segments, %d outputs, chunks of %d", path, N, M, K, ch)
        return cls(g, path)

    @classmethod
    def open(cls, path, *, mode: str = "r") -> "ResultStore":
        zarr = _zarr()
        path = Path(path)
        if not is_store(path):
            raise FileNotFoundError(f"store: {path} is not a shapjax results store (no {path / 'zarr.json'} "
                                    "with a 'shapjax' attribute)")
        return cls(zarr.open_group(str(path), mode=mode, zarr_format=3), path)

    def check_settings(self, settings: dict, *, hint: str = "pass overwrite=True to start over") -> None:
        """Raise :class:`SettingsMismatch` naming every difference between the stored and these settings."""
        diff = settings_difference(self.settings, _jsonable(settings))
        if diff:
            raise SettingsMismatch(f"store {self.path} holds results of other settings: " + "; ".join(diff)
                                   + f" ({hint}, or choose another store)")

    def clean_partial_files(self) -> int:
        """Remove the temporary ``*.partial`` chunk files a killed writer left behind; returns how many."""
        n = 0
        for p in self.path.rglob("*.partial"):
            p.unlink(missing_ok=True)
            n += 1
        return n

    # ----------------------------------------------------------- rows

    @property
    def n(self) -> int:
        return int(self.layout["n"])

    @property
    def chunk(self) -> int:
        return int(self.layout["chunk"])

    def done_mask(self) -> np.ndarray:
        return np.asarray(self.group["done"][...], bool)

    def owned(self, process_index: int, process_count: int) -> np.ndarray:
        """Global indexes in the chunks this process owns (chunk ``c`` belongs to process ``c % P``)."""
        idx = np.arange(self.n)
        return idx[(idx // self.chunk) % process_count == process_index]

    def pending(self, process_index: int = 0, process_count: int = 1) -> np.ndarray:
        """Indexes this process still has to explain (owned and not done), ascending."""
        own = self.owned(process_index, process_count)
        return own[~self.done_mask()[own]]

    def write(self, indexes: np.ndarray, fields: dict[str, Any]) -> None:
        """Write the rows ``indexes`` of every field, then flip their ``done`` flags (last)."""
        idx = np.asarray(indexes, np.int64)
        if idx.size == 0:
            return
        for name in ROW_FIELDS:
            if name not in fields or fields[name] is None or name not in self.group:
                continue
            if name == "segments" and not self.layout["per_image_segments"]:
                continue
            self._put(name, idx, np.asarray(fields[name]))
        self._put("done", idx, np.ones(idx.shape, bool))

    def _put(self, name: str, idx: np.ndarray, data: np.ndarray) -> None:
        a = self.group[name]
        if idx.size > 1 and np.all(np.diff(idx) == 1):
            a[int(idx[0]):int(idx[-1]) + 1] = data
        else:
            a.oindex[idx] = data


# --------------------------------------------------------------------------- reading


class Results:
    """A results store opened lazily: :func:`load_results`.

    Every field is a lazy zarr array (``res.values[10:20]`` reads only those
    chunks); ``res[i]`` / ``res[i:j]`` / ``res[[i, j]]`` gives an
    :class:`shapjax.Explanation` of those images; ``res.done`` marks the
    complete rows, ``res.settings`` the run's settings.
    """

    def __init__(self, store: ResultStore):
        self._store = store
        self.path = store.path
        self.settings = store.settings
        self.layout = store.layout
        g = store.group
        self.fields = {name: g[name] for name in (*ROW_FIELDS, "done") if name in g}

    def __getattr__(self, name):
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        if name == "std":
            return None
        raise AttributeError(f"results have no field {name!r}; fields: {sorted(fields)}")

    def __len__(self) -> int:
        return self._store.n

    @property
    def n_done(self) -> int:
        return int(self._store.done_mask().sum())

    @property
    def complete(self) -> bool:
        return self.n_done == len(self)

    def __repr__(self) -> str:
        s = self.settings
        return (f"Results({str(self.path)!r}, {self.n_done}/{len(self)} done, method={s.get('method')!r}, "
                f"values={tuple(self.fields['values'].shape)})")

    def _rows(self, index) -> np.ndarray:
        n = len(self)
        if isinstance(index, (int, np.integer)):
            i = int(index) + (n if index < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {index} out of range for {n} images")
            return np.asarray([i])
        if isinstance(index, slice):
            return np.arange(n)[index]
        idx = np.asarray(index)
        if idx.dtype == bool:
            return np.flatnonzero(idx)
        return np.where(idx < 0, idx + n, idx).astype(np.int64)

    def __getitem__(self, index):
        """An :class:`shapjax.Explanation` of the selected images (only complete rows: others raise)."""
        import jax.numpy as jnp

        from shapjax.image.explanation import Explanation

        rows = self._rows(index)
        done = self.fields["done"].oindex[rows] if rows.size else np.zeros(0, bool)
        if not np.all(done):
            raise ValueError(f"images {rows[~done][:10].tolist()} are not explained yet "
                             f"({self.n_done}/{len(self)} done: rerun explain_dataset on {self.path} to finish)")
        get = lambda name: np.asarray(self.fields[name].oindex[rows])  # noqa: E731
        seg = self.fields["segments"]
        if self.layout["per_image_segments"]:
            segments = get("segments")
        else:
            segments = np.broadcast_to(np.asarray(seg[...]), (rows.size, *seg.shape))
        images = get("images") if "images" in self.fields else None
        s = self.settings
        return Explanation(
            values=jnp.asarray(get("values")), base_values=jnp.asarray(get("base_values")),
            full_values=jnp.asarray(get("full_values")),
            std=jnp.asarray(get("std")) if "std" in self.fields else None, segments=jnp.asarray(segments),
            images=None if images is None else jnp.asarray(images), output_indexes=jnp.asarray(get("output_indexes")),
            evals=jnp.asarray(get("evals")) if "evals" in self.fields else None,
            rse=jnp.asarray(get("rse")) if "rse" in self.fields else None,
            method=str(s.get("method", "")), masker=str(s.get("masker", "")), n_evals=int(s.get("used_evals", 0)))


def load_results(path) -> Results:
    """Open a results store written by :func:`shapjax.explain_dataset` (lazily; nothing is read yet).

    Args:
      path: the store folder (``results.zarr``).

    Returns:
      :class:`Results`: ``res.values`` ``[N, M, K]``, ``res.std``,
      ``res.base_values`` / ``res.full_values`` / ``res.output_indexes``
      ``[N, K]``, ``res.model_outputs`` ``[N, n_classes]``, ``res.segments``,
      ``res.n_segments`` ``[N]``, ``res.ids``, ``res.labels``, ``res.done``
      ``[N]`` (lazy zarr arrays), ``res.settings``; ``res[i:j]`` is an
      :class:`shapjax.Explanation`.

    Example:
      >>> res = shapjax.load_results("out/results.zarr")    # doctest: +SKIP
      >>> res[:4].values.shape                              # doctest: +SKIP
      (4, 49, 3)
    """
    return Results(ResultStore.open(path, mode="r"))
