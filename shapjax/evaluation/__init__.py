"""Evaluating explanations: faithfulness/localisation/complexity metrics, sanity checks, and the
side-by-side comparison runner."""
from shapjax.evaluation import compare, metrics, sanity

__all__ = ["compare", "metrics", "sanity"]
