"""Device-level numerical building blocks of the shapjax hot path (plain jax.numpy)."""
from .masking import (
    coalition_to_pixel_mask,
    coalitions_to_pixel_masks,
    compose,
    compose_batch,
)

__all__ = [
    "coalition_to_pixel_mask",
    "coalitions_to_pixel_masks",
    "compose",
    "compose_batch",
]
