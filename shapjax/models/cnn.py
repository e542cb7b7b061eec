"""A small convolutional network for small images (28x28 digits, 32x32 synthetic data).

The network is split at the last convolutional feature map so that Grad-CAM
style methods can reach it:

.. math::

    f(x) = \\mathrm{head}(\\mathrm{features}(x)), \\qquad
    \\mathrm{features}(x) \\in \\mathbb{R}^{B \\times h \\times w \\times F}.

``features`` is a stack of 3x3 convolutions with ReLU, each but the last
followed by 2x2 max pooling; ``head`` is global average pooling followed by a
small MLP. Global average pooling keeps the classifier location-invariant,
which is what the planted-patch task needs, and keeps the parameter count low
(about 110k for the default widths on 28x28x1 inputs).

References:
  Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. "Gradient-based learning applied
  to document recognition." Proc. IEEE, 1998.
  M. Lin, Q. Chen, S. Yan. "Network in network" (global average pooling).
  ICLR 2014. arXiv:1312.4400.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class SmallCNN(nn.Module):
    """Conv(3x3)-ReLU-[MaxPool] stack, then GAP -> Dense -> ReLU -> Dense.

    Attributes:
      num_classes: number of output logits K.
      widths: channel count of each 3x3 convolution; all but the last are
        followed by 2x2 max pooling, so ``len(widths) - 1`` halvings.
      hidden: width of the hidden dense layer of the head (0 for none).
    """

    num_classes: int = 10
    widths: Sequence[int] = (32, 64, 128)
    hidden: int = 128

    def setup(self):
        self.convs = [nn.Conv(int(w), (3, 3), padding="SAME", name=f"conv{i}")
                      for i, w in enumerate(self.widths)]
        if self.hidden:
            self.fc_hidden = nn.Dense(int(self.hidden), name="fc_hidden")
        self.fc_out = nn.Dense(int(self.num_classes), name="fc_out")

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``[B, H, W, C]`` in [0, 1] -> last conv feature map ``[B, h, w, F]``."""
        del train  # no batch-dependent layers
        x = 2.0 * x - 1.0  # centre the [0, 1] input
        for i, conv in enumerate(self.convs):
            x = nn.relu(conv(x))
            if i < len(self.convs) - 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        return x

    def head(self, fmap: jax.Array) -> jax.Array:
        """Feature map ``[B, h, w, F]`` -> logits ``[B, K]``."""
        x = jnp.mean(fmap, axis=(1, 2))
        if self.hidden:
            x = nn.relu(self.fc_hidden(x))
        return self.fc_out(x)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.head(self.features(x, train))
