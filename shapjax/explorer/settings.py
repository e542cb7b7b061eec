"""Explanation settings: a method, a segmentation and a masker, named by one string.

A setting's name is ``METHOD|SEGMENTS|MASKER`` for the Shapley/LIME methods
(``kernel|grid:8x8|blur:3``, ``lime|slic:40|segment_mean``) and the bare
method for the pixel methods (``gradcam``, ``ig``), which have no players.
The segmenter and masker specs are those of ``shapjax explain``.
"""
from __future__ import annotations

from dataclasses import dataclass

#: segment methods (shapjax.explain) and pixel methods (shapjax.baselines)
SEGMENT_METHODS = ("kernel", "leverage", "partition", "lime", "permutation", "exact")
PIXEL_METHODS = ("gradcam", "ig")
METHOD_LABELS = {"kernel": "KernelSHAP", "leverage": "Leverage SHAP", "partition": "Partition (Owen)",
                 "lime": "LIME", "permutation": "Permutation SHAP", "exact": "exact Shapley",
                 "gradcam": "Grad-CAM", "ig": "Integrated Gradients"}


@dataclass(frozen=True)
class Setting:
    """One way of explaining: ``method`` with ``segments`` and ``masker`` (None for pixel methods)."""

    method: str
    segments: str | None = None
    masker: str | None = None

    @property
    def name(self) -> str:
        return self.method if self.method in PIXEL_METHODS else f"{self.method}|{self.segments}|{self.masker}"

    @property
    def pixel(self) -> bool:
        return self.method in PIXEL_METHODS

    def describe(self) -> dict:
        return {"name": self.name, "method": self.method, "method_label": METHOD_LABELS.get(self.method, self.method),
                "segmentation": self.segments or "pixels",
                "masker": self.masker or ("zero baseline" if self.method == "ig" else "none (gradients)")}


def parse_setting(name: str) -> Setting:
    """``"kernel|grid:8x8|blur:3"`` or ``"gradcam"`` -> :class:`Setting` (the specs are checked here)."""
    from shapjax.image.maskers import get_masker
    from shapjax.image.segment import get_segmenter

    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"setting: expected a name like 'kernel|grid:8x8|blur:3' or 'gradcam', got {name!r}")
    parts = [p.strip() for p in name.strip().split("|")]
    method = parts[0].lower()
    if method in PIXEL_METHODS:
        if len(parts) != 1:
            raise ValueError(f"setting {name!r}: the pixel method {method!r} takes no segments or masker")
        return Setting(method)
    if method not in SEGMENT_METHODS:
        raise ValueError(f"setting {name!r}: unknown method {method!r}; expected one of "
                         f"{', '.join(SEGMENT_METHODS + PIXEL_METHODS)}")
    if len(parts) != 3:
        raise ValueError(f"setting {name!r}: expected METHOD|SEGMENTS|MASKER, e.g. 'kernel|grid:8x8|blur:3'")
    get_segmenter(parts[1])
    if parts[2] != "mean":
        get_masker(parts[2])
    return Setting(method, parts[1], parts[2])


def default_settings(input_shape) -> list[Setting]:
    """The arms of the explorer for a model input ``(H, W, C)``: every method, two segmentations, three maskers."""
    H, W, _ = input_shape
    g = 7 if min(H, W) % 7 == 0 and min(H, W) < 32 else 8
    fine, coarse = f"grid:{g}x{g}", f"grid:{g // 2}x{g // 2}"
    return [Setting("kernel", fine, "blur:3"), Setting("kernel", coarse, "constant:0"),
            Setting("leverage", fine, "blur:3"), Setting("partition", fine, "blur:3"),
            Setting("lime", "slic:40", "segment_mean"), Setting("gradcam"), Setting("ig")]
