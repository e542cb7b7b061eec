"""Sparse counterfactuals: what to change in an image to get another class.

A Shapley value says which regions mattered; a counterfactual says what to
change. :func:`fw_l1q` (Roberts & Tsiligkaridis 2021) finds controllably sparse
perturbations by Frank-Wolfe over an L1 ball; :func:`pgd_l1` (PGD with the
exact L1-ball projection of Duchi et al. 2008) and :func:`pgd_l2` (dense L2
PGD) are the baselines on the same footing: same objective, start, pixel box,
result type and per-step diagnostics. On adversarially robust models (the
shipped ``mnist-cnn-robust`` and ``planted-patch-robust``) the perturbations
are perceptually meaningful. Study and reading: ``docs/counterfactual.md``.
"""
from shapjax.counterfactual._core import Counterfactual, Trace
from shapjax.counterfactual.frank_wolfe import fw_l1q
from shapjax.counterfactual.pgd import pgd_l1, pgd_l2
from shapjax.counterfactual.projections import lmo_l1q, project_l1_box, project_l2_box, sparsity_k

METHODS = {"fw_l1q": fw_l1q, "pgd_l1": pgd_l1, "pgd_l2": pgd_l2}

__all__ = ["Counterfactual", "Trace", "fw_l1q", "pgd_l1", "pgd_l2", "lmo_l1q", "project_l1_box", "project_l2_box",
           "sparsity_k", "METHODS"]
