"""Residual networks (ResNet-18 for 32x32 inputs, ResNet-50 for 224x224 inputs).

A residual block computes

.. math::

    y = \\mathrm{ReLU}\\big(\\mathcal{F}(x) + P(x)\\big),

where :math:`\\mathcal{F}` is two 3x3 convolutions (basic block, ResNet-18) or
a 1x1-3x3-1x1 bottleneck (ResNet-50), each followed by batch normalisation,
and :math:`P` is the identity or a strided 1x1 convolution + BN when the shape
changes. Strides sit on the 3x3 convolution of the bottleneck ("ResNet v1.5",
the torchvision layout), so the parameter counts match torchvision exactly
(ResNet-50 with 1000 classes: 25,557,032 parameters).

Two stems: ``"imagenet"`` (7x7/2 convolution + 3x3/2 max pooling, for 224x224
inputs) and ``"cifar"`` (a single 3x3/1 convolution, for 32x32 inputs, as in
He et al. Sec. 4.2 and most CIFAR ResNet-18 implementations).

``normalize=True`` (the default) standardises the ``[0, 1]`` inputs with the
ImageNet channel statistics inside the module; ``normalize=False`` leaves the
input as it comes, for classifiers that carry their own normalisation
(:attr:`shapjax.models.Classifier.normalization`, e.g. an imported torchvision
ResNet with the CIFAR-10 statistics).

BatchNorm uses batch statistics when ``train=True`` (update the
``batch_stats`` collection with ``mutable=["batch_stats"]``) and running
statistics at inference.

References:
  K. He, X. Zhang, S. Ren, J. Sun. "Deep residual learning for image
  recognition." CVPR 2016. arXiv:1512.03385.
  S. Ioffe, C. Szegedy. "Batch normalization: accelerating deep network
  training by reducing internal covariate shift." ICML 2015.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _bn(name: str, zero_init: bool = False) -> nn.BatchNorm:
    return nn.BatchNorm(momentum=0.9, epsilon=1e-5, name=name,
                        scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones)


_conv = partial(nn.Conv, use_bias=False,
                kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    features: int
    strides: int = 1
    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        ura = not train
        out_ch = self.features * self.expansion
        y = _conv(self.features, (3, 3), strides=self.strides, padding=1, name="conv1")(x)
        y = nn.relu(_bn("bn1")(y, use_running_average=ura))
        y = _conv(self.features, (3, 3), padding=1, name="conv2")(y)
        y = _bn("bn2", zero_init=True)(y, use_running_average=ura)
        if self.strides != 1 or x.shape[-1] != out_ch:
            x = _conv(out_ch, (1, 1), strides=self.strides, name="proj_conv")(x)
            x = _bn("proj_bn")(x, use_running_average=ura)
        return nn.relu(x + y)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 bottleneck with a residual connection (ResNet-50+)."""

    features: int
    strides: int = 1
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        ura = not train
        out_ch = self.features * self.expansion
        y = _conv(self.features, (1, 1), name="conv1")(x)
        y = nn.relu(_bn("bn1")(y, use_running_average=ura))
        y = _conv(self.features, (3, 3), strides=self.strides, padding=1, name="conv2")(y)
        y = nn.relu(_bn("bn2")(y, use_running_average=ura))
        y = _conv(out_ch, (1, 1), name="conv3")(y)
        y = _bn("bn3", zero_init=True)(y, use_running_average=ura)
        if self.strides != 1 or x.shape[-1] != out_ch:
            x = _conv(out_ch, (1, 1), strides=self.strides, name="proj_conv")(x)
            x = _bn("proj_bn")(x, use_running_average=ura)
        return nn.relu(x + y)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """Generic ResNet: stem, four stages of residual blocks, GAP + linear head.

    Attributes:
      stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` (ResNet-18) or
        ``(3, 4, 6, 3)`` (ResNet-50).
      block: ``"basic"`` or ``"bottleneck"``.
      num_classes: number of logits K.
      stem: ``"imagenet"`` (7x7/2 conv + max pool) or ``"cifar"`` (3x3/1 conv).
      width: channels of the first stage (doubles every stage).
      normalize: standardise the inputs with the ImageNet mean/std first
        (``False``: the caller normalises, see :class:`~shapjax.models.Classifier`).
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: str = "basic"
    num_classes: int = 10
    stem: str = "cifar"
    width: int = 64
    normalize: bool = True

    def setup(self):
        if self.block not in _BLOCKS:
            raise ValueError(f"block: expected one of {sorted(_BLOCKS)}, got {self.block!r}")
        if self.stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem: expected 'imagenet' or 'cifar', got {self.stem!r}")
        block_cls = _BLOCKS[self.block]
        if self.stem == "imagenet":
            self.stem_conv = _conv(self.width, (7, 7), strides=2, padding=3, name="stem_conv")
        else:
            self.stem_conv = _conv(self.width, (3, 3), strides=1, padding=1, name="stem_conv")
        self.stem_bn = _bn("stem_bn")
        blocks = []
        for s, n_blocks in enumerate(self.stage_sizes):
            for b in range(n_blocks):
                strides = 2 if (s > 0 and b == 0) else 1
                blocks.append(block_cls(self.width * 2 ** s, strides, name=f"stage{s + 1}_block{b + 1}"))
        self.blocks = blocks
        self.fc = nn.Dense(int(self.num_classes), name="fc")

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``[B, H, W, 3]`` in [0, 1] -> last stage's feature map ``[B, h, w, F]``.

        ``h = H/32`` (imagenet stem) or ``H/8`` (cifar stem); ``F = 8 * width *
        expansion`` (512 for ResNet-18, 2048 for ResNet-50).
        """
        if self.normalize:
            mean = jnp.asarray(_IMAGENET_MEAN[: x.shape[-1]], x.dtype)
            std = jnp.asarray(_IMAGENET_STD[: x.shape[-1]], x.dtype)
            x = (x - mean) / std
        x = nn.relu(self.stem_bn(self.stem_conv(x), use_running_average=not train))
        if self.stem == "imagenet":
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for blk in self.blocks:
            x = blk(x, train)
        return x

    def head(self, fmap: jax.Array) -> jax.Array:
        """Feature map ``[B, h, w, F]`` -> logits ``[B, K]`` (global average pool + linear)."""
        return self.fc(jnp.mean(fmap, axis=(1, 2)))

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.head(self.features(x, train))


def ResNet18(num_classes: int = 10, *, stem: str = "cifar", width: int = 64, normalize: bool = True) -> ResNet:
    """ResNet-18 module (basic blocks, 2-2-2-2)."""
    return ResNet(stage_sizes=(2, 2, 2, 2), block="basic", num_classes=num_classes,
                  stem=stem, width=width, normalize=normalize)


def ResNet50(num_classes: int = 1000, *, stem: str = "imagenet", width: int = 64, normalize: bool = True) -> ResNet:
    """ResNet-50 module (bottleneck blocks, 3-4-6-3)."""
    return ResNet(stage_sizes=(3, 4, 6, 3), block="bottleneck", num_classes=num_classes,
                  stem=stem, width=width, normalize=normalize)
