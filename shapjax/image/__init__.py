"""The image layer: segmenters (the players), maskers (what "absent" means), :func:`explain` and :class:`Explanation`.

Data flow: ``images -> segments -> masker -> image game -> engine estimator -> Explanation``.
"""
from shapjax.image import maskers, segment
from shapjax.image.explain import explain
from shapjax.image.explanation import Explanation

__all__ = ["maskers", "segment", "explain", "Explanation"]
