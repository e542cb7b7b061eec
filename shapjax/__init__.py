"""shapjax: a JAX Shapley value engine for explaining image classifiers."""
from shapjax.engine import ShapleyResult, shapley
from shapjax.explain import Explanation

__version__ = "0.1.0"
__all__ = ["shapley", "ShapleyResult", "Explanation"]
