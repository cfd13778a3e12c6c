"""Backbones for person re-identification: ResNet with a configurable last stride, and OSNet.

Both are Detectron2 :class:`Backbone` s registered in ``BACKBONE_REGISTRY`` (select one with
``MODEL.BACKBONE.NAME``) and return a dict of feature maps described by ``ShapeSpec`` s.

* :class:`ReIDResNet` (``build_reid_resnet_backbone``): ResNet-18/34/50/101/152 whose module
  names are torchvision's (``conv1``, ``bn1``, ``layer1`` .. ``layer4``, blocks with
  ``conv1``/``bn1``/.../``downsample.0``/``downsample.1``), so a torchvision ``resnet*`` state
  dict loads directly (its ``fc.*`` classifier is dropped). ``last_stride=1`` keeps res5 at
  stride 16 (a 16x8 map for a 256x128 input), Luo et al.'s "last stride" trick.
* :class:`OSNet` (``build_osnet_backbone``): the omni-scale network of Zhou et al., "Omni-Scale
  Feature Learning for Person Re-Identification" (ICCV 2019), written from the paper's
  description, with width multipliers 0.25 / 0.5 / 0.75 / 1.0.

Both expose their stages by name (:class:`StagedBackbone`: ``stage_names``, ``stage(name)``,
``stage_output_shape(name)``), so a re-id head built with the backbone can reach, e.g., res5 or
conv5 and deep-copy it with its loaded weights (PAN's buffer layer).

ImageNet weights come from a local file (``MODEL.REID.BACKBONE_WEIGHTS``), never downloaded:
see :func:`load_backbone_weights`. The builders load them, so a head built after the backbone
(``build_reid_head(cfg, input_shape, backbone)``) sees the loaded weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

__all__ = [
    "OSNet",
    "ReIDResNet",
    "StagedBackbone",
    "build_osnet_backbone",
    "build_reid_resnet_backbone",
    "load_backbone_weights",
]

logger = logging.getLogger(__name__)

# Blocks per stage (res2..res5) for each supported ResNet depth.
_RESNET_STAGE_BLOCKS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
# Channels of OSNet x1.0 for conv1, conv2, conv3, conv4 (= conv5) (OSNet paper, Table 1).
_OSNET_CHANNELS = (64, 256, 384, 512)
# OSNet: bottleneck reduction of the omni-scale block, number of streams T (1..T lite 3x3
# convs per stream), reduction of the aggregation gate's hidden layer (OSNet paper, Sec. 3).
_OSNET_BOTTLENECK_REDUCTION = 4
_OSNET_NUM_STREAMS = 4
_OSNET_GATE_REDUCTION = 16
# Floor on the gate's hidden width (our choice): x1.0 never reaches it (C / 16 >= 4 in every
# block); for thin widths it avoids a single hidden ReLU unit that, dead at init, would cut the
# gate's first layer from training.
_OSNET_GATE_MIN_HIDDEN = 4
# OSNet stage -> the transition module (1x1 conv + 2x2 average pool) run before its blocks.
_OSNET_TRANSITIONS = {"conv3": "transition2", "conv4": "transition3"}


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=False
    )


def _init_weights(module: nn.Module) -> None:
    """He (fan-out) init for convolutions, identity init for norms (torchvision's scheme)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class StagedBackbone(Backbone):
    """A backbone run as a stem followed by named stages, each reading the previous output.

    Subclasses set ``_stage_names`` (in order), ``_out_feature_channels`` and
    ``_out_feature_strides`` for every stage (not only the returned ones), and implement
    :meth:`stage`. Heads use this to reach a stage by name (``backbone.stage("res5")``) and
    to know what it reads (:meth:`stage_input`) and returns (:meth:`stage_output_shape`).
    """

    _stage_names: list[str]

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Names of the stages in the order they run (e.g. "res2" .. "res5")."""
        return tuple(self._stage_names)

    def _check_stage(self, name: str) -> int:
        if name not in self._stage_names:
            raise KeyError(
                f"{type(self).__name__} has no stage {name!r}; stages: {list(self._stage_names)}"
            )
        return self._stage_names.index(name)

    def stage(self, name: str) -> nn.Module:
        """The module computing stage ``name`` from the output of :meth:`stage_input`
        (the module itself, not a copy: deep-copy it to get an independent one)."""
        raise NotImplementedError

    def stage_input(self, name: str) -> str | None:
        """Name of the stage whose output stage ``name`` reads; None for the first stage
        (it reads the stem's output)."""
        index = self._check_stage(name)
        return self._stage_names[index - 1] if index else None

    def stage_output_shape(self, name: str) -> ShapeSpec:
        """Channels and stride of stage ``name``'s output, whether returned or not."""
        self._check_stage(name)
        return ShapeSpec(
            channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
        )


# --------------------------------------------------------------------------------------------
# ResNet
# --------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (ResNet-18/34), torchvision's module names."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, norm: str):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = get_norm(norm, channels)
        self.conv2 = _conv3x3(channels, out_channels)
        self.bn2 = get_norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 bottleneck with a residual (ResNet-50+, "v1.5" stride)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, norm: str):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = _conv1x1(in_channels, channels)
        self.bn1 = get_norm(norm, channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn2 = get_norm(norm, channels)
        self.conv3 = _conv1x1(channels, out_channels)
        self.bn3 = get_norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int, norm: str) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(_conv1x1(in_channels, out_channels, stride), get_norm(norm, out_channels))


class ReIDResNet(StagedBackbone):
    """ResNet for re-id. Outputs ``res2`` .. ``res5`` (strides 4, 8, 16, 16 or 32).

    Module names are torchvision's, so ``torchvision.models.resnet50().state_dict()`` (less
    ``fc.*``) loads with ``load_state_dict``. Input: (N, 3, H, W) normalised images.
    """

    def __init__(
        self,
        *,
        depth: int = 50,
        last_stride: int = 1,
        stem_width: int = 64,
        norm: str = "BN",
        in_channels: int = 3,
        out_features: Sequence[str] = ("res5",),
    ):
        """
        Args:
            depth: 18, 34, 50, 101 or 152.
            last_stride: stride of res5's first block, 1 or 2.
            stem_width: stem channels; stage widths are (1, 2, 4, 8) x stem_width
                (x4 for Bottleneck outputs). 64 is torchvision's ResNet.
            norm: normalisation layer name for :func:`detectron2.layers.get_norm`.
            in_channels: image channels.
            out_features: names among "res2".."res5" to return.
        """
        super().__init__()
        if depth not in _RESNET_STAGE_BLOCKS:
            raise ValueError(f"ResNet depth {depth} unsupported; use {list(_RESNET_STAGE_BLOCKS)}")
        if last_stride not in (1, 2):
            raise ValueError(f"ResNet last_stride must be 1 or 2, got {last_stride}")
        block = BasicBlock if depth < 50 else Bottleneck
        self.conv1 = nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = get_norm(norm, stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        stage_strides = (1, 2, 2, last_stride)
        channels, stride = stem_width, 4
        self._out_feature_channels: dict[str, int] = {}
        self._out_feature_strides: dict[str, int] = {}
        self._stage_names: list[str] = []
        for idx, (num_blocks, first_stride) in enumerate(
            zip(_RESNET_STAGE_BLOCKS[depth], stage_strides)
        ):
            width = stem_width * 2**idx
            blocks = []
            for b in range(num_blocks):
                blocks.append(block(channels, width, first_stride if b == 0 else 1, norm))
                channels = width * block.expansion
            stride *= first_stride
            setattr(self, f"layer{idx + 1}", nn.Sequential(*blocks))
            name = f"res{idx + 2}"
            self._stage_names.append(name)
            self._out_feature_channels[name] = channels
            self._out_feature_strides[name] = stride
        self._out_features = _check_out_features(out_features, self._stage_names)
        self._last_stage = max(self._stage_names.index(n) for n in self._out_features)
        _init_weights(self)

    def stage(self, name: str) -> nn.Sequential:
        """Stage "res<k>" is torchvision's ``layer<k-1>``."""
        return getattr(self, f"layer{self._check_stage(name) + 1}")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (N, C, H, W) -> {name: (N, C_name, H / stride, W / stride)}."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = {}
        for idx, name in enumerate(self._stage_names[: self._last_stage + 1]):
            x = getattr(self, f"layer{idx + 1}")(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs


# --------------------------------------------------------------------------------------------
# OSNet
# --------------------------------------------------------------------------------------------
class ConvNormAct(nn.Module):
    """conv -> norm -> optional ReLU."""

    def __init__(self, conv: nn.Conv2d, norm: str, relu: bool = True):
        super().__init__()
        self.conv = conv
        self.bn = get_norm(norm, conv.out_channels)
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.relu is None else self.relu(x)


class LiteConv3x3(nn.Module):
    """OSNet's lite 3x3 conv: pointwise 1x1 conv, depthwise 3x3 conv, norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.pointwise = _conv1x1(in_channels, out_channels)
        self.depthwise = _conv3x3(out_channels, out_channels, groups=out_channels)
        self.bn = get_norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.depthwise(self.pointwise(x))))


class AggregationGate(nn.Module):
    """Unified aggregation gate: channel weights from GAP -> FC -> ReLU -> FC -> sigmoid.

    One gate (shared parameters) is applied to every stream of an omni-scale block. Hidden
    width: ``max(channels // reduction, 4)``.
    """

    def __init__(self, channels: int, reduction: int = _OSNET_GATE_REDUCTION):
        super().__init__()
        hidden = max(channels // reduction, _OSNET_GATE_MIN_HIDDEN)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> x scaled by (N, C, 1, 1) gates in (0, 1)."""
        gate = self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class OmniScaleBlock(nn.Module):
    """OSNet's residual bottleneck: 1x1 reduce, T streams of 1..T lite 3x3 convs, a shared
    aggregation gate summing the streams, 1x1 expand (linear), residual, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        mid = out_channels // _OSNET_BOTTLENECK_REDUCTION
        self.conv1 = ConvNormAct(_conv1x1(in_channels, mid), norm)
        self.streams = nn.ModuleList(
            nn.Sequential(*(LiteConv3x3(mid, mid, norm) for _ in range(depth)))
            for depth in range(1, _OSNET_NUM_STREAMS + 1)
        )
        self.gate = AggregationGate(mid)
        self.conv3 = ConvNormAct(_conv1x1(mid, out_channels), norm, relu=False)
        self.downsample = (
            None
            if in_channels == out_channels
            else ConvNormAct(_conv1x1(in_channels, out_channels), norm, relu=False)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        reduced = self.conv1(x)
        aggregated = sum(self.gate(stream(reduced)) for stream in self.streams)
        return self.relu(self.conv3(aggregated) + identity)


class OSNet(StagedBackbone):
    """OSNet (Zhou et al., ICCV 2019), Table 1 of the paper, without its classifier.

    Layout for a 256x128 input (x1.0): conv1 7x7/2 (64) + 3x3/2 max pool -> conv2: 2 blocks
    (256, 64x32) -> transition (1x1 conv + 2x2/2 avg pool) -> conv3: 2 blocks (384, 32x16)
    -> transition -> conv4: 2 blocks (512, 16x8) -> conv5: 1x1 conv (512, 16x8).
    Outputs any of ``conv2`` .. ``conv5`` (strides 4, 8, 16, 16).
    """

    def __init__(
        self,
        *,
        width: float = 1.0,
        norm: str = "BN",
        in_channels: int = 3,
        out_features: Sequence[str] = ("conv5",),
    ):
        """
        Args:
            width: channel multiplier (0.25, 0.5, 0.75, 1.0 in the paper).
            norm: normalisation layer name for :func:`detectron2.layers.get_norm`.
            in_channels: image channels.
            out_features: names among "conv2".."conv5" to return.
        """
        super().__init__()
        if width <= 0:
            raise ValueError(f"OSNet width multiplier must be > 0, got {width}")
        c0, c1, c2, c3 = (max(int(c * width), _OSNET_BOTTLENECK_REDUCTION) for c in _OSNET_CHANNELS)
        self.conv1 = ConvNormAct(
            nn.Conv2d(in_channels, c0, 7, stride=2, padding=3, bias=False), norm
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Sequential(OmniScaleBlock(c0, c1, norm), OmniScaleBlock(c1, c1, norm))
        self.transition2 = self._transition(c1, norm)
        self.conv3 = nn.Sequential(OmniScaleBlock(c1, c2, norm), OmniScaleBlock(c2, c2, norm))
        self.transition3 = self._transition(c2, norm)
        self.conv4 = nn.Sequential(OmniScaleBlock(c2, c3, norm), OmniScaleBlock(c3, c3, norm))
        self.conv5 = ConvNormAct(_conv1x1(c3, c3), norm)

        self._stage_names = ["conv2", "conv3", "conv4", "conv5"]
        self._out_feature_channels = dict(zip(self._stage_names, (c1, c2, c3, c3)))
        self._out_feature_strides = dict(zip(self._stage_names, (4, 8, 16, 16)))
        self._out_features = _check_out_features(out_features, self._stage_names)
        self._last_stage = max(self._stage_names.index(n) for n in self._out_features)
        _init_weights(self)

    @staticmethod
    def _transition(channels: int, norm: str) -> nn.Sequential:
        return nn.Sequential(
            ConvNormAct(_conv1x1(channels, channels), norm), nn.AvgPool2d(2, stride=2)
        )

    def stage(self, name: str) -> nn.Module:
        """Stages "conv2" and "conv5" are the modules of that name; "conv3" and "conv4" are
        the transition before them (1x1 conv + 2x2 average pool) followed by their blocks."""
        self._check_stage(name)
        if name not in _OSNET_TRANSITIONS:
            return getattr(self, name)
        return nn.Sequential(getattr(self, _OSNET_TRANSITIONS[name]), getattr(self, name))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (N, C, H, W) -> {name: (N, C_name, H / stride, W / stride)}."""
        x = self.maxpool(self.conv1(x))
        outputs = {}
        for name in self._stage_names[: self._last_stage + 1]:
            if name in _OSNET_TRANSITIONS:
                x = getattr(self, _OSNET_TRANSITIONS[name])(x)
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs


def _check_out_features(out_features: Sequence[str], available: Sequence[str]) -> list[str]:
    out_features = list(out_features)
    unknown = [n for n in out_features if n not in available]
    if not out_features or unknown:
        raise ValueError(
            f"backbone out_features {out_features} invalid; choose among {list(available)}"
        )
    return out_features


# --------------------------------------------------------------------------------------------
# Weights and builders
# --------------------------------------------------------------------------------------------
def load_backbone_weights(
    backbone: nn.Module, path: str, *, ignore_prefixes: Sequence[str] = ("fc.",)
) -> None:
    """Load a local state dict into ``backbone``; raise naming the file if it does not fit.

    Accepted files: a plain state dict (torchvision's ``resnet50-*.pth``), or a dict holding
    one under ``"state_dict"`` or ``"model"``; a ``"module."`` prefix (DataParallel) is
    stripped. Keys under ``ignore_prefixes`` (the ImageNet classifier) are dropped; BatchNorm
    ``num_batches_tracked`` counters may be absent on either side. Every other parameter and
    buffer must match by name and shape.

    Args:
        backbone: the module to fill.
        path: local file; never downloaded.
        ignore_prefixes: key prefixes of the file to drop.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"backbone weights file {path!r} (MODEL.REID.BACKBONE_WEIGHTS) does not exist; "
            "weights are never downloaded: give a local file or '' for random init"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read backbone weights file {path!r}: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"backbone weights file {path!r} does not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_prefixes))}

    expected = backbone.state_dict()
    counter = "num_batches_tracked"
    missing = [k for k in expected if k not in state and not k.endswith(counter)]
    unexpected = [k for k in state if k not in expected and not k.endswith(counter)]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"backbone weights file {path!r} does not fit {type(backbone).__name__}: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:5]}, {len(mismatched)} shape mismatches {mismatched[:5]}"
        )
    state = {k: v for k, v in state.items() if k in expected}
    backbone.load_state_dict(state, strict=False)
    logger.info("Loaded %d backbone tensors from %s", len(state), path)


@BACKBONE_REGISTRY.register()
def build_reid_resnet_backbone(cfg, input_shape: ShapeSpec) -> ReIDResNet:
    """ResNet from ``MODEL.REID.RESNET.*``; weights from ``MODEL.REID.BACKBONE_WEIGHTS``."""
    rcfg = cfg.MODEL.REID.RESNET
    backbone = ReIDResNet(
        depth=rcfg.DEPTH,
        last_stride=rcfg.LAST_STRIDE,
        stem_width=rcfg.STEM_WIDTH,
        norm=rcfg.NORM,
        in_channels=input_shape.channels,
        out_features=cfg.MODEL.REID.BACKBONE_OUT_FEATURES,
    )
    if cfg.MODEL.REID.BACKBONE_WEIGHTS:
        load_backbone_weights(backbone, cfg.MODEL.REID.BACKBONE_WEIGHTS, ignore_prefixes=("fc.",))
    return backbone


@BACKBONE_REGISTRY.register()
def build_osnet_backbone(cfg, input_shape: ShapeSpec) -> OSNet:
    """OSNet from ``MODEL.REID.OSNET.*``; weights (this module's naming) from
    ``MODEL.REID.BACKBONE_WEIGHTS``."""
    backbone = OSNet(
        width=cfg.MODEL.REID.OSNET.WIDTH,
        norm=cfg.MODEL.REID.OSNET.NORM,
        in_channels=input_shape.channels,
        out_features=cfg.MODEL.REID.BACKBONE_OUT_FEATURES,
    )
    if cfg.MODEL.REID.BACKBONE_WEIGHTS:
        load_backbone_weights(
            backbone, cfg.MODEL.REID.BACKBONE_WEIGHTS, ignore_prefixes=("classifier.", "fc.")
        )
    return backbone
