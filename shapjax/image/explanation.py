"""The result of an image explanation: :class:`Explanation` (a pytree)."""
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

    def to_shap(self, *, class_names=None):
        """Convert to a ``shap.Explanation`` so shap's plots work on this result.

        ``values`` become pixel attributions ``[B, H, W, C, K]`` (each segment's
        value spread evenly over its pixels and channels, so they sum back to
        the segment value), ``base_values`` ``[B, K]``, ``data`` the images, and
        ``output_names`` the class names of the explained outputs (when given).
        Use e.g. ``shap.image_plot(exp.to_shap())``. Needs ``pip install shap``.
        """
        try:
            import shap
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_shap() needs the optional dependency shap: pip install 'shapjax[shap]'") from e
        import numpy as np

        C = self.images.shape[-1]
        pix = np.asarray(self.to_pixels()) / C  # [B,H,W,K]
        vals = np.repeat(pix[:, :, :, None, :], C, axis=3)
        names = None
        if class_names is not None:
            idx = np.asarray(self.output_indexes)
            names = [[class_names[i] for i in row] for row in idx]
        return shap.Explanation(
            values=vals,
            base_values=np.asarray(self.base_values),
            data=np.asarray(self.images),
            output_names=names,
        )
