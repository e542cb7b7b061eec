"""The compiled program of :func:`shapjax.explain_dataset`: one key per image, batches sharded over every device.

A batch of B images travels as arrays sharded on their first axis over a 1-D
:class:`jax.sharding.Mesh` named ``"images"`` (:class:`~jax.sharding.NamedSharding`);
the model's weights and the masker are replicated. Inside ``jax.shard_map``
each device runs ``lax.map`` over its own images, and each image is explained
by :func:`shapjax.image.explain.explain_one_image` (the compiled core of
:func:`shapjax.explain` for one image) with the key ``fold_in(key, i)`` of its
global index ``i``: its result is that of ``explain(model, x[i:i+1],
key=fold_in(key, i))``, whatever the batch size, device count or process count.

The price of per-image keys: :func:`shapjax.explain` shares one coalition design
by the batch (the regression is factored once for B images); here every image
draws and factors its own, which costs ``O(n_evals * M)`` host-free device work
per image against ``n_evals`` model evaluations (measured in
``benchmarks/results/dataset.md``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from shapjax._util import aot
from shapjax._util.modelfn import join_model, split_model
from shapjax.engine.estimators import get_estimator
from shapjax.engine.estimators.partition import Tree, balanced_tree, schedule
from shapjax.engine.games import auto_batch_size
from shapjax.image.explain import explain_one_image
from shapjax.image.hierarchy import partition_tree

AXIS = "images"


def local_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``"images"`` over this process's devices (default: every local device)."""
    devs = list(jax.local_devices() if devices is None else devices)
    return Mesh(np.asarray(devs), (AXIS,))


@dataclasses.dataclass(frozen=True)
class Plan:
    """Static settings of the compiled program (hashable).

    Attributes:
      model_fn: the static part of the model (:func:`shapjax._util.modelfn.split_model`).
      n_segments: M, the same for every image of the dataset.
      method, n_evals: estimator and budget per image (asked).
      used_evals: evaluations actually spent per image.
      batch_size: composed images per model call.
      out_mode, k: parsed ``outputs`` (``"all"``, ``"given"``, ``"top"``) and K.
      ks: partition schedule (None for other methods).
      masked: pass per-image ``active [M]`` masks (superpixels may leave ids unused).
      tol, round_evals: the to-tolerance mode of :func:`shapjax.explain` (None: a fixed budget); each
        image runs its own rounds, so ``n_evals`` is then the cap and the program also returns the
        evaluations each image spent and its relative standard error.
      group: images explained together (``vmap``) per step of the device's ``lax.map``, so a model call
        holds about ``batch_size`` composed images when ``n_evals < batch_size``; the local batch is always
        a multiple of it, so every image is computed in a group of the same shape whatever the batch size
        or device count (image ``i`` is ``explain(x[i:i+1], ...)``: the same coalitions, equal to float rounding).
    """

    model_fn: Any
    n_segments: int
    method: str
    n_evals: int
    used_evals: int
    batch_size: int
    out_mode: str
    k: int
    ks: Optional[tuple]
    masked: bool
    group: int = 1
    tol: Optional[float] = None
    round_evals: Optional[int] = None

    @property
    def partition(self) -> bool:
        return self.method == "partition"


def make_plan(model_tree_fn, *, n_segments: int, method: str, n_evals: int, out_mode: str, k: int,
              pixels: int, n_replacements: int, batch_size: Optional[int], masked: bool, tol: Optional[float] = None,
              round_evals: Optional[int] = None) -> Plan:
    est = get_estimator(method)
    M = int(n_segments)
    rows = 2**M if method == "exact" else (round_evals or n_evals)
    bs = batch_size or auto_batch_size(rows, pixels * n_replacements)
    ks = tuple(schedule(M, n_evals, tree=balanced_tree(M))) if method == "partition" else None
    used = n_evals if tol is not None else est.used_evals(M, n_evals, tree=None)  # tol: the cap
    group = max(1, int(bs) // max(1, rows if method != "partition" else int(bs)))
    return Plan(model_tree_fn, M, method, int(n_evals), int(used), int(bs), out_mode, int(k), ks, bool(masked),
                group, tol, round_evals)


def _static(plan: Plan) -> dict:
    return dict(model_fn=plan.model_fn, n_segments=plan.n_segments, method=plan.method, n_evals=plan.n_evals,
                batch_size=plan.batch_size, out_mode=plan.out_mode, k=plan.k, ks=plan.ks, tol=plan.tol,
                round_evals=plan.round_evals)


def trees_of(seg: np.ndarray, M: int) -> Tree:
    """One spatial partition tree per image (:func:`shapjax.image.hierarchy.partition_tree`), stacked."""
    ts = [partition_tree(s, n_segments=M) for s in seg]
    return Tree(*(np.stack([getattr(t, f) for t in ts]) for f in ("left", "right", "members")))


def _local_program(plan: Plan):
    def local(keys, images, seg, out_idx, active, trees, masker, model_tree):
        static = _static(plan)
        mf = aot.recorded(join_model(plan.model_fn, model_tree))

        def one(a):
            k, x, s, o, act, t = a
            return explain_one_image(x, s, masker, o, act, t, model_tree, key=k, **static)

        xs = (keys, images, seg, out_idx, active, trees)
        if plan.group == 1:
            phi, std, v0, v1, idx, info = jax.lax.map(one, xs)
        else:  # groups of `group` images per step (the local batch is a multiple of it: no remainder)
            phi, std, v0, v1, idx, info = jax.lax.map(one, xs, batch_size=plan.group)
        logits = jnp.asarray(mf(images), jnp.float32)  # the unmasked outputs, every class
        return (phi, std, v0, v1, idx, logits) + (() if info is None else tuple(info))

    return local


_PROGRAMS: dict = {}


def run(plan: Plan, prog, *args):
    """``prog(*args)`` (a :func:`program`; the model's arrays last), from a stored executable where
    there is one (:mod:`shapjax._util.aot`): the first batch of a fresh run is not traced again."""
    return aot.call(prog, args, {}, model=(plan.model_fn, args[-1]),
                    describe=lambda: aot.stable_repr(dataclasses.replace(plan, model_fn=None)))


def program(plan: Plan, mesh: Mesh):
    """The jitted, sharded program for ``plan`` on ``mesh`` (cached: one compile per plan, mesh and shapes).

    Call it as ``program(keys [B], images [B,H,W,C], seg [B,H,W], out_idx [B,K] | None, active [B,M] | None,
    trees | None, masker, model_tree)`` with B a multiple of the mesh size; returns
    ``(values [B,M,K], std [B,M,K] | None, base [B,K], full [B,K], output_indexes [B,K], logits [B,n_classes])``,
    then with ``plan.tol`` the evaluations spent ``[B]`` and relative standard errors ``[B]``.
    """
    key = (plan, tuple(mesh.devices.flat), mesh.axis_names)
    if key not in _PROGRAMS:
        img, rep = P(AXIS), P()
        fn = jax.shard_map(_local_program(plan), mesh=mesh, in_specs=(img, img, img, img, img, img, rep, rep),
                           out_specs=img, check_vma=False)
        _PROGRAMS[key] = jax.jit(fn)
    return _PROGRAMS[key]


_ONE: dict = {}


def one_image_program(plan: Plan):
    """The jitted program for ONE image (the ``"dispatch"`` mode): ``(key, image, seg, out_idx, active, tree,
    masker, model_tree) -> (values [M,K], std, base [K], full [K], output_indexes [K], outputs [n_classes])``.

    Called once per image with its inputs on the device that explains it; JAX's asynchronous dispatch keeps
    every device busy. An alternative to ``lax.map`` inside one program for backends where a loop body runs
    with less parallelism than a top-level program (on this project's shared 2-core CPU the two measured
    the same within the noise).
    """
    if plan not in _ONE:
        static = _static(plan)

        def one(k, x, s, o, act, t, masker, model_tree):
            mf = join_model(plan.model_fn, model_tree)
            *out, info = explain_one_image(x, s, masker, o, act, t, model_tree, key=k, **static)
            return (*out, jnp.asarray(mf(x[None]), jnp.float32)[0]) + (() if info is None else tuple(info))

        _ONE[plan] = jax.jit(one)
    return _ONE[plan]


def shard(mesh: Mesh, tree):
    """Put a pytree of ``[B, ...]`` host arrays on ``mesh``, split on the first axis (:class:`NamedSharding`)."""
    s = NamedSharding(mesh, P(AXIS))
    return jax.tree_util.tree_map(lambda a: jax.device_put(a, s), tree)


def replicate(mesh: Mesh, tree):
    """Put a pytree on every device of ``mesh`` (the model's weights, the masker)."""
    s = NamedSharding(mesh, P())
    return jax.tree_util.tree_map(lambda a: jax.device_put(a, s) if isinstance(a, (jax.Array, np.ndarray)) else a,
                                  tree)


def image_keys(indexes: np.ndarray, *, key) -> jax.Array:
    """``[B]`` keys ``fold_in(key, i)`` for the global image indexes ``i`` (the only source of randomness)."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indexes, jnp.uint32))


def pad_rows(a, n: int):
    """Pad ``a [b, ...]`` to ``n`` rows with copies of its last row (None stays None)."""
    if a is None:
        return None
    if isinstance(a, Tree):
        return Tree(*(pad_rows(x, n) for x in a))
    b = a.shape[0]
    if b == n:
        return a
    if isinstance(a, jax.Array):
        return jnp.concatenate([a, jnp.repeat(a[-1:], n - b, axis=0)])
    return np.concatenate([a, np.repeat(a[-1:], n - b, axis=0)])


__all__ = ["AXIS", "Plan", "local_mesh", "make_plan", "program", "run", "shard", "replicate", "image_keys", "pad_rows",
           "trees_of", "split_model"]
