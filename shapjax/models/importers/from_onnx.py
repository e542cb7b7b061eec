"""ONNX models -> :class:`~shapjax.models.Classifier` through ``jaxonnxruntime``.

``jaxonnxruntime`` (Google, Apache-2.0; the ONNX->JAX runtime on PyPI) turns an
ONNX graph into a JAX function ``f(initializers, inputs)``; the graph's
initializers (its weights) become the classifier's ``params``, traced like a
flax model's variables. Three things make it usable here:

- **Batch size.** Shape-dependent ops (``Shape -> Gather -> Reshape``, as
  ``x.view(x.size(0), -1)`` exports) are resolved when the graph is traced, so
  the graph is traced once on a single image and ``jax.vmap``-ed over the
  batch: any batch size gives the right answer.
- **Opsets.** ``jaxonnxruntime`` 0.3.0 picks each op's implementation by the
  op's schema version at the model's opset and has gaps: ``Relu`` at opset 13,
  ``Flatten``/``Reshape``/``Constant`` at 21, ``Conv`` at 22+ have none (so a
  plain CNN fails at opsets 13 and 21-23 and runs at 11-12 and 14-20, measured
  with torch 2.13's exporters). A model whose ops hit such a gap is converted
  to opset 17 with ONNX's own ``onnx.version_converter`` and traced again; when
  that fails too the error names the op, its version and the opsets known to
  work.
- **Layout.** The graph's input is NCHW (torch) or NHWC (Keras/TF); shapjax's
  images are NHWC in [0, 1]: they are normalised (``normalization``, default
  none: the graph may already contain it) and transposed as needed.

Grad-CAM needs a feature map: when the graph ends in a global average pool
(``GlobalAveragePool``, or ``ReduceMean`` over the spatial axes) the graph is
split there with ``onnx.utils.Extractor`` into ``features`` and ``head``.

References:
  ONNX operator schemas and versioning, https://onnx.ai/onnx/operators/ ;
  jaxonnxruntime, https://github.com/google/jaxonnxruntime .
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..classifier import Classifier

logger = logging.getLogger(__name__)

#: Opsets at which a plain torch-exported CNN (Conv, BatchNorm folded, Relu, MaxPool,
#: Add, GlobalAveragePool/ReduceMean, Flatten/Reshape, Gemm) runs natively on
#: jaxonnxruntime 0.3.0 (measured; others go through the opset-17 conversion).
NATIVE_OPSETS = (11, 12, 14, 15, 16, 17, 18, 19, 20)
CONVERT_TO = 17


def _imports():
    try:
        import onnx
        from jaxonnxruntime import call_onnx, config
        from jaxonnxruntime.core import handler
    except ImportError:
        raise ImportError("onnx: importing ONNX models needs onnx and jaxonnxruntime "
                          "(pip install 'shapjax[onnx]')") from None
    # Shapes computed in the graph (Shape/Gather/Concat -> Reshape) are taken from the single-image trace;
    # every call is vmapped over that one-image graph, so they are the right ones for any batch.
    config.update("jaxort_only_allow_initializers_as_static_args", False)
    return onnx, call_onnx, handler


def _opset(model) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _supported_ops(handler) -> set[str]:
    import jaxonnxruntime.onnx_ops  # noqa: F401 - registers the handlers

    return {h.OP_TYPE for h in handler.Handler.__subclasses__() if getattr(h, "OP_TYPE", "")}


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def _trace(call_onnx, model, sample):
    fn, params = call_onnx.call_onnx_model(model, [sample])
    return fn, params


def _trace_any_opset(onnx, call_onnx, model, sample, source):
    """Trace natively; on a version gap convert to opset 17 (``onnx.version_converter``) and retry."""
    try:
        return _trace(call_onnx, model, sample), model
    except NotImplementedError as e:
        first = str(e).splitlines()[0]
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, CONVERT_TO)
        return _trace(call_onnx, converted, sample), converted
    except Exception as e:  # noqa: BLE001 - the converter and the runtime raise many types
        second = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    raise ValueError(f"{source}: opset {_opset(model)} is not supported by jaxonnxruntime ({first}) and the "
                     f"conversion to opset {CONVERT_TO} failed ({second}); opsets known to work: "
                     f"{', '.join(map(str, NATIVE_OPSETS))} (export with opset_version=17)")


def _pool_split(onnx, model, layout: str):
    """The 4-D tensor a final global average pool reads, or None."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    spatial = {(2, 3), (-2, -1)} if layout == "NCHW" else {(1, 2), (-3, -2)}
    best = None
    for node in model.graph.node:
        if node.op_type == "GlobalAveragePool":
            best = node.input[0]
        elif node.op_type == "ReduceMean":
            axes = next((tuple(a.ints) for a in node.attribute if a.name == "axes"), None)
            if axes is None and len(node.input) > 1 and node.input[1] in inits:
                axes = tuple(int(v) for v in numpy_helper.to_array(inits[node.input[1]]).ravel())
            if axes is not None and tuple(sorted(axes)) in spatial:
                best = node.input[0]
    return best


def load_onnx(path: str | Path, *, input_shape: Sequence[int] | None = None,
              class_names: Sequence[str] | None = None, normalization: Any = None,
              layout: str | None = None, name: str = "") -> Classifier:
    """Read an ONNX image classifier as a Classifier (through ``jaxonnxruntime``).

    Args:
      path: the ``.onnx`` file (one image input ``[N, C, H, W]`` or
        ``[N, H, W, C]``, one output ``[N, K]``).
      input_shape: ``(H, W, C)``; needed when the graph's spatial sizes are
        symbolic.
      class_names: one per output.
      normalization: applied to the [0, 1] images before the graph
        (default None: the graph gets [0, 1] images; ``"imagenet"`` for a
        torchvision model exported without its transform).
      layout: ``"NCHW"`` or ``"NHWC"`` (default: from the input's shape, C
        being 1 or 3).
      name: display name.

    Raises:
      ValueError: unsupported ops or opset (naming them), or a graph that is
        not an image classifier.
    """
    import jax
    import jax.numpy as jnp

    onnx, call_onnx, handler = _imports()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {path} not found")
    source = f"ONNX file {path}"
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf decode errors
        raise ValueError(f"{source}: not an ONNX model ({type(e).__name__}: {e})") from None
    missing = sorted({n.op_type for n in model.graph.node} - _supported_ops(handler))
    if missing:
        raise ValueError(f"{source}: ops not implemented by jaxonnxruntime: {', '.join(missing)}")
    init_names = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init_names]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ValueError(f"{source}: expected one image input and one output, got {len(inputs)} inputs "
                         f"and {len(model.graph.output)} outputs")
    dims = _dims(inputs[0])
    if len(dims) != 4:
        raise ValueError(f"{source}: the input {inputs[0].name!r} has {len(dims)} dimensions, expected 4 (an image "
                         "batch)")
    if layout is None:
        layout = "NHWC" if dims[3] in (1, 3) and dims[1] not in (1, 3) else "NCHW"
    layout = layout.upper()
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout: expected 'NCHW' or 'NHWC', got {layout!r}")
    graph_hwc = tuple(dims[2:] + dims[1:2]) if layout == "NCHW" else tuple(dims[1:])
    if input_shape is None:
        if any(d is None for d in graph_hwc):
            raise ValueError(f"input_shape: the graph's input is {dims} ({layout}) with symbolic sizes; "
                             "give (H, W, C)")
        input_shape = graph_hwc
    input_shape = tuple(int(s) for s in input_shape)
    if any(g is not None and g != s for g, s in zip(graph_hwc, input_shape)):
        raise ValueError(f"input_shape: {input_shape} does not fit the graph's input {dims} ({layout})")
    H, W, C = input_shape
    to_graph = (lambda x: jnp.transpose(x, (0, 3, 1, 2))) if layout == "NCHW" else (lambda x: x)
    sample = np.zeros((1, C, H, W) if layout == "NCHW" else (1, H, W, C), np.float32)
    (fn, params), model = _trace_any_opset(onnx, call_onnx, model, sample, source)
    floats = {k: jnp.asarray(v) for k, v in params.items() if np.issubdtype(np.asarray(v).dtype, np.floating)}
    consts = {k: np.asarray(v) for k, v in params.items() if k not in floats}

    def one_image(graph_fn):
        def run(p, xi):  # xi: one image in the graph's layout, without the batch axis
            with warnings.catch_warnings():  # shape arithmetic in int64 runs as int32 (jax without x64): fine
                warnings.filterwarnings("ignore", message="Explicitly requested dtype int64")
                return graph_fn({**p, **consts}, [xi[None]])[0][0]
        return jax.vmap(run, in_axes=(None, 0))

    run_all = one_image(fn)

    def apply(p, x):
        return run_all(p, to_graph(x))

    features = head = None
    pooled = _pool_split(onnx, model, layout)
    if pooled is not None:
        try:
            from onnx.utils import Extractor

            ex = Extractor(onnx.shape_inference.infer_shapes(model))
            f_model = ex.extract_model([inputs[0].name], [pooled])
            h_model = ex.extract_model([pooled], [model.graph.output[0].name])
            f_fn, _ = _trace(call_onnx, f_model, sample)
            fmap = np.asarray(f_fn({**params}, [sample])[0])
            h_fn, _ = _trace(call_onnx, h_model, fmap)
            run_f, run_h = one_image(f_fn), one_image(h_fn)
            if layout == "NCHW":
                features = lambda p, x: jnp.transpose(run_f(p, to_graph(x)), (0, 2, 3, 1))  # noqa: E731
                head = lambda p, a: run_h(p, jnp.transpose(a, (0, 3, 1, 2)))  # noqa: E731
            else:
                features, head = (lambda p, x: run_f(p, x)), run_h
        except Exception as e:  # noqa: BLE001 - no split is not an error: Grad-CAM is then unavailable
            logger.info("%s: no feature/head split for Grad-CAM (%s: %s)", source, type(e).__name__, e)
            features = head = None
    logger.info("%s: opset %d, %s input %s, %d weight tensors", source, _opset(model), layout, input_shape,
                len(floats))
    return Classifier.from_functions(apply, floats, input_shape=input_shape, class_names=class_names,
                                     features=features, head=head, normalization=normalization,
                                     name=name or path.stem, arch="onnx")
