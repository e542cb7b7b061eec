"""The spatial hierarchy of an image's segments: the partition tree the Owen (``partition``) estimator walks."""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np


class PartitionTree(NamedTuple):
    """A binary hierarchy over ``M`` segments (a pytree of numpy arrays).

    Node layout (``2M - 1`` nodes):

    * nodes ``0..M-1`` are the leaves; leaf ``j`` is segment id ``j``;
    * nodes ``M..2M-2`` are internal, numbered in post-order, so both children
      of a node have smaller ids than the node (a forward loop over ``M..2M-2``
      visits children before parents) and the root is ``2M - 2``;
    * ``left[i - M]`` and ``right[i - M]`` are the children of internal node
      ``i``;
    * ``members[n, j]`` is True iff segment ``j`` lies under node ``n``
      (``members[:M]`` is the identity, ``members[2M-2]`` is all True);
    * ``parent[n]`` is the parent of node ``n`` (``-1`` for the root).

    Attributes:
      left: ``[M-1]`` int32.
      right: ``[M-1]`` int32.
      members: ``[2M-1, M]`` bool.
      parent: ``[2M-1]`` int32.
    """

    left: np.ndarray
    right: np.ndarray
    members: np.ndarray
    parent: np.ndarray

    @property
    def n_leaves(self) -> int:
        return int(self.members.shape[1])

    @property
    def root(self) -> int:
        return int(self.members.shape[0] - 1)


def partition_tree(segments: Any, *, n_segments: int | None = None) -> PartitionTree:
    """Binary hierarchy over segments by recursive median splits of centroids.

    Starting from all segments, a group is split in two along the spatial axis
    (rows or columns) on which its segment centroids spread most; the first
    ``floor(n/2)`` segments in centroid order along that axis go left, the rest
    right (ties broken by the other coordinate, then by id). This repeats until
    every group is one segment, giving a balanced tree of depth
    ``ceil(log2 M)`` whose groups are spatially compact - the coalition
    structure of the Owen value / shap's partition explainer.

    Runs on the host (numpy) on concrete segments; the result is a constant.

    Args:
      segments: ``[H, W]`` int segment ids ``0..M-1`` (one image).
      n_segments: M, if some ids at the end are empty (they are placed at the
        image centre); default ``max id + 1``.

    Returns:
      A :class:`PartitionTree` (node layout in its docstring).

    References:
      Owen (1977), "Values of games with a priori unions", in Mathematical
      Economics and Game Theory.
      Lundberg & Lee (2017), NeurIPS (partition / hierarchical masking in shap).
    """
    if isinstance(segments, jax.core.Tracer):
        raise TypeError("partition_tree needs concrete `segments` (call it outside jax.jit).")
    seg = np.asarray(segments)
    if seg.ndim != 2:
        raise ValueError(f"`segments` must be [H, W] (one image), got shape {seg.shape}.")
    if not np.issubdtype(seg.dtype, np.integer) or (seg.size and seg.min() < 0):
        raise ValueError("`segments` must hold non-negative integer ids.")
    M = int(seg.max()) + 1 if n_segments is None else int(n_segments)
    if M < int(seg.max()) + 1:
        raise ValueError(f"`n_segments`={M} is smaller than max segment id + 1.")
    H, W = seg.shape
    rr, cc = np.indices((H, W))
    flat = seg.ravel()
    counts = np.bincount(flat, minlength=M).astype(np.float64)
    safe = np.maximum(counts, 1.0)
    cy = np.where(counts > 0, np.bincount(flat, rr.ravel(), minlength=M) / safe, (H - 1) / 2)
    cx = np.where(counts > 0, np.bincount(flat, cc.ravel(), minlength=M) / safe, (W - 1) / 2)

    left = np.zeros(max(M - 1, 0), np.int32)
    right = np.zeros(max(M - 1, 0), np.int32)
    members = np.zeros((2 * M - 1, M), bool)
    members[np.arange(M), np.arange(M)] = True
    parent = np.full(2 * M - 1, -1, np.int32)
    next_id = [M]

    def build(ids: np.ndarray) -> int:
        if ids.size == 1:
            return int(ids[0])
        y, x = cy[ids], cx[ids]
        if np.ptp(y) >= np.ptp(x):
            order = np.lexsort((ids, x, y))  # primary key last: y, then x, then id
        else:
            order = np.lexsort((ids, y, x))
        ids = ids[order]
        half = ids.size // 2
        a, b = build(ids[:half]), build(ids[half:])
        node = next_id[0]
        next_id[0] += 1
        left[node - M], right[node - M] = a, b
        parent[a] = parent[b] = node
        members[node] = members[a] | members[b]
        return node

    build(np.arange(M))
    return PartitionTree(left, right, members, parent)


