"""Image classifiers (flax linen) with Grad-CAM access, checkpoints and shipped weights.

- :func:`small_cnn` (28x28 digits), :func:`resnet18` (32x32), :func:`resnet50`
  (224x224): each returns a :class:`Classifier` with pure
  ``apply(params, images) -> logits``, ``features(params, images) -> [B, h, w, F]``
  and ``head(params, fmap) -> logits``.
- :func:`pretrained` loads the shipped ``"mnist-cnn"`` and ``"planted-patch"``
  models offline.
- :func:`save_checkpoint` / :func:`load_checkpoint`: flax msgpack + JSON metadata.
- :class:`InceptionV3` (Keras's layout) and :mod:`shapjax.models.importers`:
  torch ResNets, Keras, ONNX and orbax checkpoints, each as a :class:`Classifier`.
"""
from .checkpoint import load_checkpoint, read_metadata, save_checkpoint
from .classifier import ARCHITECTURES, Classifier, create, resnet18, resnet50, small_cnn
from .cnn import SmallCNN
from .inception import InceptionV3
from .network import NORMALIZATIONS, FunctionNetwork, check_normalization
from .pretrained import available, metadata, pretrained
from .resnet import ResNet, ResNet18, ResNet50

__all__ = [
    "ARCHITECTURES", "Classifier", "create", "small_cnn", "resnet18", "resnet50",
    "save_checkpoint", "load_checkpoint", "read_metadata",
    "pretrained", "available", "metadata",
    "SmallCNN", "ResNet", "ResNet18", "ResNet50", "InceptionV3",
    "NORMALIZATIONS", "FunctionNetwork", "check_normalization",
]
