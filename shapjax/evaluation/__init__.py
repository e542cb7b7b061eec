"""Evaluating explanations: faithfulness/robustness/randomisation/complexity/localisation metrics, sanity
checks, the peer libraries on the same model (shap, captum, lime), and the side-by-side comparison runner."""
from shapjax.evaluation import compare, metrics, peers, sanity

__all__ = ["compare", "metrics", "peers", "sanity"]
