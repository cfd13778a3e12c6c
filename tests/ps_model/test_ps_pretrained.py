"""ImageNet weight conversion: torchvision / timm state dicts -> trunk + RoI head stage(s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import person_search  # noqa: F401  (compat layer + registration, before detectron2 imports)

# isort: split
import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from torch import nn

from person_search.config import get_cfg
from person_search.modeling.backbone.head_stage import build_roi_head_stage
from person_search.modeling.backbone.timm_backbones import TRUNK_OUT_FEATURE, create_timm_model
from person_search.modeling.pretrained import (
    PretrainedMismatchError,
    load_pretrained_backbone,
    load_pretrained_parts,
    read_pretrained_file,
)

TINY = {"DEPTHS": [1, 1, 1, 1], "WIDTHS": [8, 16, 32, 64]}
CONVERT_TOOL = Path(__file__).resolve().parents[2] / "tools" / "convert_pretrained.py"
ARCHS = {"convnext": "convnext_tiny", "res2net": "res2net50_26w_4s"}


def _randomise_bn_stats(net: nn.Module) -> nn.Module:
    """Give BatchNorms non-trivial statistics so that a wrong mapping changes the output."""
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return net


class _C4Model(nn.Module):
    """The two attributes a person-search model exposes: backbone and roi_heads.res5 (+copy)."""

    def __init__(self, cfg, second_head_stage: bool = False):
        super().__init__()
        self.backbone = build_backbone(cfg)
        in_shape = ShapeSpec(channels=self.backbone.output_shape()[TRUNK_OUT_FEATURE].channels)
        self.roi_heads = nn.Module()
        self.roi_heads.res5 = build_roi_head_stage(cfg, in_shape)
        if second_head_stage:
            self.roi_heads.reid_res5 = build_roi_head_stage(cfg, in_shape)

    def forward(self, x):
        f = self.backbone(x)[TRUNK_OUT_FEATURE]
        return f, self.roi_heads.res5(f)


def _resnet_cfg():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4"]
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False  # torchvision strides in the 3x3 conv
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.PERSON_SEARCH.HEAD_STAGE.NAME = "ResNetRes5Stage"
    return cfg


def _timm_cfg(family: str, widths=None):
    cfg = get_cfg()
    cfg.MODEL.TIMM.ARCH = ARCHS[family]
    cfg.MODEL.TIMM.DEPTHS = TINY["DEPTHS"]
    cfg.MODEL.TIMM.WIDTHS = widths or TINY["WIDTHS"]
    cfg.MODEL.TIMM.NORM = "FrozenBN"
    cfg.MODEL.BACKBONE.NAME = f"build_{family}_trunk"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.PERSON_SEARCH.HEAD_STAGE.NAME = (
        "ConvNeXtHeadStage" if family == "convnext" else "Res2NetHeadStage"
    )
    return cfg


def _timm_net(family: str, widths=None) -> nn.Module:
    torch.manual_seed(0)
    net = create_timm_model(ARCHS[family], depths=TINY["DEPTHS"], widths=widths or TINY["WIDTHS"])
    return _randomise_bn_stats(net).eval()


def _timm_reference(net: nn.Module, family: str, x: torch.Tensor):
    """(stride-16 features, last-stage features) of a timm network."""
    if family == "convnext":
        res4 = net.stages[:3](net.stem(x))
        return res4, net.stages[3](res4)
    res4 = net.maxpool(net.act1(net.bn1(net.conv1(x))))
    res4 = net.layer3(net.layer2(net.layer1(res4)))
    return res4, net.layer4(res4)


@torch.no_grad()
def test_torchvision_resnet50_converted_gives_identical_features(tmp_path):
    torch.manual_seed(0)
    tv = _randomise_bn_stats(torchvision.models.resnet50(weights=None)).eval()
    src = tmp_path / "resnet50.pth"
    torch.save(tv.state_dict(), src)
    cfg = _resnet_cfg()
    cfg.MODEL.BACKBONE.PRETRAINED_FILE = str(src)
    cfg.MODEL.BACKBONE.PRETRAINED_FORMAT = "torchvision_resnet"
    model = _C4Model(cfg).eval()
    assert load_pretrained_backbone(model, cfg)
    x = torch.randn(1, 3, 64, 64)
    res4_ref = tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x)))))))
    res4, res5 = model(x)
    torch.testing.assert_close(res4, res4_ref)
    torch.testing.assert_close(res5, tv.layer4(res4_ref))


@torch.no_grad()
@pytest.mark.parametrize("family", ["convnext", "res2net"])
def test_timm_converted_by_tool_gives_identical_features(tmp_path, family):
    net = _timm_net(family)
    src, out = tmp_path / "timm.pth", tmp_path / "out" / "converted.pth"
    torch.save(net.state_dict(), src)
    cmd = [sys.executable, str(CONVERT_TOOL), "--src", str(src), "--format", f"timm_{family}"]
    env = {**os.environ, "PYTHONPATH": str(CONVERT_TOOL.parents[1])}  # works uninstalled too
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True, env=env)
    assert out.is_file() and not list(out.parent.glob(".convert_pretrained.*"))
    x = torch.randn(1, 3, 64, 64)
    res4_ref, res5_ref = _timm_reference(net, family, x)

    cfg = _timm_cfg(family)
    cfg.MODEL.BACKBONE.PRETRAINED_FILE = str(out)
    cfg.MODEL.BACKBONE.PRETRAINED_FORMAT = "converted"
    model = _C4Model(cfg, second_head_stage=True).eval()
    assert load_pretrained_backbone(model, cfg)
    res4, res5 = model(x)
    torch.testing.assert_close(res4, res4_ref)
    torch.testing.assert_close(res5, res5_ref)
    # Every head stage got the weights (SeqNet holds two copies).
    torch.testing.assert_close(model.roi_heads.reid_res5(res4), res5_ref)

    # The converted file is also a Detectron2 checkpoint of a single-head-stage model.
    fresh = _C4Model(_timm_cfg(family)).eval()
    DetectionCheckpointer(fresh).load(str(out))
    torch.testing.assert_close(fresh(x)[1], res5_ref)


@torch.no_grad()
@pytest.mark.parametrize("family", ["convnext", "res2net"])
def test_timm_raw_file_loads_on_build(tmp_path, family):
    net = _timm_net(family)
    src = tmp_path / "timm.pth"
    torch.save({"state_dict": net.state_dict()}, src)  # wrapped, as many checkpoints are
    cfg = _timm_cfg(family)
    cfg.MODEL.BACKBONE.PRETRAINED_FILE = str(src)
    cfg.MODEL.BACKBONE.PRETRAINED_FORMAT = f"timm_{family}"
    model = _C4Model(cfg).eval()
    load_pretrained_backbone(model, cfg)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(x)[1], _timm_reference(net, family, x)[1])


def test_no_file_configured_is_a_no_op():
    cfg = _timm_cfg("convnext")
    assert load_pretrained_backbone(_C4Model(cfg), cfg) is False


def test_wrong_family_file_is_rejected_with_file_name(tmp_path):
    src = tmp_path / "convnext.pth"
    torch.save(_timm_net("convnext").state_dict(), src)
    with pytest.raises(PretrainedMismatchError, match=r"convnext\.pth.*timm_res2net.*unknown"):
        read_pretrained_file(str(src), "timm_res2net")


def test_shape_mismatch_lists_keys_and_leaves_model_untouched(tmp_path):
    src = tmp_path / "wide.pth"
    torch.save(_timm_net("convnext", widths=[8, 16, 32, 48]).state_dict(), src)
    cfg = _timm_cfg("convnext")
    cfg.MODEL.BACKBONE.PRETRAINED_FILE = str(src)
    cfg.MODEL.BACKBONE.PRETRAINED_FORMAT = "timm_convnext"
    model = _C4Model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PretrainedMismatchError) as err:
        load_pretrained_backbone(model, cfg)
    msg = str(err.value)
    assert "wide.pth" in msg and "RoI head stage" in msg and "shape mismatch" in msg
    assert "stage4.blocks.0.conv_dw.weight: file (48, 1, 7, 7) vs model (64, 1, 7, 7)" in msg
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    parts = read_pretrained_file(_save(tmp_path, _timm_net("res2net").state_dict()), "timm_res2net")
    del parts.trunk["conv1.weight"]
    parts.trunk["layer9.weight"] = torch.zeros(1)
    model = _C4Model(_timm_cfg("res2net"))
    with pytest.raises(PretrainedMismatchError, match=r"1 missing: \['conv1.weight'\]") as err:
        load_pretrained_parts(parts, model.backbone, [model.roi_heads.res5], source="x.pth")
    assert "1 unexpected: ['layer9.weight']" in str(err.value)


def _save(tmp_path, obj) -> str:
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    return str(path)


def test_bad_files_and_formats(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_pretrained_file(str(tmp_path / "nope.pth"), "timm_convnext")
    with pytest.raises(ValueError, match="PRETRAINED_FORMAT='caffe2'"):
        read_pretrained_file(_save(tmp_path, {}), "caffe2")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pth: cannot be read"):
        read_pretrained_file(str(garbage), "timm_convnext")
    with pytest.raises(PretrainedMismatchError, match="not a state dict"):
        read_pretrained_file(_save(tmp_path, {"a": 1}), "timm_convnext")
    with pytest.raises(PretrainedMismatchError, match="outside"):
        read_pretrained_file(_save(tmp_path, {"model": {"x.y": torch.zeros(1)}}), "converted")
    cfg = _timm_cfg("convnext")
    cfg.MODEL.BACKBONE.PRETRAINED_FILE = _save(tmp_path, {})
    with pytest.raises(ValueError, match="no .backbone"):
        load_pretrained_backbone(nn.Linear(1, 1), cfg)
