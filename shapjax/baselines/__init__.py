"""The traditional attribution methods SHAP is compared with: gradients, integrated gradients,
SmoothGrad, expected gradients, Grad-CAM and sliding-window occlusion (LIME and segment occlusion
are game-level estimators in :mod:`shapjax.engine.estimators`)."""
from shapjax.baselines import gradients
from shapjax.baselines.gradients import (
                                         PixelAttribution,
                                         expected_gradients,
                                         grad_cam,
                                         gradient_shap,
                                         gradient_x_input,
                                         integrated_gradients,
                                         occlusion,
                                         smoothgrad,
                                         vanilla_gradient,
)

__all__ = ["gradients", "PixelAttribution", "vanilla_gradient", "gradient_x_input", "integrated_gradients",
           "smoothgrad", "expected_gradients", "gradient_shap", "grad_cam", "occlusion"]
