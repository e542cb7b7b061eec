"""Image explanations: the `Explanation` result (the facade `explain` is added below)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Explanation:
    """Per-segment attributions for a batch of images (a pytree).

    Attributes:
      values: ``[B, M, K]`` attribution of each of the M segments to each of
        the K explained outputs.
      base_values: ``[B, K]`` model output with every segment absent, v(empty).
      full_values: ``[B, K]`` model output on the unmasked image, v(all).
      std: ``[B, M, K]`` standard errors where the method defines them, else None.
      segments: ``[B, H, W]`` int segment id per pixel (ids 0..M-1).
      images: ``[B, H, W, C]`` the explained images.
      output_indexes: ``[B, K]`` int, which model output each column explains.
      method: name of the method (static).
      masker: description of what an absent segment became (static).
      n_evals: game evaluations (coalitions) spent per image (static).
    """

    values: jax.Array
    base_values: jax.Array
    full_values: jax.Array
    std: Any
    segments: jax.Array
    images: jax.Array
    output_indexes: jax.Array
    method: str = struct.field(pytree_node=False, default="")
    masker: str = struct.field(pytree_node=False, default="")
    n_evals: int = struct.field(pytree_node=False, default=0)

    @property
    def n_segments(self) -> int:
        return self.values.shape[1]

    def to_pixels(self) -> jax.Array:
        """Spread each segment's value over its pixels: ``[B, H, W, K]``.

        Every pixel of segment j carries ``values[b, j, k]`` divided by the
        number of pixels in segment j, so summing a segment's pixels gives back
        ``values[b, j, k]``.
        """
        M = self.values.shape[1]
        onehot = jax.nn.one_hot(self.segments, M, dtype=self.values.dtype)  # [B,H,W,M]
        counts = jnp.maximum(onehot.sum(axis=(1, 2)), 1.0)  # [B,M]
        per_pixel = self.values / counts[:, :, None]  # [B,M,K]
        return jnp.einsum("bhwm,bmk->bhwk", onehot, per_pixel)
