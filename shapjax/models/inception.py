"""Inception-v3 (Szegedy et al. 2016) in the layout of ``keras.applications.InceptionV3``.

Every convolution is a "conv-BN" unit, as in Keras:

.. math::

    u(x) = \\mathrm{ReLU}\\Big(\\frac{W * x - \\mu}{\\sqrt{\\sigma^2 + 10^{-3}}} + \\beta\\Big),

a bias-free convolution, batch normalisation without a scale (``scale=False``,
epsilon 1e-3) and a ReLU. The network is a stem of five units and two max
pools, then the mixed blocks ``mixed0`` ... ``mixed10`` (the Inception-A, -B,
-C, -D and -E modules of the paper's Fig. 5-7 and 10) whose branches are
concatenated along the channels, a global average pool and a linear layer.
The 3x3 average pools of the branches count only the pixels inside the image
(``padding="same"`` in Keras), the convolutions use Keras's ``"same"`` /
``"valid"`` paddings.

The units are named ``conv0`` ... ``conv93`` (under ``body``) in the order in which Keras's
``inception_v3.py`` creates them, so the n-th ``Conv2D`` / ``BatchNormalization``
layer Keras creates (``conv2d_<n>``, ``batch_normalization_<n>``) is ``conv<n>``
here (see :mod:`shapjax.models.importers.keras`). The module takes normalised
inputs; Keras's ``preprocess_input`` for this network maps [0, 255] to
[-1, 1], i.e. ``(x - 0.5) / 0.5`` on [0, 1] images, which the importer stores
as the :class:`~shapjax.models.Classifier` normalisation.

Inputs must be at least 75x75 (Keras's minimum); 299x299 is the ImageNet size.

References:
  C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna. "Rethinking the
  Inception architecture for computer vision." CVPR 2016. arXiv:1512.00567.
"""
from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp

#: Number of conv-BN units (Keras's Conv2D layers) in Inception-v3.
N_UNITS = 94


class ConvBN(nn.Module):
    """Bias-free convolution + BatchNorm (no scale, eps 1e-3) + ReLU, as Keras's ``conv2d_bn``."""

    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: str = "SAME"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Conv(self.features, self.kernel, strides=self.strides, padding=self.padding, use_bias=False,
                    name="conv")(x)
        x = nn.BatchNorm(use_running_average=not train, use_scale=False, epsilon=1e-3, momentum=0.99,
                         name="bn")(x)
        return nn.relu(x)


def _max_pool(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


def _avg_pool(x):
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)


class InceptionBody(nn.Module):
    """Stem and mixed blocks: normalised images ``[B, H, W, 3]`` -> ``mixed10`` map ``[B, h, w, 2048]``."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        counter = itertools.count()

        def u(x, filters, kh, kw, train, *, strides=1, padding="SAME"):
            return ConvBN(filters, (kh, kw), strides, padding, name=f"conv{next(counter)}")(x, train)

        cat = lambda *xs: jnp.concatenate(xs, axis=-1)  # noqa: E731
        x = u(x, 32, 3, 3, train, strides=2, padding="VALID")
        x = u(x, 32, 3, 3, train, padding="VALID")
        x = u(x, 64, 3, 3, train)
        x = _max_pool(x)
        x = u(x, 80, 1, 1, train, padding="VALID")
        x = u(x, 192, 3, 3, train, padding="VALID")
        x = _max_pool(x)
        for pool_filters in (32, 64, 64):  # mixed0-2 (Inception-A): 35 x 35 x 256/288/288
            b1 = u(x, 64, 1, 1, train)
            b5 = u(u(x, 48, 1, 1, train), 64, 5, 5, train)
            b3 = u(u(u(x, 64, 1, 1, train), 96, 3, 3, train), 96, 3, 3, train)
            bp = u(_avg_pool(x), pool_filters, 1, 1, train)
            x = cat(b1, b5, b3, bp)
        # mixed3 (reduction): 17 x 17 x 768
        b3 = u(x, 384, 3, 3, train, strides=2, padding="VALID")
        bd = u(u(u(x, 64, 1, 1, train), 96, 3, 3, train), 96, 3, 3, train, strides=2, padding="VALID")
        x = cat(b3, bd, _max_pool(x))
        for c in (128, 160, 160, 192):  # mixed4-7 (Inception-B, factorised 7x7): 17 x 17 x 768
            b1 = u(x, 192, 1, 1, train)
            b7 = u(u(u(x, c, 1, 1, train), c, 1, 7, train), 192, 7, 1, train)
            bd = u(x, c, 1, 1, train)
            bd = u(u(u(u(bd, c, 7, 1, train), c, 1, 7, train), c, 7, 1, train), 192, 1, 7, train)
            bp = u(_avg_pool(x), 192, 1, 1, train)
            x = cat(b1, b7, bd, bp)
        # mixed8 (reduction): 8 x 8 x 1280
        b3 = u(u(x, 192, 1, 1, train), 320, 3, 3, train, strides=2, padding="VALID")
        b7 = u(u(u(x, 192, 1, 1, train), 192, 1, 7, train), 192, 7, 1, train)
        b7 = u(b7, 192, 3, 3, train, strides=2, padding="VALID")
        x = cat(b3, b7, _max_pool(x))
        for _ in range(2):  # mixed9-10 (Inception-C, expanded filter bank): 8 x 8 x 2048
            b1 = u(x, 320, 1, 1, train)
            b3 = u(x, 384, 1, 1, train)
            b3 = cat(u(b3, 384, 1, 3, train), u(b3, 384, 3, 1, train))
            bd = u(u(x, 448, 1, 1, train), 384, 3, 3, train)
            bd = cat(u(bd, 384, 1, 3, train), u(bd, 384, 3, 1, train))
            bp = u(_avg_pool(x), 192, 1, 1, train)
            x = cat(b1, b3, bd, bp)
        return x


class InceptionV3(nn.Module):
    """Inception-v3 classifier ``[B, H, W, 3] -> [B, K]`` (H, W >= 75; logits, no softmax).

    Attributes:
      num_classes: number of logits K.
    """

    num_classes: int = 1000

    def setup(self):
        self.body = InceptionBody(name="body")
        self.fc = nn.Dense(int(self.num_classes), name="fc")

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Normalised images ``[B, H, W, 3]`` -> the ``mixed10`` feature map ``[B, h, w, 2048]``.

        ``h = floor((H - 75) / 32) + 1`` (8 at 299, 1 at 75).
        """
        if x.shape[1] < 75 or x.shape[2] < 75:
            raise ValueError(f"images: InceptionV3 needs inputs of at least 75x75, got {x.shape[1]}x{x.shape[2]}")
        return self.body(x, train)

    def head(self, fmap: jax.Array) -> jax.Array:
        """Feature map ``[B, h, w, 2048]`` -> logits ``[B, K]`` (global average pool + linear)."""
        return self.fc(jnp.mean(fmap, axis=(1, 2)))

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.head(self.features(x, train))
