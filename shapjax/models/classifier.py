"""`Classifier`: a flax image classifier bundled with its variables and metadata.

A :class:`Classifier` exposes the pure functions the rest of shapjax needs:

- ``apply(params, images) -> logits``: ``[B, H, W, C]`` -> ``[B, K]``;
- ``features(params, images) -> fmap``: the last convolutional feature map
  ``[B, h, w, F]`` (what Grad-CAM weights);
- ``head(params, fmap) -> logits`` with ``head(params, features(params, x)) ==
  apply(params, x)``;

and ``__call__(images)`` with its own variables closed over, which is the
``model_fn`` that :func:`shapjax.explain` takes. ``params`` is the whole flax
variables dict (``{"params": ...}`` plus ``{"batch_stats": ...}`` for
BatchNorm models, whose running statistics are used at inference).

Images always come in ``[0, 1]``. A classifier whose network expects
standardised inputs carries the standardisation as data,
:attr:`Classifier.normalization` ``= (mean, std)`` per channel, applied
inside ``apply`` and ``features`` (so the explained function, its gradients
and the metrics all see the model the user trained). :data:`NORMALIZATIONS`
names the usual ones (``"imagenet"``, ``"cifar10"``, ``"inception"``).

:meth:`Classifier.from_functions` wraps any pure ``apply(params, x)`` (an
imported ONNX graph, a Keras model's stateless call, the user's own JAX
function) with the same interface; only shapjax's own architectures
(:data:`ARCHITECTURES`) can be written as checkpoints.

Checkpoints are two files: ``NAME.msgpack`` (the variables, written with
:func:`flax.serialization.to_bytes`) and ``NAME.json`` (architecture, classes,
input shape and free-form training metadata). :func:`save_checkpoint` and
:func:`load_checkpoint` write and read them; the shipped weights use the same
format.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from shapjax._util.api import keyword_key

from .cnn import SmallCNN
from .inception import InceptionV3
from .network import FunctionNetwork, _NetworkBase, check_normalization
from .resnet import ResNet, ResNet18, ResNet50

#: Architecture name -> module constructor; the JSON metadata stores the name
#: and the keyword arguments, so a checkpoint can be rebuilt without code.
ARCHITECTURES: Mapping[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet": ResNet,
    "resnet18": ResNet18,
    "resnet50": ResNet50,
    "inception_v3": InceptionV3,
}

CHECKPOINT_FORMAT = "shapjax-classifier-v1"


def _tuplify(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return tuple(_tuplify(v) for v in x)
    return x


def _listify(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_listify(v) for v in x]
    return x


class _Network(_NetworkBase):
    """The pure part of a classifier: architecture + input shape + normalisation, no variables.

    Instances are interned (one per architecture/kwargs/input shape/normalisation,
    see :func:`_network`), so ``clf.apply`` of two classifiers with the same
    architecture is the same bound method: ``jax.jit`` and static arguments
    (``pgd_attack(..., apply_fn=clf.apply)``) then share one compilation.
    """

    def __init__(self, arch: str, kwargs: tuple, input_shape: tuple[int, int, int], normalization=None):
        self.arch = arch
        self.input_shape = input_shape
        self.normalization = normalization
        self.module = ARCHITECTURES[arch](**dict(kwargs))
        self._feature_shape = None
        self.jit_apply = jax.jit(self.apply)

    def apply(self, params: Any, images: jax.Array) -> jax.Array:
        """Logits ``[B, K]`` of images ``[B, H, W, C]`` in [0, 1] (inference mode; pure, jit-able)."""
        return self.module.apply(params, self.prepare(images), train=False)

    def features(self, params: Any, images: jax.Array) -> jax.Array:
        """Last convolutional feature map ``[B, h, w, F]`` of images ``[B, H, W, C]``."""
        return self.module.apply(params, self.prepare(images), train=False, method=self.module.features)

    def head(self, params: Any, fmap: jax.Array) -> jax.Array:
        """Logits ``[B, K]`` from a feature map ``[B, h, w, F]``."""
        self.check_fmap(fmap)
        return self.module.apply(params, fmap, method=self.module.head)

    def variable_shapes(self) -> Any:
        x = jnp.zeros((1, *self.input_shape), jnp.float32)
        return dict(jax.eval_shape(lambda: self.module.init(jax.random.key(0), x)))


@functools.lru_cache(maxsize=256)
def _network(arch: str, kwargs: tuple, input_shape: tuple[int, int, int], normalization=None) -> _Network:
    return _Network(arch, kwargs, input_shape, normalization)


class Classifier:
    """A flax image classifier with its variables, classes and input shape.

    Args:
      arch: architecture name, a key of :data:`ARCHITECTURES`.
      arch_kwargs: keyword arguments of the architecture's constructor (must
        include ``num_classes``; JSON-serialisable values).
      params: the flax variables dict: ``{"params": ...}`` and, for BatchNorm
        models, ``{"batch_stats": ...}``.
      input_shape: ``(H, W, C)`` the model accepts.
      class_names: one name per output logit.
      name: optional display name (e.g. the pretrained model's name).
      normalization: ``None`` (the network takes the [0, 1] images as they
        are), a name of :data:`NORMALIZATIONS` or ``(mean, std)`` per channel:
        ``apply`` and ``features`` compute ``(x - mean) / std`` first.

    Instances are immutable. ``apply``, ``features`` and ``head`` are pure
    functions of ``(params, x)`` shared by all classifiers of the same
    architecture and input shape, so they can be passed to :func:`jax.jit` or
    as static arguments without recompiling per instance.
    """

    def __init__(self, arch: str, arch_kwargs: Mapping[str, Any], params: Any, *,
                 input_shape: Sequence[int], class_names: Sequence[str] | None = None,
                 name: str = "", normalization: Any = None, _net: _NetworkBase | None = None):
        if _net is None and arch not in ARCHITECTURES:
            raise ValueError(f"arch: unknown architecture {arch!r}; valid: {sorted(ARCHITECTURES)}")
        kwargs = {k: _tuplify(v) for k, v in dict(arch_kwargs).items()}
        if "num_classes" not in kwargs:
            raise ValueError("arch_kwargs: must include 'num_classes'")
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape: expected (H, W, C) of positive ints, got {input_shape}")
        num_classes = int(kwargs["num_classes"])
        if class_names is None:
            class_names = [str(i) for i in range(num_classes)]
        class_names = tuple(str(c) for c in class_names)
        if len(class_names) != num_classes:
            raise ValueError(f"class_names: expected {num_classes} names (num_classes), got {len(class_names)}")
        if _net is None:
            if not isinstance(params, Mapping) or "params" not in params:
                raise TypeError("params: expected a flax variables dict with a 'params' entry "
                                f"(and 'batch_stats' for BatchNorm models), got {type(params).__name__}")
            normalization = check_normalization(normalization, channels=input_shape[2])
            net = _network(arch, tuple(sorted(kwargs.items())), input_shape, normalization)
        else:
            net = _net
        object.__setattr__(self, "arch", arch)
        object.__setattr__(self, "arch_kwargs", kwargs)
        object.__setattr__(self, "_net", net)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "input_shape", input_shape)
        object.__setattr__(self, "class_names", list(class_names))
        object.__setattr__(self, "name", name)

    @classmethod
    def from_functions(cls, apply: Callable, params: Any, *, input_shape: Sequence[int],
                       class_names: Sequence[str] | None = None, num_classes: int | None = None,
                       features: Callable | None = None, head: Callable | None = None,
                       normalization: Any = None, name: str = "", arch: str = "function") -> "Classifier":
        """A classifier from pure functions: ``apply(params, x [B, H, W, C]) -> [B, K]``.

        ``x`` reaches ``apply`` normalised (``normalization``, as for the
        flax architectures). ``features(params, x) -> [B, h, w, F]`` and
        ``head(params, fmap) -> [B, K]`` (optional, both or neither) enable
        Grad-CAM. ``params`` is any pytree of arrays; it travels as a traced
        argument through :func:`shapjax.explain`, like a flax model's
        variables. ``num_classes`` defaults to ``len(class_names)``, else is
        read from ``apply``'s output shape. Such a classifier cannot be saved
        with :func:`save_checkpoint` (no architecture to rebuild it from).

        Example:
          >>> import jax.numpy as jnp
          >>> w = {"w": jnp.ones((3, 2))}
          >>> clf = Classifier.from_functions(lambda p, x: x.mean((1, 2)) @ p["w"], w,
          ...                                 input_shape=(4, 4, 3), class_names=["a", "b"])
          >>> clf(jnp.ones((1, 4, 4, 3))).tolist()
          [[3.0, 3.0]]
        """
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape: expected (H, W, C) of positive ints, got {input_shape}")
        template = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), params)
        net = FunctionNetwork(arch, apply, input_shape, features_fn=features, head_fn=head,
                              normalization=check_normalization(normalization, channels=input_shape[2]),
                              params_template=template)
        if num_classes is None:
            if class_names is not None:
                num_classes = len(class_names)
            else:
                out = jax.eval_shape(net.apply, template, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
                if getattr(out, "ndim", None) != 2:
                    raise ValueError(f"apply: expected an output [B, K], got {getattr(out, 'shape', out)}")
                num_classes = int(out.shape[1])
        return cls(arch, {"num_classes": int(num_classes)}, params, input_shape=input_shape,
                   class_names=class_names, name=name, _net=net)

    def __setattr__(self, key, value):
        raise AttributeError("Classifier is immutable; use .replace(params=...)")

    def __repr__(self) -> str:
        n = sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(
            self.params.get("params", {}) if isinstance(self.params, Mapping) and "params" in self.params
            else self.params))
        label = f"{self.name!r}, " if self.name else ""
        return (f"Classifier({label}arch={self.arch!r}, input_shape={self.input_shape}, "
                f"classes={len(self.class_names)}, params={n:,})")

    # ------------------------------------------------------------------ basics
    @property
    def module(self) -> nn.Module:
        """The flax module (``module.apply(params, x, train=False)``; takes normalised inputs)."""
        if not isinstance(self._net, _Network):
            raise TypeError(f"module: this {self.arch!r} classifier is given by functions, not a flax module")
        return self._net.module

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(mean, std)`` per channel applied to the [0, 1] images before the network, or None."""
        return self._net.normalization

    @property
    def is_architecture(self) -> bool:
        """True when the network is one of :data:`ARCHITECTURES` (can be saved and rebuilt from metadata)."""
        return isinstance(self._net, _Network)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_batch_stats(self) -> bool:
        return isinstance(self.params, Mapping) and "batch_stats" in self.params

    def replace(self, *, params: Any = None, class_names: Sequence[str] | None = None,
                name: str | None = None, normalization: Any = "keep") -> "Classifier":
        """A copy with new variables / class names / name / normalisation (same architecture).

        ``normalization="keep"`` (default) keeps it; ``None`` removes it.
        """
        if isinstance(normalization, str) and normalization == "keep":
            normalization = self.normalization
        elif not self.is_architecture:
            raise TypeError(f"normalization: cannot be changed on a {self.arch!r} classifier given by functions "
                            "(give it when importing)")
        return Classifier(self.arch, self.arch_kwargs, self.params if params is None else params,
                          input_shape=self.input_shape,
                          class_names=self.class_names if class_names is None else class_names,
                          name=self.name if name is None else name, normalization=normalization,
                          _net=None if self.is_architecture else self._net)

    # ------------------------------------------------------------ pure maps
    @property
    def apply(self) -> Callable[[Any, jax.Array], jax.Array]:
        """Pure ``apply(params, images) -> logits``: ``[B, H, W, C]`` in [0, 1] -> ``[B, K]``.

        Jit-able; BatchNorm layers use their running statistics (inference
        mode). ``params`` is the whole variables dict. Images of the wrong
        shape raise ValueError, non-float images TypeError.
        """
        return self._net.apply

    @property
    def features(self) -> Callable[[Any, jax.Array], jax.Array]:
        """Pure ``features(params, images) -> fmap``: ``[B, H, W, C]`` -> ``[B, h, w, F]``.

        The last convolutional feature map (what Grad-CAM weights).
        """
        return self._net.features

    @property
    def head(self) -> Callable[[Any, jax.Array], jax.Array]:
        """Pure ``head(params, fmap) -> logits``: ``[B, h, w, F]`` -> ``[B, K]``.

        ``head(params, features(params, x)) == apply(params, x)``.
        """
        return self._net.head

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """``(h, w, F)`` of the map returned by :attr:`features`."""
        return self._net.feature_shape

    def __call__(self, images: jax.Array) -> jax.Array:
        """Logits ``[B, K]`` of ``images [B, H, W, C]`` with this classifier's variables (jitted)."""
        self._net.check_images(images)
        return self._net.jit_apply(self.params, images)

    def predict_proba(self, images: jax.Array) -> jax.Array:
        """Softmax probabilities ``[B, K]``."""
        return jax.nn.softmax(self(images), axis=-1)

    # --------------------------------------------------------------- metadata
    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description used by :func:`save_checkpoint`."""
        return {
            "format": CHECKPOINT_FORMAT,
            "name": self.name,
            "architecture": self.arch,
            "architecture_kwargs": {k: _listify(v) for k, v in self.arch_kwargs.items()},
            "input_shape": list(self.input_shape),
            "normalization": None if self.normalization is None else {
                "mean": list(self.normalization[0]), "std": list(self.normalization[1])},
            "class_names": list(self.class_names),
            "variables": sorted(self.params.keys()) if isinstance(self.params, Mapping) else [],
        }


def _freeze(v):
    if isinstance(v, dict):
        return ("__dict__", tuple((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("__list__", tuple(_freeze(x) for x in v))
    return v


def _thaw(v):
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "__dict__":
        return {k: _thaw(x) for k, x in v[1]}
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "__list__":
        return [_thaw(x) for x in v[1]]
    return v


def _flatten_classifier(clf: Classifier):
    """A Classifier is a pytree: its variables are the children, everything else is static."""
    aux = tuple((k, _freeze(v)) for k, v in vars(clf).items() if k != "params")
    return (clf.params,), aux


def _unflatten_classifier(aux, children) -> Classifier:
    clf = object.__new__(Classifier)
    for k, v in aux:
        object.__setattr__(clf, k, _thaw(v))
    object.__setattr__(clf, "params", children[0])
    return clf


# Models are data: jax.jit / shapjax.explain pass a Classifier's variables as traced arguments.
jax.tree_util.register_pytree_node(Classifier, _flatten_classifier, _unflatten_classifier)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_jit(module: nn.Module, key: jax.Array, input_shape: tuple[int, int, int]) -> Any:
    # Flax draws once per parameter tensor; each threefry draw is a separately compiled kernel
    # (about 0.3 s of XLA compilation each on a CPU, minutes summed over ResNet-50's 160 tensors).
    # One threefry draw of 128 bits seeds XLA's RngBitGenerator, which makes the rest cheap.
    seed = jax.random.bits(key, (4,), jnp.uint32)
    return module.init(jax.random.wrap_key_data(seed, impl="rbg"), jnp.zeros((1, *input_shape), jnp.float32))


def _init_variables(module: nn.Module, key: jax.Array, input_shape: tuple[int, int, int]) -> dict:
    if not hasattr(key, "dtype") or not (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                         or (key.dtype == jnp.uint32 and key.shape == (2,))):
        raise TypeError(f"key: expected a jax PRNG key (jax.random.key(seed)), got {type(key).__name__}")
    return dict(_init_jit(module, key, input_shape))


@keyword_key
def create(arch: str, *, key, input_shape: Sequence[int], num_classes: int | None = None,
           class_names: Sequence[str] | None = None, name: str = "", **arch_kwargs: Any) -> Classifier:
    """Initialise a :class:`Classifier` of architecture ``arch``.

    Args:
      key: PRNG key for the initial weights. One 128-bit draw from it seeds
        XLA's RngBitGenerator, which draws the weights (much faster to compile
        than one threefry kernel per tensor); the result is a deterministic
        function of the key on a given backend.
      arch: one of :data:`ARCHITECTURES` (``"small_cnn"``, ``"resnet18"``,
        ``"resnet50"``, ``"resnet"``).
      input_shape: ``(H, W, C)``.
      num_classes: number of logits (default: ``len(class_names)``).
      class_names: one name per logit (default ``"0".."K-1"``).
      **arch_kwargs: forwarded to the architecture (e.g. ``widths``, ``width``).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: unknown architecture {arch!r}; valid: {sorted(ARCHITECTURES)}")
    if num_classes is None:
        if class_names is None:
            raise ValueError("num_classes: give num_classes or class_names")
        num_classes = len(class_names)
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names: expected {num_classes} names (num_classes), got {len(class_names)}")
    kwargs = dict(arch_kwargs, num_classes=int(num_classes))
    module = ARCHITECTURES[arch](**{k: _tuplify(v) for k, v in kwargs.items()})
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape: expected (H, W, C) of positive ints, got {input_shape}")
    variables = _init_variables(module, key, input_shape)
    return Classifier(arch, kwargs, variables, input_shape=input_shape, class_names=class_names, name=name)


@keyword_key
def small_cnn(*, key, num_classes: int = 10, input_shape: Sequence[int] = (28, 28, 1),
              widths: Sequence[int] = (32, 64, 128), hidden: int = 128,
              class_names: Sequence[str] | None = None) -> Classifier:
    """Small CNN for 28x28 digits (about 110k parameters with the default widths).

    Args:
      key: PRNG key for the initial weights.
      num_classes: number of logits K.
      input_shape: ``(H, W, C)``.
      widths: 3x3 conv channels; all but the last followed by 2x2 max pooling.
      hidden: hidden width of the head (0 for a linear head).
    """
    return create("small_cnn", key=key, input_shape=input_shape, num_classes=num_classes,
                  class_names=class_names, widths=tuple(widths), hidden=hidden)


@keyword_key
def resnet18(*, key, num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3),
             stem: str = "cifar", class_names: Sequence[str] | None = None) -> Classifier:
    """ResNet-18 for 32x32 (CIFAR-10 shaped) images; 11.2M parameters with 10 classes."""
    return create("resnet18", key=key, input_shape=input_shape, num_classes=num_classes,
                  class_names=class_names, stem=stem)


@keyword_key
def resnet50(*, key, num_classes: int = 1000, input_shape: Sequence[int] = (224, 224, 3),
             stem: str = "imagenet", class_names: Sequence[str] | None = None) -> Classifier:
    """ResNet-50 for 224x224 (ImageNet shaped) images; 25.6M parameters with 1000 classes.

    Initialising takes several seconds on a CPU (XLA compiles the initialiser).
    """
    return create("resnet50", key=key, input_shape=input_shape, num_classes=num_classes,
                  class_names=class_names, stem=stem)
