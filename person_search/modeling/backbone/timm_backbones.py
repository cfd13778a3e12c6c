"""timm ConvNeXt and Res2Net cut into a Detectron2 trunk and an RoI head stage.

A C4-style person-search detector runs the first stages of a network on the whole image
(the *trunk*, a Detectron2 ``Backbone``) and the last stage on every RoI (the *head stage*).
Both parts are cut from ONE timm model built with ``pretrained=False`` from ``MODEL.TIMM``;
ImageNet weights come from a local file (see :mod:`person_search.modeling.pretrained`).

- ConvNeXt (SeqNeXt, Jaffe et al. 2023 use ConvNeXt-Base, ``convnext_base``): trunk = stem +
  stages 1-3 (stride 16, ``dims[2]`` channels); head stage = stage 4 *including* its
  downsampling layer (LayerNorm + 2x2 stride-2 conv), so a 14x14 RoI becomes 7x7.
- Res2Net (IIDFC, ``res2net50_26w_4s``): trunk = conv1/bn1/maxpool + layer1-3 (stride 16,
  ``4 * channels[2]`` channels); head stage = layer4 (first block strided).

Module names inside trunk and head stage are timm's (``stem``, ``stages.0``, ``layer3`` ...;
the ConvNeXt head holds ``stage4``, the Res2Net head ``layer4``), so a timm state dict maps
onto them by selecting keys.

The trunk's single output is called ``"res4"`` whatever the network, so every C4 config uses
``MODEL.RPN.IN_FEATURES = ROI_HEADS.IN_FEATURES = ["res4"]``.
"""

from __future__ import annotations

import timm
import torch
from detectron2.config import CfgNode
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from .head_stage import ROI_HEAD_STAGE_REGISTRY

__all__ = [
    "TRUNK_OUT_FEATURE",
    "ConvNeXtHeadStage",
    "ConvNeXtTrunk",
    "Res2NetHeadStage",
    "Res2NetTrunk",
    "build_convnext_trunk",
    "build_res2net_trunk",
    "create_timm_model",
    "timm_family",
]

# Name of the trunk's only output feature (stride 16).
TRUNK_OUT_FEATURE = "res4"
# Stride of the trunk output with respect to the input image.
TRUNK_STRIDE = 16
# Number of stages of the supported timm networks (3 in the trunk + 1 in the head stage).
NUM_STAGES = 4
# Norm choices of MODEL.TIMM.NORM for BatchNorm networks.
_NORMS = ("FrozenBN", "BN")


def timm_family(arch: str) -> str:
    """Return ``"convnext"`` or ``"res2net"`` for a timm architecture name, else raise."""
    if arch.startswith("convnext"):
        return "convnext"
    if arch.startswith("res2net"):
        return "res2net"
    raise ValueError(
        f"MODEL.TIMM.ARCH={arch!r} is not supported: expected a timm ConvNeXt ('convnext_*') "
        "or Res2Net ('res2net*') architecture."
    )


def create_timm_model(
    arch: str,
    *,
    depths: tuple[int, ...] = (),
    widths: tuple[int, ...] = (),
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """Build a timm ConvNeXt / Res2Net with random weights (never downloads).

    Args:
        arch: timm architecture name (``"convnext_base"``, ``"res2net50_26w_4s"`` ...).
        depths: blocks per stage overriding the architecture's, () = keep.
        widths: channels per stage overriding the architecture's (ConvNeXt dims, Res2Net
            bottleneck planes), () = keep.
        drop_path_rate: ConvNeXt stochastic depth rate (ignored by Res2Net).
    """
    family = timm_family(arch)
    for key, value in (("DEPTHS", depths), ("WIDTHS", widths)):
        if value and len(value) != NUM_STAGES:
            raise ValueError(
                f"MODEL.TIMM.{key} must hold {NUM_STAGES} ints or be empty, got {value}"
            )
    kwargs: dict = {}
    if family == "convnext":
        kwargs["drop_path_rate"] = drop_path_rate
        if depths:
            kwargs["depths"] = tuple(depths)
        if widths:
            kwargs["dims"] = tuple(widths)
    else:
        if depths:
            kwargs["layers"] = tuple(depths)
        if widths:
            kwargs["channels"] = tuple(widths)
    try:
        return timm.create_model(arch, pretrained=False, **kwargs)
    except RuntimeError as e:  # timm: "Unknown model (...)"
        raise ValueError(f"MODEL.TIMM.ARCH={arch!r}: timm cannot build it ({e})") from e


def _timm_model_from_cfg(cfg: CfgNode, family: str) -> nn.Module:
    arch = cfg.MODEL.TIMM.ARCH
    if timm_family(arch) != family:
        raise ValueError(
            f"MODEL.TIMM.ARCH={arch!r} is not a {family} architecture, but the config builds a "
            f"{family} trunk / head stage (MODEL.BACKBONE.NAME={cfg.MODEL.BACKBONE.NAME!r})."
        )
    return create_timm_model(
        arch,
        depths=tuple(cfg.MODEL.TIMM.DEPTHS),
        widths=tuple(cfg.MODEL.TIMM.WIDTHS),
        drop_path_rate=cfg.MODEL.TIMM.DROP_PATH_RATE,
    )


def _check_norm(norm: str) -> None:
    if norm not in _NORMS:
        raise ValueError(f"MODEL.TIMM.NORM={norm!r} is not one of {_NORMS}")


def _freeze(module: nn.Module) -> nn.Module:
    """Stop gradients of ``module`` and freeze its BatchNorms; returns the (new) module."""
    for p in module.parameters():
        p.requires_grad_(False)
    return FrozenBatchNorm2d.convert_frozen_batchnorm(module)


class _TimmTrunk(Backbone):
    """Shared part of the trunks: one ``"res4"`` output at stride 16, FREEZE_AT semantics."""

    def __init__(self, out_channels: int):
        super().__init__()
        self._out_feature_channels = {TRUNK_OUT_FEATURE: out_channels}
        self._out_feature_strides = {TRUNK_OUT_FEATURE: TRUNK_STRIDE}
        self._out_features = [TRUNK_OUT_FEATURE]

    def freeze(self, freeze_at: int) -> _TimmTrunk:
        """Freeze the first ``freeze_at`` units (Detectron2's ``FREEZE_AT``): 0 = nothing,
        1 = the stem, k >= 2 = the stem and stages 1 .. k-1. Returns ``self``."""
        raise NotImplementedError

    @staticmethod
    def _check_freeze_at(freeze_at: int) -> None:
        if not 0 <= freeze_at <= NUM_STAGES:
            raise ValueError(f"MODEL.BACKBONE.FREEZE_AT={freeze_at} must be in [0, {NUM_STAGES}]")

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            TRUNK_OUT_FEATURE: ShapeSpec(
                channels=self._out_feature_channels[TRUNK_OUT_FEATURE], stride=TRUNK_STRIDE
            )
        }


class ConvNeXtTrunk(_TimmTrunk):
    """ConvNeXt stem + stages 1-3. forward: (N, 3, H, W) -> {"res4": (N, dims[2], H/16, W/16)}."""

    def __init__(self, convnext: nn.Module):
        super().__init__(out_channels=convnext.stages[2].blocks[-1].conv_dw.out_channels)
        self.stem = convnext.stem
        self.stages = convnext.stages[:3]

    def freeze(self, freeze_at: int) -> ConvNeXtTrunk:
        # ConvNeXt has no BatchNorm (LayerNorms only): freezing just stops gradients.
        self._check_freeze_at(freeze_at)
        for unit in [self.stem, *self.stages][:freeze_at]:
            for p in unit.parameters():
                p.requires_grad_(False)
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {TRUNK_OUT_FEATURE: self.stages(self.stem(x))}


class Res2NetTrunk(_TimmTrunk):
    """Res2Net conv1 + maxpool + layer1-3. forward: (N, 3, H, W) -> {"res4": (N, C, H/16, W/16)}
    with C = 4 * channels[2]."""

    def __init__(self, res2net: nn.Module):
        super().__init__(out_channels=res2net.layer3[-1].conv3.out_channels)
        self.conv1 = res2net.conv1
        self.bn1 = res2net.bn1
        self.act1 = res2net.act1
        self.maxpool = res2net.maxpool
        self.layer1 = res2net.layer1
        self.layer2 = res2net.layer2
        self.layer3 = res2net.layer3

    def freeze(self, freeze_at: int) -> Res2NetTrunk:
        # Frozen units also get FrozenBatchNorm2d, as Detectron2's ResNet does.
        self._check_freeze_at(freeze_at)
        units = [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"]]
        for names in units[:freeze_at]:
            for name in names:
                setattr(self, name, _freeze(getattr(self, name)))
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return {TRUNK_OUT_FEATURE: x}


@BACKBONE_REGISTRY.register()
def build_convnext_trunk(cfg: CfgNode, input_shape: ShapeSpec) -> ConvNeXtTrunk:
    """ConvNeXt trunk from ``MODEL.TIMM``; freezes ``MODEL.BACKBONE.FREEZE_AT`` units."""
    _check_in_channels(cfg, input_shape)
    trunk = ConvNeXtTrunk(_timm_model_from_cfg(cfg, "convnext"))
    return trunk.freeze(cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_res2net_trunk(cfg: CfgNode, input_shape: ShapeSpec) -> Res2NetTrunk:
    """Res2Net trunk from ``MODEL.TIMM``; BatchNorm per ``MODEL.TIMM.NORM``, freezes
    ``MODEL.BACKBONE.FREEZE_AT`` units."""
    _check_in_channels(cfg, input_shape)
    _check_norm(cfg.MODEL.TIMM.NORM)
    trunk = Res2NetTrunk(_timm_model_from_cfg(cfg, "res2net"))
    if cfg.MODEL.TIMM.NORM == "FrozenBN":
        trunk = FrozenBatchNorm2d.convert_frozen_batchnorm(trunk)
    return trunk.freeze(cfg.MODEL.BACKBONE.FREEZE_AT)


def _check_in_channels(cfg: CfgNode, input_shape: ShapeSpec) -> None:
    if input_shape.channels != 3:
        raise ValueError(
            f"timm trunks take 3-channel images, got {input_shape.channels} channels "
            f"(MODEL.PIXEL_MEAN={cfg.MODEL.PIXEL_MEAN})"
        )


class _TimmHeadStage(nn.Module):
    """Last stage of a timm network applied to RoI features; ``out_channels`` is its width."""

    out_channels: int

    def _check_input(self, in_channels: int, input_shape: ShapeSpec) -> None:
        if input_shape.channels != in_channels:
            raise ValueError(
                f"{type(self).__name__} expects {in_channels}-channel RoI features (the trunk "
                f"cut from the same MODEL.TIMM), got {input_shape.channels}"
            )


@ROI_HEAD_STAGE_REGISTRY.register()
class ConvNeXtHeadStage(_TimmHeadStage):
    """ConvNeXt stage 4 with its downsampling layer.

    forward: (R, dims[2], h, w) -> (R, dims[3], h/2, w/2).
    """

    def __init__(self, cfg: CfgNode, input_shape: ShapeSpec):
        super().__init__()
        stage4 = _timm_model_from_cfg(cfg, "convnext").stages[3]
        self._check_input(stage4.downsample[1].in_channels, input_shape)
        self.stage4 = stage4
        self.out_channels = stage4.blocks[-1].conv_dw.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage4(x)


@ROI_HEAD_STAGE_REGISTRY.register()
class Res2NetHeadStage(_TimmHeadStage):
    """Res2Net layer4 (first block strided). forward: (R, 4*c[2], h, w) -> (R, 4*c[3], h/2, w/2).

    BatchNorms follow ``MODEL.TIMM.NORM`` like the trunk's.
    """

    def __init__(self, cfg: CfgNode, input_shape: ShapeSpec):
        super().__init__()
        _check_norm(cfg.MODEL.TIMM.NORM)
        layer4 = _timm_model_from_cfg(cfg, "res2net").layer4
        self._check_input(layer4[0].conv1.in_channels, input_shape)
        if cfg.MODEL.TIMM.NORM == "FrozenBN":
            layer4 = FrozenBatchNorm2d.convert_frozen_batchnorm(layer4)
        self.layer4 = layer4
        self.out_channels = layer4[-1].conv3.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(x)
