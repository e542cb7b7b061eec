"""Models as data: any model -> (a hashable static structure, a pytree of arrays) for ``jax.jit``.

Every compiled program of shapjax (``explain``, ``shapley``, the gradient methods, the metrics)
takes a model through :func:`split_model` and rebuilds it inside the trace with
:func:`join_model`. The arrays travel as *traced arguments*: new weights of the same shapes
reuse the compiled program and are never stale; only the structure is a static argument.

What is recognised (in this order):

* :class:`jax.tree_util.Partial` and any other pytree callable whose leaves are arrays
  (flax ``struct`` modules...): static = the tree structure, dynamic = the leaves;
* a flax ``nnx.Module``: ``nnx.split`` into graph definition (static) and state (dynamic);
* an equinox ``Module``: ``eqx.partition(model, eqx.is_array)``;
* a Keras 3 model on the JAX backend: its trainable and non-trainable variable values are
  dynamic, the model is called with ``stateless_call(..., training=False)``;
* an object with ``apply`` and ``params`` (a :class:`shapjax.models.Classifier`, or a flax
  linen-style wrapper): ``Partial(obj.apply, obj.params)``;
* a :func:`functools.partial`: its bound arguments are dynamic, its function static;
* a plain function or bound method. The arrays it reaches *directly* — in its closure cells or
  the module globals its code names — are lifted out and passed as arguments (so
  ``lambda x: model.apply(params, x)`` neither recompiles when a new lambda is made nor goes
  stale when ``params`` is reassigned). Arrays it reaches only *indirectly* (through other
  functions) cannot be lifted: they are compiled in as constants and their identities join the
  cache key, so a reassignment recompiles (one warning per call site says so) and a stale result
  is impossible.
"""
from __future__ import annotations

import functools
import sys
import types
import warnings
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

_DEPTH = 3  # how deep the indirect-reference scan follows functions


class Static(NamedTuple):
    """The static half of a split model (hashable; a jit static argument).

    ``kind`` says how :func:`join_model` rebuilds the callable; ``key`` is what hashing compares;
    ``payload`` holds what the rebuild needs (compared only through ``key``).
    """

    kind: str
    key: Any
    payload: Any

    def __hash__(self):
        return hash((self.kind, self.key))

    def __eq__(self, other):
        return isinstance(other, Static) and (self.kind, self.key) == (other.kind, other.key)


class _Id:
    """Identity-compared handle that keeps its object alive (so an id is never reused while cached)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Id) and other.obj is self.obj


def _hashable(x):
    try:
        hash(x)
        return x
    except TypeError:
        return _Id(x)


def _is_array(x) -> bool:
    return isinstance(x, jax.Array)


def _array_tree(x):
    """``(leaves, treedef)`` when ``x`` is a pytree whose leaves are all JAX arrays (at least one)."""
    if isinstance(x, (types.FunctionType, types.MethodType, type, types.ModuleType)):
        return None
    try:
        leaves, treedef = jax.tree_util.tree_flatten(x)
    except Exception:  # noqa: BLE001 - exotic objects are simply not array trees
        return None
    if leaves and all(_is_array(leaf) for leaf in leaves):
        try:
            hash(treedef)
        except TypeError:
            return None
        return leaves, treedef
    return None


def _module_kind(model) -> str | None:
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module):
        return "nnx"
    eqx = sys.modules.get("equinox")
    if eqx is not None and isinstance(model, eqx.Module):
        return "eqx"
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.layers.Layer) and hasattr(model, "stateless_call"):
        return "keras"
    return None


def split_model(model, name: str = "model_fn") -> tuple[Static, Any]:
    """``(static, dynamic)``: ``static`` is hashable, ``dynamic`` a pytree of arrays (see the module doc).

    Raises a ``TypeError`` naming ``name`` when ``model`` is not callable.
    """
    if isinstance(model, jax.tree_util.Partial):
        leaves, treedef = jax.tree_util.tree_flatten(model)
        return Static("tree", _hashable(treedef), treedef), leaves
    kind = _module_kind(model)
    if kind == "nnx":
        from flax import nnx

        graphdef, state = nnx.split(model)
        return Static("nnx", _hashable(graphdef), graphdef), state
    if kind == "eqx":
        import equinox as eqx

        dyn, st = eqx.partition(model, eqx.is_array)
        leaves, treedef = jax.tree_util.tree_flatten(st)
        return Static("eqx", (_hashable(treedef), tuple(_hashable(leaf) for leaf in leaves)), st), dyn
    if kind == "keras":
        import keras

        if keras.backend.backend() != "jax":
            raise TypeError(f"{name}: a Keras model must run on the JAX backend (KERAS_BACKEND=jax); "
                            f"this one uses {keras.backend.backend()!r}")
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        return Static("keras", _Id(model), model), (tv, ntv)
    if not callable(model):
        raise TypeError(f"{name}: expected a callable model images [N, H, W, C] -> [N, K] (a function, a "
                        f"jax.tree_util.Partial, a flax/equinox/Keras model); got {type(model).__name__}")
    if not isinstance(model, (types.FunctionType, types.MethodType, functools.partial)):
        tree = _array_tree(model)  # flax struct modules, shapjax Classifiers, other pytree callables
        if tree is not None:
            leaves, treedef = tree
            return Static("tree", treedef, treedef), leaves
        apply, params = getattr(model, "apply", None), getattr(model, "params", None)
        if callable(apply) and params is not None:
            return split_model(jax.tree_util.Partial(apply, params), name)
    if isinstance(model, functools.partial):
        return split_model(jax.tree_util.Partial(model.func, *model.args, **model.keywords), name)
    return _split_function(model, name)


def join_model(static: Static, dynamic) -> Callable:
    """The callable that :func:`split_model` split, rebuilt around ``dynamic`` (possibly traced)."""
    kind = static.kind
    if kind == "tree":
        return jax.tree_util.tree_unflatten(static.payload, dynamic)
    if kind == "nnx":
        from flax import nnx

        return nnx.merge(static.payload, dynamic)
    if kind == "eqx":
        import equinox as eqx

        return eqx.combine(dynamic, static.payload)
    if kind == "keras":
        model, (tv, ntv) = static.payload, dynamic
        return lambda x: model.stateless_call(tv, ntv, x, training=False)[0]
    if kind == "fn":
        return _join_function(static.payload, dynamic)
    if kind == "const":
        return static.payload
    raise ValueError(f"unknown model kind {kind!r}")  # pragma: no cover


# ----------------------------------------------------------------------------- plain functions

class _FnPlan(NamedTuple):
    fn: Any  # the function: its code, defaults and non-lifted cells are reused
    owner: Any  # None, or the Static of a lifted ``__self__`` of a bound method
    cells: tuple  # per closure cell: None (kept as it is) or the Static of the lifted value
    globals_: tuple  # ((name, Static), ...) of the lifted module globals


def _lift(value, stack=()):
    """``(Static, dynamic)`` for a value a function reaches directly, or None to keep it as it is.

    Lifted: JAX arrays and pytrees of them (parameter dicts, flax struct modules, shapjax
    Classifiers), ``Partial``s, nnx / equinox / Keras models — values that come back as the same
    kind of object inside the trace — and user functions that themselves lift something
    (``lambda x: model(x)`` where ``model`` is a closure over weights), to a bounded depth.
    """
    if isinstance(value, types.FunctionType) and len(stack) < _DEPTH and id(value) not in stack \
            and (getattr(value, "__module__", None) or "").split(".")[0] not in _LIBRARIES:
        st, dyn = _split_function(value, "model_fn", stack + (id(value),), warn=False)
        plan = st.payload
        if st.kind != "fn" or not (any(plan.cells) or plan.globals_ or plan.owner is not None):
            return None  # nothing to lift: the caller scans it for constants instead
        _warn_constants(value, [c.obj for c in st.key[-1]], "model_fn")
        return st, dyn
    if isinstance(value, jax.tree_util.Partial) or _module_kind(value) is not None:  # (Partial is a partial)
        return split_model(value)
    if value is None or isinstance(value, (types.FunctionType, types.MethodType, type, types.ModuleType,
                                           functools.partial)):
        return None
    tree = _array_tree(value)
    if tree is not None:
        leaves, treedef = tree
        return Static("tree", treedef, treedef), leaves
    return None


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell (a name assigned later)
        return None


def _split_function(fn, name: str, stack=(), warn=True):
    func = fn.__func__ if isinstance(fn, types.MethodType) else fn
    owner = fn.__self__ if isinstance(fn, types.MethodType) else None
    code = getattr(func, "__code__", None)
    if code is None:  # a builtin or otherwise opaque callable: static by identity
        consts = _reachable_arrays(fn, 0, set())
        _warn_constants(fn, consts, name)
        return Static("const", (_hashable(fn), tuple(_Id(a) for a in consts)), fn), ()
    dynamic, seen = [], set()

    stack = stack + (id(fn),)

    def lift(value):
        lifted = _lift(value, stack)
        if lifted is not None:
            seen.add(id(value))
            dynamic.append(lifted[1])
        return lifted

    owner_plan = owner_key = None
    if owner is not None:
        lifted = lift(owner)
        owner_plan = lifted[0] if lifted else None
        owner_key = owner_plan if lifted else _hashable(owner)
    cells, cell_keys = [], []
    for cell in func.__closure__ or ():
        value = _cell_value(cell)
        lifted = lift(value)
        cells.append(lifted[0] if lifted else None)
        cell_keys.append(lifted[0] if lifted else ("kept", _hashable(value)))
    globals_, kept_globals = [], []
    for gname in sorted(set(code.co_names) & set(func.__globals__)):
        value = func.__globals__[gname]
        lifted = lift(value)
        if lifted is not None:
            globals_.append((gname, lifted[0]))
        else:  # kept as it is (an int loop index, a module, a function): its value joins the key
            kept_globals.append((gname, _hashable(value)))
    # Arrays reached only indirectly cannot be lifted: they become constants, and their
    # identities join the cache key (a reassignment recompiles; a stale result is impossible).
    consts = _reachable_arrays(fn, 0, seen)
    if warn:
        _warn_constants(fn, consts, name)
    key = (code, _hashable(func.__defaults__), owner_key, tuple(cell_keys), tuple(globals_), tuple(kept_globals),
           tuple(_Id(a) for a in consts))
    return Static("fn", key, _FnPlan(fn, owner_plan, tuple(cells), tuple(globals_))), dynamic


def _join_function(plan: _FnPlan, dynamic):
    fn = plan.fn
    if plan.owner is None and not any(plan.cells) and not plan.globals_:
        return fn
    func = fn.__func__ if isinstance(fn, types.MethodType) else fn
    it = iter(dynamic)
    owner = join_model(plan.owner, next(it)) if plan.owner is not None else getattr(fn, "__self__", None)
    new = func
    if any(plan.cells) or plan.globals_:
        new_cells = tuple(cell if st is None else types.CellType(join_model(st, next(it)))
                          for cell, st in zip(func.__closure__ or (), plan.cells))
        g = func.__globals__
        if plan.globals_:
            g = dict(g)
            for gname, st in plan.globals_:
                g[gname] = join_model(st, next(it))
        new = types.FunctionType(func.__code__, g, func.__name__, func.__defaults__, new_cells or None)
        new.__kwdefaults__ = func.__kwdefaults__
    return types.MethodType(new, owner) if isinstance(fn, types.MethodType) else new


_LIBRARIES = ("jax", "jaxlib", "flax", "numpy", "optax", "equinox", "keras", "shapjax", "functools")


def _reachable_arrays(obj, depth: int, seen: set) -> list:
    """JAX arrays reachable from ``obj`` through closures, referenced globals, bound ``self``,
    attributes and containers (bounded depth; values whose id is in ``seen`` are skipped)."""
    if id(obj) in seen or depth > _DEPTH or obj is None:
        return []
    seen.add(id(obj))
    if _is_array(obj):
        return [obj]
    if isinstance(obj, (types.ModuleType, type, str, bytes, int, float, complex, bool, np.ndarray)):
        return []
    out: list = []
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        func = obj.__func__ if isinstance(obj, types.MethodType) else obj
        if isinstance(obj, types.MethodType):
            out += _reachable_arrays(obj.__self__, depth + 1, seen)
        if (getattr(func, "__module__", None) or "").split(".")[0] in _LIBRARIES:
            return out
        for cell in func.__closure__ or ():
            out += _reachable_arrays(_cell_value(cell), depth + 1, seen)
        for gname in _names(func.__code__):
            if gname in func.__globals__:
                out += _reachable_arrays(func.__globals__[gname], depth + 1, seen)
        return out
    if isinstance(obj, functools.partial):
        out += _reachable_arrays(obj.func, depth + 1, seen)
        for v in (*obj.args, *obj.keywords.values()):
            out += _reachable_arrays(v, depth + 1, seen)
        return out
    if _module_kind(obj) is not None:
        return [x for x in jax.tree_util.tree_leaves(split_model(obj)[1]) if _is_array(x)]
    tree = _array_tree(obj)
    if tree is not None:
        return list(tree[0])
    if isinstance(obj, (dict, list, tuple, set, frozenset)):
        for v in (obj.values() if isinstance(obj, dict) else obj):
            out += _reachable_arrays(v, depth + 1, seen)
        return out
    if (type(obj).__module__ or "").split(".")[0] in _LIBRARIES and not hasattr(obj, "params"):
        return out
    for v in (vars(obj).values() if hasattr(obj, "__dict__") else ()):
        out += _reachable_arrays(v, depth + 1, seen)
    return out


def _names(code) -> set:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _names(c)
    return names


def _warn_constants(fn, consts: list, name: str) -> None:
    if consts:
        n = sum(int(np.prod(a.shape)) for a in consts)
        warnings.warn(
            f"{name}: {getattr(fn, '__qualname__', type(fn).__name__)} reaches {len(consts)} JAX array(s) "
            f"({n:,} values) that cannot be passed as data (only through other functions or objects); they are "
            "compiled into the program as constants, so new values recompile it. Pass the weights as data "
            "instead: jax.tree_util.Partial(apply, params) or the model object itself (flax nnx/linen, "
            "equinox, Keras, a shapjax Classifier).",
            stacklevel=4)


def n_outputs(model_fn, images, name: str = "model_fn") -> int:
    """``K`` of a model ``[N, H, W, C] -> [N, K]`` (traced abstractly); a clear error otherwise."""
    if not callable(model_fn):
        raise TypeError(f"{name}: expected a callable, got {type(model_fn).__name__}")
    out = jax.eval_shape(model_fn, jax.ShapeDtypeStruct(images.shape, images.dtype))
    if getattr(out, "ndim", None) != 2 or out.shape[0] != images.shape[0]:
        raise ValueError(f"{name}: expected an output of shape [N, K] for N={images.shape[0]} "
                         f"inputs, got {getattr(out, 'shape', type(out).__name__)}")
    from shapjax._util.checks import check_output_dtype

    check_output_dtype(out.dtype, name)
    return out.shape[1]


# The names the gradient methods and metrics import (one mechanism for every caller).
_split_fn = split_model
_join_fn = join_model
_n_outputs = n_outputs
