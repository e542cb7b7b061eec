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
      n_evals: game evaluations (coalitions) spent per image (static; with ``tol=`` under your own
        ``jax.jit`` the cap, and ``evals`` holds the count).
      evals: with ``tol=``, the evaluations spent per image (int32 array); None otherwise.
      rse: with ``tol=``, the relative standard error reached (the largest over images and outputs).
    """

    values: jax.Array
    base_values: jax.Array
    full_values: jax.Array
    std: Any
    segments: jax.Array
    images: jax.Array
    output_indexes: jax.Array
    evals: Any = None
    rse: Any = None
    method: str = struct.field(pytree_node=False, default="")
    masker: str = struct.field(pytree_node=False, default="")
    n_evals: int = struct.field(pytree_node=False, default=0)

    def check(self) -> "Explanation":
        """Raise a ``ValueError`` if any value is NaN or infinite (waits for the values); returns ``self``.

        ``explain`` does this itself unless called with ``check_result=False``.
        """
        import numpy as np

        if not np.all(np.isfinite(np.asarray(self.values))):
            from shapjax.engine.shapley import raise_not_finite

            raise_not_finite("model_fn", self.base_values, self.full_values, self.method, self.n_evals)
        return self

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

    def labels(self, class_names=None):
        """``[B, K]`` names of the explained outputs, row by row (class names, or ``"class i"``).

        For shap's image plot when rows explain different classes (``outputs="top-k"``):
        ``shap.plots.image(exp.to_shap(), labels=exp.labels(class_names))``.
        """
        import numpy as np

        idx = np.asarray(self.output_indexes)
        if class_names is None:
            return np.vectorize(lambda i: f"class {i}")(idx)
        names = list(class_names)
        if idx.size and int(idx.max()) >= len(names):
            raise ValueError(f"class_names: {len(names)} names, but the explanation explains output "
                             f"{int(idx.max())}; expected at least {int(idx.max()) + 1} names")
        return np.asarray([[str(names[i]) for i in row] for row in idx], dtype=object)

    def to_shap(self, *, class_names=None):
        """Convert to a ``shap.Explanation`` that shap's plots and indexing accept.

        ``values`` become pixel attributions ``[B, H, W, C, K]`` (each segment's
        value spread evenly over its pixels and channels, so they sum back to
        the segment value), ``base_values`` ``[B, K]``, ``data`` the images.
        ``output_names`` is one flat list of K names (shap supports no per-row
        names): the class names when every row explains the same classes, else
        ``"output 0".."output K-1"``; pass per-row labels to the plot then:
        ``shap.plots.image(s, labels=exp.labels(class_names))``. Needs
        ``pip install 'shapjax[shap]'``.

        Example:
          >>> s = exp.to_shap(class_names=names)           # doctest: +SKIP
          >>> shap.plots.image(s)                          # doctest: +SKIP
          >>> s[0].values.shape                            # doctest: +SKIP
          (28, 28, 1, 3)
        """
        try:
            import shap
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_shap() needs the optional dependency shap: pip install 'shapjax[shap]'") from e
        import numpy as np

        C = self.images.shape[-1]
        pix = np.asarray(self.to_pixels()) / C  # [B,H,W,K]
        vals = np.repeat(pix[:, :, :, None, :], C, axis=3)
        rows = self.labels(class_names)  # checks class_names
        idx = np.asarray(self.output_indexes)
        same = bool((idx == idx[:1]).all())
        names = [str(n) for n in rows[0]] if same else [f"output {j}" for j in range(idx.shape[1])]
        return shap.Explanation(
            values=vals,
            base_values=np.asarray(self.base_values),
            data=np.asarray(self.images),
            output_names=names,
        )
