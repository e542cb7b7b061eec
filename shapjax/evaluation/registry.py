"""What `compare` can run and score: method and metric names, aliases, directions and full names."""
from __future__ import annotations

from typing import NamedTuple, Sequence

from shapjax.evaluation.peers import PEERS


class _Method(NamedTuple):
    label: str  # shown in figures
    family: str  # "shapley" | "surrogate" | "perturbation" | "gradient"
    library: str = "shapjax"


_PEER_LABELS = {"shap:kernel": "shap Kernel", "shap:permutation": "shap Permutation", "shap:partition": "shap Partition",
                "captum:kernelshap": "captum KernelShap", "captum:shapleyvaluesampling": "captum SVS",
                "captum:lime": "captum Lime", "captum:ig": "captum IG", "lime:image": "lime Image"}

#: Canonical method name -> (label, family, library). The order fixes each method's PRNG stream.
METHODS: dict[str, _Method] = {n: _Method(lab, fam) for n, lab, fam in (
    ("kernel", "KernelSHAP", "shapley"), ("leverage", "LeverageSHAP", "shapley"),
    ("permutation", "Permutation", "shapley"), ("antithetic", "Antithetic perm.", "shapley"),
    ("stratified", "Stratified perm.", "shapley"), ("partition", "Partition (Owen)", "shapley"),
    ("exact", "Exact Shapley", "shapley"), ("lime", "LIME", "surrogate"),
    ("occlusion", "Occlusion (segments)", "perturbation"), ("window-occlusion", "Occlusion (window)", "perturbation"),
    ("gradient", "Gradient", "gradient"), ("gradxinput", "Gradient x input", "gradient"),
    ("ig", "Integrated grad.", "gradient"), ("smoothgrad", "SmoothGrad", "gradient"),
    ("eg", "Expected grad.", "gradient"), ("gradcam", "Grad-CAM", "gradient"))}
METHODS.update({n: _Method(_PEER_LABELS[n], p.family, p.library) for n, p in PEERS.items()})

ALIASES = {
    "kernelshap": "kernel", "leverageshap": "leverage", "owen": "partition",
    "sliding-occlusion": "window-occlusion", "occlusion-window": "window-occlusion", "window": "window-occlusion",
    "vanilla": "gradient", "vanilla_gradient": "gradient", "saliency": "gradient",
    "gradient_x_input": "gradxinput", "gxi": "gradxinput", "integrated_gradients": "ig",
    "expected_gradients": "eg", "gradient_shap": "eg", "gradientshap": "eg", "grad_cam": "gradcam",
    "captum:kernel_shap": "captum:kernelshap", "captum:svs": "captum:shapleyvaluesampling",
    "captum:shapley_value_sampling": "captum:shapleyvaluesampling", "captum:integrated_gradients": "captum:ig",
    "lime:lime_image": "lime:image", "lime:limeimageexplainer": "lime:image", "shap:kernelexplainer": "shap:kernel",
    "shap:permutationexplainer": "shap:permutation", "shap:partitionexplainer": "shap:partition",
}
for _n in PEERS:  # shap-kernel, shap_kernel, ...
    _lib, _m = _n.split(":")
    ALIASES.update({f"{_lib}-{_m}": _n, f"{_lib}_{_m}": _n})
for _a, _n in list(ALIASES.items()):
    if ":" in _a:
        _lib, _m = _a.split(":")
        ALIASES.setdefault(f"{_lib}-{_m}", _n)
DEFAULT_METHODS = ("kernel", "leverage", "permutation", "antithetic", "partition", "lime", "occlusion",
                   "window-occlusion", "gradient", "gradxinput", "ig", "smoothgrad", "eg", "gradcam")
PEER_METHODS = tuple(PEERS)
EXACT_MAX_SEGMENTS = 14  # 2**14 = 16,384 model evaluations per image


class _Metric(NamedTuple):
    on: str  # "pixels" | "segments" | "masks"
    better: str  # "higher" | "lower" | "" (neither)
    name: str  # full column name
    reexplains: bool = False  # needs the method re-run (perturbed input, other class, random model)


#: Metric -> what it is computed on, which direction is better, its full name.
METRICS: dict[str, _Metric] = {
    "deletion": _Metric("pixels", "lower", "Deletion AUC (Petsiuk 2018)"),
    "insertion": _Metric("pixels", "higher", "Insertion AUC (Petsiuk 2018)"),
    "deletion_segments": _Metric("segments", "lower", "Deletion AUC, segment order"),
    "insertion_segments": _Metric("segments", "higher", "Insertion AUC, segment order"),
    "road_morf": _Metric("pixels", "lower", "ROAD AUC, most relevant first (Rong 2022)"),
    "road_lerf": _Metric("pixels", "higher", "ROAD AUC, least relevant first (Rong 2022)"),
    "region_perturbation": _Metric("pixels", "higher", "Region perturbation AOPC (Samek 2017)"),
    "irof": _Metric("segments", "higher", "IROF (Rieger 2020)"),
    "faithfulness": _Metric("segments", "higher", "Faithfulness correlation (Bhatt 2020)"),
    "infidelity": _Metric("segments", "lower", "Infidelity (Yeh 2019)"),
    "monotonicity": _Metric("segments", "higher", "Monotonicity, share of rising steps (Arya 2019)"),
    "monotonicity_correlation": _Metric("segments", "higher", "Monotonicity correlation (Nguyen 2020)"),
    "completeness_gap": _Metric("segments", "lower", "Completeness gap, relative"),
    "max_sensitivity": _Metric("pixels", "lower", "Max-sensitivity (Yeh 2019)", True),
    "avg_sensitivity": _Metric("pixels", "lower", "Avg-sensitivity (Yeh 2019)", True),
    "random_logit": _Metric("pixels", "lower", "Random-logit SSIM (Sixt 2020)", True),
    "model_randomisation": _Metric("pixels", "lower", "Model-randomisation Spearman (Adebayo 2018)", True),
    "sparseness": _Metric("segments", "", "Sparseness (Gini)"),
    "complexity": _Metric("segments", "", "Complexity (entropy)"),
    "pointing_game": _Metric("masks", "higher", "Pointing game hit"),
    "mass": _Metric("masks", "higher", "Attribution mass in mask"),
}
#: The metrics that need only model evaluations (the re-explaining ones cost a method run each).
DEFAULT_METRICS = ("deletion", "insertion", "road_morf", "road_lerf", "region_perturbation", "irof", "faithfulness",
                   "infidelity", "monotonicity_correlation", "completeness_gap", "sparseness", "complexity",
                   "pointing_game", "mass")
_MASK_METRICS = ("pointing_game", "mass")
_METRIC_ALIASES = {"pointing": "pointing_game", "faithfulness_correlation": "faithfulness", "attribution_mass": "mass",
                   "road": "road_morf", "aopc": "region_perturbation", "mprt": "model_randomisation",
                   "sensitivity": "max_sensitivity", "efficiency_gap": "completeness_gap"}

#: Columns that are not metrics: name -> full name.
COLUMN_NAMES = {"image": "Image", "method": "Method", "library": "Library", "family": "Family", "label": "True label",
                "predicted": "Explained (predicted) class", "prob": "Probability of the explained class",
                "correct": "Prediction correct", "seconds": "Seconds per explanation",
                "model_evals": "Model evaluations per explanation"}


def metric_title(name: str) -> str:
    """``"Deletion AUC (Petsiuk 2018), lower is better"``: a metric's full name with its direction."""
    m = METRICS[name]
    return m.name + (f", {m.better} is better" if m.better else ", descriptive (neither better)")


def column_title(name: str) -> str:
    """The full name of any table column (metrics with their direction)."""
    if name in METRICS:
        return metric_title(name)
    return COLUMN_NAMES.get(name, name) + (", lower is better" if name == "seconds" else "")


def _resolve(names, valid, aliases, what: str, expand=None) -> tuple[str, ...]:
    names = names.split(",") if isinstance(names, str) else list(names)
    expand = expand or {}
    out: list[str] = []
    for raw in names:
        if not isinstance(raw, str):
            raise TypeError(f"{what}: expected names (str), got {type(raw).__name__}")
        n = raw.strip().lower().replace(" ", "")
        n = next((aliases.get(c, c) for c in (n, n.replace("-", "_"), n.replace("_", "-"))
                  if c in valid or c in aliases), n)
        for m in (expand[n] if n in expand else [n] if n else []):
            if m not in valid:
                raise ValueError(f"{what}: unknown name {raw.strip()!r}; valid: {', '.join(valid)}"
                                 + (f" (aliases: {', '.join(sorted(aliases))})" if aliases else ""))
            out += [m] if m not in out else []
    return tuple(out)


def resolve_methods(methods: str | Sequence[str], *, n_segments: int | None = None) -> tuple[str, ...]:
    """Canonical method names from names/aliases (a list or a comma-separated string).

    ``"all"`` means :data:`DEFAULT_METHODS` plus ``exact`` when ``n_segments`` is at most
    :data:`EXACT_MAX_SEGMENTS`; ``"peers"`` every peer method (``shap:kernel``, ...). Duplicates
    are dropped.
    """
    extra = ("exact",) if n_segments is not None and n_segments <= EXACT_MAX_SEGMENTS else ()
    out = _resolve(methods, METHODS, ALIASES, "methods", {"all": DEFAULT_METHODS + extra, "peers": PEER_METHODS})
    if not out:
        raise ValueError("methods: expected at least one method name")
    return out


def resolve_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """Canonical metric names (``"all"``: every metric of :data:`METRICS`; ``"default"``: :data:`DEFAULT_METRICS`)."""
    return _resolve(metrics, METRICS, _METRIC_ALIASES, "metrics", {"all": tuple(METRICS), "default": DEFAULT_METRICS})
