"""Networks behind a :class:`~shapjax.models.Classifier`: input checks, input normalisation, pure maps.

:class:`FunctionNetwork` wraps pure functions of ``(params, x)`` (an imported
ONNX graph, a Keras model's stateless call, a user's own JAX function);
:data:`NORMALIZATIONS` names the usual ``(mean, std)`` input normalisations.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["NORMALIZATIONS", "check_normalization", "FunctionNetwork"]

#: Named input normalisations ``(mean, std)`` per RGB channel, for images in [0, 1].
#: ``"imagenet"``: torchvision's ImageNet statistics; ``"cifar10"``: the CIFAR-10
#: training-set statistics; ``"inception"``: Keras's ``preprocess_input`` of
#: Inception-v3 (``mode="tf"``), [0, 1] -> [-1, 1].
NORMALIZATIONS: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def _shape_str(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def check_normalization(normalization: Any, *, channels: int | None = None,
                        argname: str = "normalization") -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``None``, a name of :data:`NORMALIZATIONS` or ``(mean, std)`` -> ``(mean, std)`` tuples or None.

    ``mean`` and ``std`` are floats or per-channel sequences (length ``channels``);
    every std must be positive.
    """
    if normalization is None or (isinstance(normalization, str) and normalization.lower() == "none"):
        return None
    if isinstance(normalization, str):
        if normalization.lower() not in NORMALIZATIONS:
            raise ValueError(f"{argname}: unknown normalisation {normalization!r}; expected one of "
                             f"{sorted(NORMALIZATIONS)}, 'none' or (mean, std)")
        normalization = NORMALIZATIONS[normalization.lower()]
    if isinstance(normalization, Mapping):
        normalization = (normalization.get("mean"), normalization.get("std"))
    try:
        mean, std = normalization
        mean = tuple(float(v) for v in np.atleast_1d(np.asarray(mean, np.float64)))
        std = tuple(float(v) for v in np.atleast_1d(np.asarray(std, np.float64)))
    except (TypeError, ValueError):
        raise TypeError(f"{argname}: expected None, a name ({sorted(NORMALIZATIONS)}) or (mean, std), "
                        f"got {normalization!r}") from None
    if channels is not None:
        if len(mean) == 1:
            mean = mean * channels
        if len(std) == 1:
            std = std * channels
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"{argname}: expected one mean and one std per channel ({channels}), "
                             f"got mean {mean} and std {std}")
    if not all(np.isfinite(mean)) or not all(np.isfinite(v) and v > 0 for v in std):
        raise ValueError(f"{argname}: expected finite means and positive stds, got mean {mean}, std {std}")
    return mean, std


class _NetworkBase:
    """What every network shares: input checks, the input normalisation, the feature shape."""

    arch: str
    input_shape: tuple[int, int, int]
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    _feature_shape = None

    def check_images(self, images: Any, argname: str = "images") -> jax.Array:
        shape = getattr(images, "shape", None)
        dtype = getattr(images, "dtype", None)
        if shape is None or dtype is None:
            raise TypeError(f"{argname}: expected an array [B, {', '.join(map(str, self.input_shape))}], "
                            f"got {type(images).__name__}")
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"{argname}: expected floating-point images in [0, 1], got dtype {dtype} "
                            "(convert uint8 with images / 255.0)")
        if len(shape) != 4 or tuple(shape[1:]) != self.input_shape:
            raise ValueError(f"{argname}: this {self.arch} model expects images of shape "
                             f"[B, {', '.join(map(str, self.input_shape))}] (NHWC), got {_shape_str(shape)}")
        return jnp.asarray(images)

    def prepare(self, images: Any) -> jax.Array:
        """Checked images ``[B, H, W, C]`` in [0, 1] -> the network's input (normalised when configured)."""
        x = self.check_images(images)
        if self.normalization is None:
            return x
        mean, std = (jnp.asarray(v, x.dtype) for v in self.normalization)
        return (x - mean) / std

    def variable_shapes(self) -> Any:
        raise NotImplementedError

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        if self._feature_shape is None:
            out = jax.eval_shape(self.features, self.variable_shapes(),
                                 jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32))
            self._feature_shape = tuple(int(s) for s in out.shape[1:])
        return self._feature_shape

    def check_fmap(self, fmap: Any) -> None:
        expected = self.feature_shape
        shape = getattr(fmap, "shape", None)
        if shape is None or len(shape) != 4 or tuple(shape[1:]) != expected:
            got = _shape_str(shape) if shape is not None else type(fmap).__name__
            raise ValueError(f"fmap: expected a feature map [B, {', '.join(map(str, expected))}], got {got}")


class FunctionNetwork(_NetworkBase):
    """A network given by pure functions of ``(params, x)`` rather than a shapjax architecture.

    ``apply_fn(params, x [B, H, W, C]) -> [B, K]`` receives normalised images;
    ``features_fn(params, x) -> [B, h, w, F]`` and ``head_fn(params, fmap) ->
    [B, K]`` (both or neither) give Grad-CAM its feature map. The instance is
    hashed by identity, so one imported model compiles once however often it
    is explained.
    """

    def __init__(self, arch: str, apply_fn: Callable, input_shape: tuple[int, int, int], *,
                 features_fn: Callable | None = None, head_fn: Callable | None = None,
                 normalization=None, params_template: Any = None):
        if not callable(apply_fn):
            raise TypeError(f"apply: expected a callable apply(params, images), got {type(apply_fn).__name__}")
        if (features_fn is None) != (head_fn is None):
            raise ValueError("features/head: give both (for Grad-CAM) or neither")
        self.arch = arch
        self.input_shape = input_shape
        self.normalization = normalization
        self._apply, self._features, self._head = apply_fn, features_fn, head_fn
        self._template = params_template
        self._feature_shape = None
        self.jit_apply = jax.jit(self.apply)

    def apply(self, params: Any, images: jax.Array) -> jax.Array:
        return self._apply(params, self.prepare(images))

    def features(self, params: Any, images: jax.Array) -> jax.Array:
        if self._features is None:
            raise ValueError(f"features: this {self.arch} model has no feature map / head split "
                             "(Grad-CAM needs one; the other methods work)")
        return self._features(params, self.prepare(images))

    def head(self, params: Any, fmap: jax.Array) -> jax.Array:
        if self._head is None:
            raise ValueError(f"head: this {self.arch} model has no feature map / head split")
        self.check_fmap(fmap)
        return self._head(params, fmap)

    def variable_shapes(self) -> Any:
        return self._template
