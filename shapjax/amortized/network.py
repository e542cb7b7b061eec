"""The explainer network: image ``[B, H, W, C]`` -> raw segment attributions ``[B, M, K]``.

A small convolutional trunk (3x3 convolutions with ReLU, 2x2 max pooling after
all but the last) keeps the spatial layout; the flattened feature map goes
through a dense layer to an ``M x K`` head, one value per (segment, output).
Efficiency is imposed afterwards by additive normalisation
(:func:`shapjax.amortized.objective.normalize`), as in FastSHAP.

References:
  N. Jethani, M. Sudarshan, I. Covert, S.-I. Lee, R. Ranganath. "FastSHAP:
  Real-time Shapley value estimation." ICLR 2022.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class ExplainerNet(nn.Module):
    """Conv(3x3)-ReLU-[MaxPool] stack -> flatten -> Dense -> ReLU -> Dense(M*K).

    Attributes:
      n_players: M, the number of segments.
      n_outputs: K, the number of explained model outputs.
      widths: channels of each convolution (all but the last followed by 2x2 max pooling).
      hidden: width of the dense layer before the head.
    """

    n_players: int
    n_outputs: int
    widths: Sequence[int] = (32, 64, 64)
    hidden: int = 256

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = 2.0 * x - 1.0
        for i, w in enumerate(self.widths):
            x = nn.relu(nn.Conv(int(w), (3, 3), padding="SAME", name=f"conv{i}")(x))
            if i < len(self.widths) - 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(int(self.hidden), name="fc_hidden")(x))
        out = nn.Dense(int(self.n_players) * int(self.n_outputs), name="fc_out",
                       kernel_init=nn.initializers.zeros)(x)
        return out.reshape(x.shape[0], int(self.n_players), int(self.n_outputs))


def init_params(net: ExplainerNet, input_shape, *, key) -> dict:
    """The variables of ``net`` for images of shape ``input_shape = (H, W, C)``."""
    return net.init(key, jnp.zeros((1, *tuple(int(s) for s in input_shape)), jnp.float32))
