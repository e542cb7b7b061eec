r"""Metrics that say how faithful, robust, localised, sparse and accurate an explanation is.

Grouped as in Quantus (Hedström et al. 2023), one module per group; every name is also
importable from ``shapjax.evaluation.metrics`` itself:

=================  ==========================================================================
group              metrics (paper)
=================  ==========================================================================
faithfulness       :func:`deletion`, :func:`insertion` (Petsiuk et al. 2018), :func:`pixel_flipping`
                   (Bach et al. 2015), :func:`region_perturbation` (Samek et al. 2017), :func:`irof`
                   (Rieger & Hansen 2020), :func:`faithfulness_correlation` (Bhatt et al. 2020),
                   :func:`road` + :func:`noisy_linear_imputation` (Rong et al. 2022),
                   :func:`infidelity` (Yeh et al. 2019), :func:`monotonicity` (Arya et al. 2019),
                   :func:`monotonicity_correlation` (Nguyen & Martinez 2020)
robustness         :func:`sensitivity`, :func:`max_sensitivity`, :func:`avg_sensitivity` (Yeh et al. 2019)
complexity         :func:`sparseness` (Gini; Chalasani et al. 2020), :func:`complexity` (entropy; Bhatt et al. 2020)
randomisation      :func:`random_logit` (Sixt et al. 2020), :func:`model_randomisation` (Adebayo et al. 2018;
                   the cascade: :func:`shapjax.evaluation.sanity.cascading_randomization`)
localisation       :func:`pointing_game` (Zhang et al. 2018), :func:`attribution_mass` (Kohlbrenner et al. 2020)
axiomatic          :func:`completeness_gap` (Sundararajan et al. 2017), :func:`shapley_accuracy`
=================  ==========================================================================

Attributions are accepted as a pixel map ``[B, H, W]``, a per-segment vector ``[B, M]``
together with ``segments=[B, H, W]`` (or ``[H, W]``), a
:class:`shapjax.gradients.PixelAttribution` (its heatmap) or a single-output
:class:`shapjax.explain.Explanation` (its segment values and segments). The model-based
metrics run their perturbed images under ``jax.jit``, ``batch_size`` model inputs at a time.
``outputs`` takes the values of :func:`shapjax.explain` with K = 1; ``"auto"`` (the default)
is the attribution's own explained class when it carries one, else ``"top-1"``.

:data:`DIRECTIONS` says for every metric whether higher or lower is better.

References:
  Hedström et al. (2023), Quantus: an explainable AI toolkit for responsible evaluation of
  neural network explanations and beyond, JMLR 24(34).
"""
from shapjax.evaluation.metrics._base import (  # noqa: F401 - the private names keep old imports working
    Curve,
    _features,
    _flat_abs,
    _pearson,
    _pixel_rank,
    _resolve,
    _schedule,
    as_heatmap,
    gaussian_blur,
)
from shapjax.evaluation.metrics.axiomatic import ShapleyAccuracy, completeness_gap, shapley_accuracy
from shapjax.evaluation.metrics.complexity import complexity, sparseness
from shapjax.evaluation.metrics.faithfulness import (
    IROF,
    PerturbationCurve,
    deletion,
    faithfulness_correlation,
    insertion,
    irof,
    pixel_flipping,
    region_perturbation,
)
from shapjax.evaluation.metrics.fidelity import Monotonicity, infidelity, monotonicity, monotonicity_correlation
from shapjax.evaluation.metrics.imputation import ROADCurve, noisy_linear_imputation, road
from shapjax.evaluation.metrics.localisation import attribution_mass, pointing_game
from shapjax.evaluation.metrics.randomisation import model_randomisation, off_classes, random_logit, similarity
from shapjax.evaluation.metrics.robustness import Sensitivity, avg_sensitivity, max_sensitivity, sensitivity

__all__ = [
    "Curve", "deletion", "insertion", "gaussian_blur", "faithfulness_correlation",
    "pointing_game", "attribution_mass", "sparseness", "complexity",
    "ShapleyAccuracy", "shapley_accuracy", "as_heatmap",
    "PerturbationCurve", "pixel_flipping", "region_perturbation", "IROF", "irof",
    "ROADCurve", "noisy_linear_imputation", "road",
    "infidelity", "Monotonicity", "monotonicity", "monotonicity_correlation",
    "Sensitivity", "sensitivity", "max_sensitivity", "avg_sensitivity",
    "random_logit", "off_classes", "model_randomisation", "similarity",
    "completeness_gap",
]

#: Metric -> "higher" or "lower" is better ("" where neither is: sparseness and complexity
#: describe an explanation, they do not judge it).
DIRECTIONS = {
    "deletion": "lower", "insertion": "higher", "pixel_flipping": "lower", "region_perturbation": "higher",
    "irof": "higher", "faithfulness_correlation": "higher", "road_morf": "lower", "road_lerf": "higher",
    "infidelity": "lower", "monotonicity": "higher", "monotonicity_correlation": "higher",
    "max_sensitivity": "lower", "avg_sensitivity": "lower", "sparseness": "", "complexity": "",
    "random_logit": "lower", "model_randomisation": "lower", "pointing_game": "higher",
    "attribution_mass": "higher", "completeness_gap": "lower",
}
