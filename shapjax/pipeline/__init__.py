"""Whole datasets: stream a source in batches, shard them over every device, store the results resumably.

* :func:`explain_dataset` - explain every image of a source into a zarr v3 store
  (resumable, exactly once, one key ``fold_in(key, i)`` per image).
* :func:`load_results` - open a store lazily; ``res[i:j]`` is an :class:`shapjax.Explanation`.
* :func:`as_source` and the sources (:class:`Files`, :class:`Indexable`, :class:`Concat`,
  :class:`Head`, :func:`idx_source`, :func:`tfds_source`) - streaming random access to images.
* :func:`initialize` - join a multi-process run (``jax.distributed``).

How it fits together: ``docs/pipeline.md``.
"""
from shapjax.pipeline.dataset import Progress, Report, explain_dataset, model_identity
from shapjax.pipeline.distributed import initialize, process
from shapjax.pipeline.program import local_mesh
from shapjax.pipeline.sources import Batch, Concat, Files, Head, Indexable, Source, as_source, idx_source, tfds_source
from shapjax.pipeline.store import Results, ResultStore, SettingsMismatch, load_results

__all__ = ["explain_dataset", "load_results", "Results", "ResultStore", "SettingsMismatch", "Report", "Progress",
           "as_source", "Source", "Batch", "Files", "Indexable", "Concat", "Head", "idx_source", "tfds_source",
           "initialize", "process", "local_mesh", "model_identity"]
