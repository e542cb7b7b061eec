"""PyTorch ResNets in torchvision's layout -> shapjax's flax :class:`~shapjax.models.ResNet`.

A torchvision ``resnet18/34/50/101/152`` ``state_dict`` (saved with
``torch.save(model.state_dict(), FILE)``) has the keys ``conv1``, ``bn1``,
``layer{1-4}.{i}.conv{1,2[,3]}``, ``layer{1-4}.{i}.bn{1,2[,3]}``,
``layer{s}.0.downsample.{0,1}`` (projection convolution + BN) and ``fc``.
Each maps onto the flax ResNet one to one:

===========================  ==========================================
torch                        flax (``params`` / ``batch_stats``)
===========================  ==========================================
``conv1.weight [O,I,kh,kw]``  ``stem_conv/kernel [kh,kw,I,O]``
``bn1.weight, bias``          ``stem_bn/scale, bias``
``bn1.running_mean, _var``    ``batch_stats/stem_bn/mean, var``
``layerS.B.convK``            ``stageS_block{B+1}/convK``
``layerS.B.downsample.0/1``   ``stageS_block{B+1}/proj_conv, proj_bn``
``fc.weight [K,F], bias``     ``fc/kernel [F,K], bias``
===========================  ==========================================

The conventions that differ are handled: NCHW activations and OIHW kernels
become NHWC / HWIO, the torch ``Linear`` weight is transposed, BatchNorm runs
on its running statistics with torch's epsilon (1e-5, as shapjax's), and the
paddings agree (torch's symmetric ``padding=3`` / ``1`` on the 7x7 / 3x3
convolutions, the max pool's ``-inf`` padding, no padding on the 1x1
projections). The strides sit on the 3x3 convolution of the bottleneck as in
torchvision ("v1.5"). ``num_batches_tracked`` is ignored.

A ``conv1`` of 3x3 (the common CIFAR variant: ``conv1 = Conv2d(3, 64, 3, 1, 1)``
and ``maxpool = Identity()``) loads into the ``"cifar"`` stem. Wide ResNets and
ResNeXts (grouped or widened bottlenecks) are refused with a clear error.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..checkpoint import from_variables
from ..classifier import Classifier

logger = logging.getLogger(__name__)

#: torchvision's ResNets: name -> (blocks per stage, block type).
TORCHVISION_RESNETS = {
    "resnet18": ((2, 2, 2, 2), "basic"),
    "resnet34": ((3, 4, 6, 3), "basic"),
    "resnet50": ((3, 4, 6, 3), "bottleneck"),
    "resnet101": ((3, 4, 23, 3), "bottleneck"),
    "resnet152": ((3, 8, 36, 3), "bottleneck"),
}


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``torch.save`` file (``weights_only``) -> ``{key: float32 array}``.

    Accepts a plain ``state_dict`` or a training checkpoint holding one under
    ``"state_dict"``, ``"model_state_dict"`` or ``"model"``; a ``"module."``
    prefix (``DataParallel``) is dropped.
    """
    try:
        import torch
    except ImportError:
        raise ImportError("torch: reading a PyTorch file needs torch (pip install 'shapjax[torch]')") from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch file {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors of many types
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path}: not a torch state_dict file (save one with torch.save(model.state_dict(), "
                         f"FILE); whole pickled models are not read): {msg}") from None
    if isinstance(obj, Mapping):
        for k in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(k), Mapping):
                obj = obj[k]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if not hasattr(v, "detach"):
            continue
        k = k[len("module."):] if k.startswith("module.") else k
        out[k] = v.detach().cpu().float().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
    return out


def infer_resnet(state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The ResNet a torchvision-layout ``state_dict`` describes.

    Returns ``{"stage_sizes", "block", "stem", "width", "num_classes", "torchvision_name"}``
    (``torchvision_name`` is e.g. ``"resnet50"``, or None for another depth).
    """
    sd = state_dict
    missing = [k for k in ("conv1.weight", "bn1.weight", "fc.weight", "fc.bias") if k not in sd]
    if missing:
        raise ValueError(f"state_dict: not a torchvision ResNet (no {', '.join(missing)}; keys start with "
                         f"{', '.join(sorted(sd)[:4])})")
    stage_sizes = []
    for s in range(1, 5):
        blocks = {int(m.group(1)) for k in sd if (m := re.match(rf"layer{s}\.(\d+)\.", k))}
        if not blocks or blocks != set(range(len(blocks))):
            raise ValueError(f"state_dict: not a torchvision ResNet (layer{s} has blocks {sorted(blocks)})")
        stage_sizes.append(len(blocks))
    block = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
    k = sd["conv1.weight"].shape
    if len(k) != 4 or k[2] != k[3] or k[2] not in (3, 7):
        raise ValueError(f"state_dict: conv1.weight has shape {tuple(k)}; expected a 7x7 (ImageNet) or 3x3 "
                         "(CIFAR) stem")
    width = int(k[0])
    inner = sd["layer1.0.conv1.weight"].shape[0]
    if inner != width:
        raise ValueError(f"state_dict: layer1.0.conv1 has {inner} channels for a {width}-channel stem: wide "
                         "ResNets are not supported (only torchvision's resnet18/34/50/101/152 layout)")
    if block == "bottleneck":
        c2 = sd["layer1.0.conv2.weight"].shape
        if c2[1] != c2[0]:
            raise ValueError("state_dict: layer1.0.conv2 is a grouped convolution: ResNeXt is not supported")
    name = next((n for n, (sz, b) in TORCHVISION_RESNETS.items() if tuple(stage_sizes) == sz and b == block), None)
    return {"stage_sizes": tuple(stage_sizes), "block": block, "stem": "imagenet" if k[2] == 7 else "cifar",
            "width": width, "num_classes": int(sd["fc.weight"].shape[0]), "torchvision_name": name}


def _conv(w):
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))  # OIHW -> HWIO


def resnet_variables(state_dict: Mapping[str, np.ndarray], spec: Mapping[str, Any]) -> tuple[dict, set[str]]:
    """Flax variables ``{"params", "batch_stats"}`` of a ResNet from a torchvision ``state_dict``.

    Returns ``(variables, used_keys)``.
    """
    sd, used = state_dict, set()

    def take(key):
        if key not in sd:
            raise ValueError(f"state_dict: missing {key!r} (a torchvision ResNet {spec['block']} block has it)")
        used.add(key)
        return sd[key]

    params, stats = {}, {}

    def bn(tkey, fkey, into_p, into_s):
        into_p[fkey] = {"scale": take(f"{tkey}.weight"), "bias": take(f"{tkey}.bias")}
        into_s[fkey] = {"mean": take(f"{tkey}.running_mean"), "var": take(f"{tkey}.running_var")}

    params["stem_conv"] = {"kernel": _conv(take("conv1.weight"))}
    bn("bn1", "stem_bn", params, stats)
    n_conv = 3 if spec["block"] == "bottleneck" else 2
    for s, n_blocks in enumerate(spec["stage_sizes"], 1):
        for b in range(n_blocks):
            t, f = f"layer{s}.{b}", f"stage{s}_block{b + 1}"
            p, st = {}, {}
            for c in range(1, n_conv + 1):
                p[f"conv{c}"] = {"kernel": _conv(take(f"{t}.conv{c}.weight"))}
                bn(f"{t}.bn{c}", f"bn{c}", p, st)
            if f"{t}.downsample.0.weight" in sd:
                p["proj_conv"] = {"kernel": _conv(take(f"{t}.downsample.0.weight"))}
                bn(f"{t}.downsample.1", "proj_bn", p, st)
            params[f], stats[f] = p, st
    params["fc"] = {"kernel": np.ascontiguousarray(take("fc.weight").T), "bias": take("fc.bias")}
    return {"params": params, "batch_stats": stats}, used


def from_state_dict(state_dict: Mapping[str, np.ndarray], *, arch: str | None = None,
                    input_shape: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                    normalization: Any = "imagenet", name: str = "") -> Classifier:
    """A :class:`~shapjax.models.Classifier` from a torchvision-layout ResNet ``state_dict``.

    Args:
      state_dict: ``{key: array}`` (numpy or torch tensors), e.g. from
        :func:`read_state_dict`.
      arch: ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"``
        or ``"resnet152"`` to check the file against (default: inferred).
      input_shape: ``(H, W, C)`` (default 224x224x3 for the ImageNet stem,
        32x32x3 for the CIFAR stem; any size works, the network is
        fully convolutional up to the global pool).
      class_names: one per logit (default ``"0"..``).
      normalization: the torch model's input normalisation, applied to the
        [0, 1] images (default ``"imagenet"``, torchvision's; ``"cifar10"``,
        ``None`` or ``(mean, std)``).
      name: display name.

    Returns:
      A :class:`~shapjax.models.Classifier` whose logits equal the torch
      model's (``model.eval()``) on the same images.
    """
    sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in state_dict.items()}
    spec = infer_resnet(sd)
    if arch is not None:
        arch = str(arch).lower().replace("-", "")
        if arch not in TORCHVISION_RESNETS:
            raise ValueError(f"arch: expected one of {sorted(TORCHVISION_RESNETS)}, got {arch!r}")
        if spec["torchvision_name"] != arch:
            found = spec["torchvision_name"] or f"{spec['block']} blocks {spec['stage_sizes']}"
            raise ValueError(f"arch: the file holds a {found} ResNet, not {arch}")
    variables, used = resnet_variables(sd, spec)
    unused = sorted(k for k in sd if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(f"state_dict: {len(unused)} entries do not belong to a torchvision ResNet: "
                         f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}")
    if input_shape is None:
        input_shape = (224, 224, 3) if spec["stem"] == "imagenet" else (32, 32, 3)
    input_shape = tuple(int(s) for s in input_shape)
    tv = spec["torchvision_name"]
    kwargs = {"num_classes": spec["num_classes"], "stem": spec["stem"], "width": spec["width"], "normalize": False}
    if tv in ("resnet18", "resnet50"):
        arch_name = tv
    else:
        arch_name = "resnet"
        kwargs.update(stage_sizes=spec["stage_sizes"], block=spec["block"])
    logger.info("imported a torchvision %s (%s stem, %d classes)", tv or spec["stage_sizes"], spec["stem"],
                spec["num_classes"])
    return from_variables(arch_name, kwargs, variables, input_shape=input_shape, class_names=class_names,
                          normalization=normalization, name=name or (tv or "resnet"), source="state_dict")


def load_torch(path: str | Path, *, arch: str | None = None, input_shape: Sequence[int] | None = None,
               class_names: Sequence[str] | None = None, normalization: Any = "imagenet",
               name: str = "") -> Classifier:
    """Read a torchvision-layout ResNet ``state_dict`` file (``torch.save``) as a Classifier.

    Same options as :func:`from_state_dict`. Needs torch to read the file.

    Example (``torch:FILE --arch resnet50`` on the command line)::

        torch.save(torchvision.models.resnet50(weights="DEFAULT").state_dict(), "r50.pt")
        clf = load_torch("r50.pt", arch="resnet50", class_names=imagenet_class_names())
    """
    sd = read_state_dict(path)
    return from_state_dict(sd, arch=arch, input_shape=input_shape, class_names=class_names,
                           normalization=normalization, name=name or Path(path).stem)
