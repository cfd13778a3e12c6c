"""ImageNet weights for the trunk and the RoI head stage(s) of a C4 person-search model.

A C4 model splits one ImageNet network in two: the trunk (``model.backbone``) and the last
stage, built by ``ROI_HEAD_STAGE_REGISTRY`` and used by the RoI heads (SeqNet holds two copies
of it). A source state dict is converted to a :class:`PretrainedParts` (trunk and head-stage
state dicts, names relative to those modules) and loaded *strictly*: a file that does not fit
the model raises an error naming the file and listing missing / unexpected keys and shape
mismatches.

Source formats (``MODEL.BACKBONE.PRETRAINED_FORMAT``):

- ``"torchvision_resnet"``: torchvision ResNet state dict -> Detectron2 names
  (``conv1`` -> ``stem.conv1``, ``bn1`` -> ``stem.conv1.norm``, ``layerN.b.convK`` ->
  ``res{N+1}.b.convK``, ``layerN.b.bnK`` -> ``res{N+1}.b.convK.norm``, ``downsample.0/1`` ->
  ``shortcut`` / ``shortcut.norm``; ``layer4`` -> the ``ResNetRes5Stage`` head, whose blocks
  are numbered ``0, 1, 2``). torchvision strides in the 3x3 conv: set
  ``MODEL.RESNETS.STRIDE_IN_1X1 = False``, and feed RGB images normalised with ImageNet
  mean/std (``INPUT.FORMAT "RGB"``, ``MODEL.PIXEL_MEAN/STD``), to reproduce its features.
- ``"timm_convnext"``: ``stem``/``stages.0-2`` -> trunk, ``stages.3`` -> head ``stage4``.
- ``"timm_res2net"``: ``conv1``/``bn1``/``layer1-3`` -> trunk, ``layer4`` -> head ``layer4``.
- ``"converted"``: a file written by ``tools/convert_pretrained.py``. It is also a Detectron2
  checkpoint: ``{"model": {"backbone.<trunk key>", "roi_heads.res5.<head key>"}, ...}``, the
  exact names of a single-head-stage model such as OIM, so ``MODEL.WEIGHTS`` can name it too.

Classifier weights of the source (``fc``, ``head``) are dropped; BatchNorm
``num_batches_tracked`` counters are dropped (Detectron2's FrozenBatchNorm2d has none).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..utils.file_io import atomic_write
from .backbone.head_stage import ROI_HEAD_STAGE_REGISTRY

__all__ = [
    "CONVERTERS",
    "HEAD_STAGE_PREFIX",
    "PRETRAINED_FORMATS",
    "TRUNK_PREFIX",
    "PretrainedParts",
    "PretrainedMismatchError",
    "convert_state_dict",
    "find_head_stages",
    "load_pretrained_backbone",
    "load_pretrained_parts",
    "read_pretrained_file",
    "save_converted",
]

# Key prefix of the trunk in a converted file (the meta architecture's ``backbone``).
TRUNK_PREFIX = "backbone."
# Key prefix of the head stage in a converted file (``OIMROIHeads.res5``).
HEAD_STAGE_PREFIX = "roi_heads.res5."
# Value of "__author__" in converted files.
CONVERTED_AUTHOR = "person_search.convert_pretrained"
# BatchNorm counter buffers: neither converted nor required.
_OPTIONAL_SUFFIX = "num_batches_tracked"
# How many offending keys an error message lists per kind.
_MAX_LISTED = 5


@dataclass
class PretrainedParts:
    """Converted weights: state dicts relative to the trunk and to one head-stage module."""

    trunk: dict[str, torch.Tensor]
    head_stage: dict[str, torch.Tensor]


class PretrainedMismatchError(ValueError):
    """A pretrained file does not fit the model part it is loaded into."""


def _drop_counters(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if not k.endswith(_OPTIONAL_SUFFIX)}


# torchvision ResNet -> Detectron2 ResNet names.
_TV_BLOCK = re.compile(r"^layer(\d)\.(\d+)\.(.+)$")
_TV_BN = re.compile(r"^bn(\d)\.(.+)$")
_TV_DOWNSAMPLE = re.compile(r"^downsample\.([01])\.(.+)$")
_TV_CONV = re.compile(r"^conv(\d)\.weight$")


def _tv_block_param(rest: str) -> str:
    """Name inside a block: conv2.weight -> conv2.weight, bn2.x -> conv2.norm.x,
    downsample.0.weight -> shortcut.weight, downsample.1.x -> shortcut.norm.x."""
    if _TV_CONV.match(rest):
        return rest
    if m := _TV_BN.match(rest):
        return f"conv{m.group(1)}.norm.{m.group(2)}"
    if m := _TV_DOWNSAMPLE.match(rest):
        return "shortcut." + ("" if m.group(1) == "0" else "norm.") + m.group(2)
    raise KeyError(rest)


def convert_torchvision_resnet(sd: dict[str, torch.Tensor]) -> PretrainedParts:
    """torchvision ResNet state dict -> Detectron2 ResNet trunk + ``ResNetRes5Stage`` head."""
    trunk, head = {}, {}
    unknown = []
    for key, value in _drop_counters(sd).items():
        if key.startswith("fc."):
            continue
        if key == "conv1.weight":
            trunk["stem.conv1.weight"] = value
        elif m := _TV_BN.match(key):
            if m.group(1) != "1":
                unknown.append(key)
                continue
            trunk[f"stem.conv1.norm.{m.group(2)}"] = value
        elif m := _TV_BLOCK.match(key):
            layer, block, rest = int(m.group(1)), m.group(2), m.group(3)
            try:
                name = f"{block}.{_tv_block_param(rest)}"
            except KeyError:
                unknown.append(key)
                continue
            if layer == 4:
                head[name] = value
            else:
                trunk[f"res{layer + 1}.{name}"] = value
        else:
            unknown.append(key)
    return _parts(trunk, head, unknown, "torchvision ResNet")


def _parts(
    trunk: dict[str, torch.Tensor], head: dict[str, torch.Tensor], unknown: list[str], source: str
) -> PretrainedParts:
    """The converted parts, or an error naming ``source`` and the keys it did not expect."""
    if unknown:
        raise PretrainedMismatchError(
            f"not a {source} state dict: unknown keys {unknown[:_MAX_LISTED]}"
        )
    return PretrainedParts(trunk=trunk, head_stage=head)


def _split_by_prefix(
    sd: dict[str, torch.Tensor],
    *,
    source: str,
    skip: tuple[str, ...],
    head_prefix: str,
    head_rename: str,
    trunk_prefixes: tuple[str, ...],
) -> PretrainedParts:
    """Split a state dict whose last stage is under ``head_prefix`` (renamed ``head_rename``)
    and whose trunk keys start with one of ``trunk_prefixes``; keys under ``skip`` (the
    classifier) are dropped, any other key is an error naming ``source``."""
    trunk, head = {}, {}
    unknown = []
    for key, value in sd.items():
        if key.startswith(skip):
            continue
        if key.startswith(head_prefix):
            head[head_rename + key[len(head_prefix) :]] = value
        elif key.startswith(trunk_prefixes):
            trunk[key] = value
        else:
            unknown.append(key)
    return _parts(trunk, head, unknown, source)


def convert_timm_convnext(sd: dict[str, torch.Tensor]) -> PretrainedParts:
    """timm ConvNeXt state dict -> ``ConvNeXtTrunk`` + ``ConvNeXtHeadStage`` names."""
    return _split_by_prefix(
        sd,
        source="timm ConvNeXt",
        skip=("head.", "norm_pre."),
        head_prefix="stages.3.",
        head_rename="stage4.",
        trunk_prefixes=("stem.", "stages.0.", "stages.1.", "stages.2."),
    )


def convert_timm_res2net(sd: dict[str, torch.Tensor]) -> PretrainedParts:
    """timm Res2Net state dict -> ``Res2NetTrunk`` + ``Res2NetHeadStage`` names."""
    return _split_by_prefix(
        _drop_counters(sd),
        source="timm Res2Net",
        skip=("fc.",),
        head_prefix="layer4.",
        head_rename="layer4.",
        trunk_prefixes=("conv1.", "bn1.", "layer1.", "layer2.", "layer3."),
    )


def _split_converted(sd: dict[str, torch.Tensor]) -> PretrainedParts:
    trunk, head = {}, {}
    unknown = []
    for key, value in sd.items():
        if key.startswith(TRUNK_PREFIX):
            trunk[key[len(TRUNK_PREFIX) :]] = value
        elif key.startswith(HEAD_STAGE_PREFIX):
            head[key[len(HEAD_STAGE_PREFIX) :]] = value
        else:
            unknown.append(key)
    if unknown:
        raise PretrainedMismatchError(
            f"keys outside {TRUNK_PREFIX!r} / {HEAD_STAGE_PREFIX!r}: {unknown[:_MAX_LISTED]}"
        )
    return PretrainedParts(trunk=trunk, head_stage=head)


# PRETRAINED_FORMAT -> converter of a raw state dict.
CONVERTERS: dict[str, Callable[[dict[str, torch.Tensor]], PretrainedParts]] = {
    "torchvision_resnet": convert_torchvision_resnet,
    "timm_convnext": convert_timm_convnext,
    "timm_res2net": convert_timm_res2net,
    "converted": _split_converted,
}
PRETRAINED_FORMATS = tuple(CONVERTERS)


def _unwrap(obj: object, path: str) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded file: the file itself, or its "model" / "state_dict"."""
    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise PretrainedMismatchError(f"{path}: not a state dict of named tensors")
    prefix = "module."  # saved from DistributedDataParallel
    if obj and all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def read_pretrained_file(path: str, fmt: str) -> PretrainedParts:
    """Read ``path`` (a ``.pth``/``.pt`` file loadable with ``weights_only=True``) and convert it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown ``fmt``, unreadable file, or keys that do not fit ``fmt``
            (``PretrainedMismatchError``, naming the file).
    """
    if fmt not in CONVERTERS:
        raise ValueError(
            f"MODEL.BACKBONE.PRETRAINED_FORMAT={fmt!r} is not one of {PRETRAINED_FORMATS}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not loadable"
        raise ValueError(f"{path}: cannot be read as a tensor-only torch file ({e})") from e
    try:
        return CONVERTERS[fmt](_unwrap(loaded, path))
    except PretrainedMismatchError as e:
        raise PretrainedMismatchError(f"{path} (format {fmt!r}): {e}") from e


def convert_state_dict(sd: dict[str, torch.Tensor], fmt: str) -> PretrainedParts:
    """Convert an in-memory state dict of format ``fmt`` (see :data:`PRETRAINED_FORMATS`)."""
    if fmt not in CONVERTERS:
        raise ValueError(f"format {fmt!r} is not one of {PRETRAINED_FORMATS}")
    return CONVERTERS[fmt](sd)


def save_converted(parts: PretrainedParts, path: str) -> None:
    """Write ``parts`` as a Detectron2 checkpoint (see module doc), atomically."""
    model = {TRUNK_PREFIX + k: v for k, v in parts.trunk.items()}
    model.update({HEAD_STAGE_PREFIX + k: v for k, v in parts.head_stage.items()})
    payload = {"model": model, "__author__": CONVERTED_AUTHOR, "matching_heuristics": False}
    atomic_write(path, lambda f: torch.save(payload, f), mode="wb")


def _check_fits(module: nn.Module, sd: dict[str, torch.Tensor], what: str, source: str) -> None:
    expected = {k: v for k, v in module.state_dict().items() if not k.endswith(_OPTIONAL_SUFFIX)}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    mismatched = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(sd) & set(expected))
        if sd[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        lines = [f"{source} does not fit the {what} ({type(module).__name__}):"]
        for kind, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        ):
            if items:
                lines.append(f"  {len(items)} {kind}: {items[:_MAX_LISTED]}")
        raise PretrainedMismatchError("\n".join(lines))


def find_head_stages(model: nn.Module) -> list[nn.Module]:
    """Every module of ``model`` built from ``ROI_HEAD_STAGE_REGISTRY`` (instances of its
    registered classes), in ``named_modules`` order."""
    classes = tuple(obj for _, obj in ROI_HEAD_STAGE_REGISTRY if isinstance(obj, type))
    return [m for m in model.modules() if isinstance(m, classes)]


@torch.no_grad()
def load_pretrained_parts(
    parts: PretrainedParts,
    trunk: nn.Module,
    head_stages: list[nn.Module],
    source: str = "pretrained weights",
) -> None:
    """Load ``parts`` strictly into ``trunk`` and into every module of ``head_stages``.

    Everything is checked before anything is written: on error no module is modified.

    Raises:
        PretrainedMismatchError: listing missing / unexpected keys and shape mismatches.
    """
    _check_fits(trunk, parts.trunk, "trunk (model.backbone)", source)
    for stage in head_stages:
        _check_fits(stage, parts.head_stage, "RoI head stage", source)
    for module, sd in [(trunk, parts.trunk)] + [(s, parts.head_stage) for s in head_stages]:
        incompatible = module.load_state_dict(sd, strict=False)
        # Only optional counters may be left: anything else was caught by _check_fits.
        assert all(k.endswith(_OPTIONAL_SUFFIX) for k in incompatible.missing_keys)


def load_pretrained_backbone(model: nn.Module, cfg) -> bool:
    """Load ``MODEL.BACKBONE.PRETRAINED_FILE`` (format ``PRETRAINED_FORMAT``) into
    ``model.backbone`` and every RoI head stage of ``model``.

    Returns:
        False when no file is configured, True once loaded.

    Raises:
        FileNotFoundError / ValueError: see :func:`read_pretrained_file`; a model without a
            ``backbone`` or without a head stage; :class:`PretrainedMismatchError`.
    """
    path = cfg.MODEL.BACKBONE.PRETRAINED_FILE
    if not path:
        return False
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"{type(model).__name__} has no .backbone to load {path} into")
    head_stages = find_head_stages(model)
    if not head_stages:
        raise ValueError(
            f"{type(model).__name__} has no module from ROI_HEAD_STAGE_REGISTRY to load the "
            f"last stage of {path} into"
        )
    parts = read_pretrained_file(path, cfg.MODEL.BACKBONE.PRETRAINED_FORMAT)
    load_pretrained_parts(parts, backbone, head_stages, source=path)
    return True
