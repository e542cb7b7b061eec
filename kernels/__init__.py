"""Device-level numerical building blocks of the shapjax hot path (plain jax.numpy)."""
from .masking import (
    coalition_to_pixel_mask,
    coalitions_to_pixel_masks,
    compose,
    compose_batch,
    compose_rows,
)
from .weights import (
    cosine_distance_to_full,
    leverage_size_mass,
    lime_kernel,
    shapley_kernel_size_mass,
    shapley_kernel_weight,
    shapley_value_weights,
)
from .wls import constrained_wls, weighted_ridge

__all__ = [
    "coalition_to_pixel_mask",
    "coalitions_to_pixel_masks",
    "compose",
    "compose_batch",
    "compose_rows",
    "constrained_wls",
    "cosine_distance_to_full",
    "leverage_size_mass",
    "lime_kernel",
    "shapley_kernel_size_mass",
    "shapley_kernel_weight",
    "shapley_value_weights",
    "weighted_ridge",
]
