"""timm trunks and RoI head stages: shapes, strides, freezing, norms, config errors."""

from __future__ import annotations

import person_search  # noqa: F401  (compat layer + registration, before detectron2 imports)

# isort: split
import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_backbone
from torch import nn

from person_search.config import get_cfg
from person_search.modeling.backbone.head_stage import build_roi_head_stage
from person_search.modeling.backbone.timm_backbones import (
    TRUNK_OUT_FEATURE,
    ConvNeXtHeadStage,
    Res2NetHeadStage,
    create_timm_model,
)

TINY_CONVNEXT = {"ARCH": "convnext_tiny", "DEPTHS": [1, 1, 1, 1], "WIDTHS": [8, 16, 32, 64]}
TINY_RES2NET = {"ARCH": "res2net50_26w_4s", "DEPTHS": [1, 1, 1, 1], "WIDTHS": [8, 16, 32, 64]}


def _cfg(family: str, norm: str = "BN", freeze_at: int = 0):
    cfg = get_cfg()
    tiny = TINY_CONVNEXT if family == "convnext" else TINY_RES2NET
    cfg.MODEL.TIMM.ARCH = tiny["ARCH"]
    cfg.MODEL.TIMM.DEPTHS = tiny["DEPTHS"]
    cfg.MODEL.TIMM.WIDTHS = tiny["WIDTHS"]
    cfg.MODEL.TIMM.NORM = norm
    cfg.MODEL.BACKBONE.NAME = f"build_{family}_trunk"
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    cfg.MODEL.PERSON_SEARCH.HEAD_STAGE.NAME = (
        "ConvNeXtHeadStage" if family == "convnext" else "Res2NetHeadStage"
    )
    return cfg


@pytest.mark.parametrize(
    ("family", "trunk_channels", "head_channels"),
    [("convnext", 32, 64), ("res2net", 128, 256)],
)
def test_trunk_and_head_shapes(family, trunk_channels, head_channels):
    cfg = _cfg(family)
    trunk = build_backbone(cfg)
    spec = trunk.output_shape()[TRUNK_OUT_FEATURE]
    assert (spec.channels, spec.stride) == (trunk_channels, 16)
    out = trunk(torch.randn(2, 3, 64, 96))
    assert list(out) == [TRUNK_OUT_FEATURE]
    assert out[TRUNK_OUT_FEATURE].shape == (2, trunk_channels, 4, 6)
    head = build_roi_head_stage(cfg, ShapeSpec(channels=spec.channels))
    assert head.out_channels == head_channels
    assert head(torch.randn(3, trunk_channels, 14, 14)).shape == (3, head_channels, 7, 7)


@pytest.mark.parametrize("family", ["convnext", "res2net"])
def test_trunk_plus_head_equals_timm_network(family):
    """Trunk then head stage computes the timm network's last feature map (same weights)."""
    torch.manual_seed(0)
    cfg = _cfg(family, norm="BN")
    trunk = build_backbone(cfg).eval()
    head = build_roi_head_stage(cfg, trunk.output_shape()[TRUNK_OUT_FEATURE]).eval()
    tiny = TINY_CONVNEXT if family == "convnext" else TINY_RES2NET
    net = create_timm_model(tiny["ARCH"], depths=tiny["DEPTHS"], widths=tiny["WIDTHS"]).eval()
    # Copy the timm net's weights into trunk + head by module correspondence.
    if family == "convnext":
        trunk.stem.load_state_dict(net.stem.state_dict())
        trunk.stages.load_state_dict(net.stages[:3].state_dict())
        head.stage4.load_state_dict(net.stages[3].state_dict())
    else:
        for name in ("conv1", "bn1", "layer1", "layer2", "layer3"):
            getattr(trunk, name).load_state_dict(getattr(net, name).state_dict())
        head.layer4.load_state_dict(net.layer4.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = net.forward_features(x)
        got = head(trunk(x)[TRUNK_OUT_FEATURE])
    torch.testing.assert_close(got, expected)


def test_res2net_frozen_bn_and_freeze_at():
    cfg = _cfg("res2net", norm="FrozenBN", freeze_at=2)
    trunk = build_backbone(cfg)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in trunk.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in trunk.modules())
    frozen = {n.split(".")[0] for n, p in trunk.named_parameters() if not p.requires_grad}
    trainable = {n.split(".")[0] for n, p in trunk.named_parameters() if p.requires_grad}
    assert frozen == {"conv1", "layer1"}
    assert trainable == {"layer2", "layer3"}
    head = build_roi_head_stage(cfg, trunk.output_shape()[TRUNK_OUT_FEATURE])
    assert isinstance(head, Res2NetHeadStage)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in head.modules())


def test_res2net_bn_trainable_but_frozen_units_get_frozen_bn():
    cfg = _cfg("res2net", norm="BN", freeze_at=1)
    trunk = build_backbone(cfg)
    assert isinstance(trunk.bn1, FrozenBatchNorm2d)
    assert isinstance(trunk.layer1[0].bn1, nn.BatchNorm2d)
    assert all(p.requires_grad for n, p in trunk.named_parameters() if n.startswith("layer"))


def test_convnext_freeze_at():
    cfg = _cfg("convnext", freeze_at=3)
    trunk = build_backbone(cfg)
    frozen = {
        ".".join(n.split(".")[:2]) for n, p in trunk.named_parameters() if not p.requires_grad
    }
    assert frozen == {"stem.0", "stem.1", "stages.0", "stages.1"}
    assert all(p.requires_grad for p in trunk.stages[2].parameters())
    head = build_roi_head_stage(cfg, trunk.output_shape()[TRUNK_OUT_FEATURE])
    assert isinstance(head, ConvNeXtHeadStage)
    assert all(p.requires_grad for p in head.parameters())


def test_config_errors():
    cfg = _cfg("convnext")
    cfg.MODEL.TIMM.ARCH = "resnet50"
    with pytest.raises(ValueError, match="MODEL.TIMM.ARCH='resnet50'"):
        build_backbone(cfg)
    cfg = _cfg("convnext")
    cfg.MODEL.TIMM.ARCH = "res2net50_26w_4s"  # family does not match the trunk builder
    with pytest.raises(ValueError, match="not a convnext architecture"):
        build_backbone(cfg)
    cfg = _cfg("convnext")
    cfg.MODEL.TIMM.DEPTHS = [1, 1]
    with pytest.raises(ValueError, match="MODEL.TIMM.DEPTHS"):
        build_backbone(cfg)
    cfg = _cfg("res2net", norm="GN")
    with pytest.raises(ValueError, match="MODEL.TIMM.NORM='GN'"):
        build_backbone(cfg)
    cfg = _cfg("res2net", freeze_at=7)
    with pytest.raises(ValueError, match="FREEZE_AT=7"):
        build_backbone(cfg)
    with pytest.raises(ValueError, match="expects 32-channel"):
        build_roi_head_stage(_cfg("convnext"), ShapeSpec(channels=30))
    cfg = _cfg("convnext")
    cfg.MODEL.TIMM.ARCH = "convnext_does_not_exist"
    with pytest.raises(ValueError, match="timm cannot build it"):
        build_backbone(cfg)
