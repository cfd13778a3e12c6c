"""Re-id backbones: shapes, torchvision weight compatibility, weight-file errors, pooling."""

import pytest
import torch
import torchvision
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from person_search.modeling.backbone.reid_backbones import OSNet, ReIDResNet
from person_search.modeling.reid_heads import GlobalPool


def test_resnet50_last_stride_1_gives_16x8_map(tiny_cfg):
    cfg = tiny_cfg
    cfg.MODEL.REID.RESNET.DEPTH = 50
    cfg.MODEL.REID.RESNET.STEM_WIDTH = 64
    cfg.MODEL.REID.BACKBONE_OUT_FEATURES = ["res4", "res5"]
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    shapes = backbone.output_shape()
    assert shapes["res5"] == ShapeSpec(channels=2048, stride=16)
    assert shapes["res4"] == ShapeSpec(channels=1024, stride=16)
    with torch.no_grad():
        out = backbone.eval()(torch.randn(1, 3, 256, 128))
    assert out["res5"].shape == (1, 2048, 16, 8)
    assert out["res4"].shape == (1, 1024, 16, 8)


def _torchvision_stages(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    outs = []
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        outs.append(x)
    return outs


@pytest.mark.parametrize("last_stride", [1, 2])
def test_torchvision_resnet50_state_dict_loads_and_matches(tiny_cfg, tmp_path, last_stride):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    path = tmp_path / "resnet50_random.pth"
    torch.save(reference.state_dict(), path)
    cfg = tiny_cfg
    cfg.MODEL.REID.RESNET.DEPTH = 50
    cfg.MODEL.REID.RESNET.STEM_WIDTH = 64
    cfg.MODEL.REID.RESNET.LAST_STRIDE = last_stride
    cfg.MODEL.REID.BACKBONE_OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.REID.BACKBONE_WEIGHTS = str(path)
    backbone = build_backbone(cfg, ShapeSpec(channels=3)).eval()
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        ours = backbone(x)
        ref = _torchvision_stages(reference, x)
    # Strides agree up to res4 always, and at res5 with last stride 2.
    names = ["res2", "res3", "res4"] + (["res5"] if last_stride == 2 else [])
    for name, expected in zip(names, ref):
        torch.testing.assert_close(ours[name], expected, atol=1e-5, rtol=1e-4)
    if last_stride == 1:
        assert ours["res5"].shape[-2:] == (2 * ref[3].shape[-2], 2 * ref[3].shape[-1])


def test_weight_file_errors_name_the_file(tiny_cfg, tmp_path):
    cfg = tiny_cfg
    cfg.MODEL.REID.RESNET.DEPTH = 50
    cfg.MODEL.REID.RESNET.STEM_WIDTH = 64
    missing = tmp_path / "nope.pth"
    cfg.MODEL.REID.BACKBONE_WEIGHTS = str(missing)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_backbone(cfg, ShapeSpec(channels=3))
    wrong = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    cfg.MODEL.REID.BACKBONE_WEIGHTS = str(wrong)
    with pytest.raises(ValueError, match="resnet18.pth.*does not fit"):
        build_backbone(cfg, ShapeSpec(channels=3))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    cfg.MODEL.REID.BACKBONE_WEIGHTS = str(garbage)
    with pytest.raises(ValueError, match="garbage.pth"):
        build_backbone(cfg, ShapeSpec(channels=3))


def test_resnet_options_and_bad_values():
    net = ReIDResNet(depth=18, stem_width=8, out_features=("res2", "res5"))
    assert net.output_shape()["res5"] == ShapeSpec(channels=64, stride=16)
    out = net(torch.randn(2, 3, 64, 32))
    assert out["res2"].shape == (2, 8, 16, 8) and out["res5"].shape == (2, 64, 4, 2)
    with pytest.raises(ValueError, match="depth"):
        ReIDResNet(depth=42)
    with pytest.raises(ValueError, match="last_stride"):
        ReIDResNet(depth=18, last_stride=3)
    with pytest.raises(ValueError, match="res6"):
        ReIDResNet(depth=18, out_features=("res6",))


def test_osnet_x0_25_shapes():
    net = OSNet(width=0.25, out_features=("conv2", "conv3", "conv4", "conv5"))
    expected = {"conv2": (64, 4), "conv3": (96, 8), "conv4": (128, 16), "conv5": (128, 16)}
    assert {k: (v.channels, v.stride) for k, v in net.output_shape().items()} == expected
    out = net(torch.randn(2, 3, 256, 128))
    for name, (channels, stride) in expected.items():
        assert out[name].shape == (2, channels, 256 // stride, 128 // stride)
    assert torch.isfinite(out["conv5"]).all()


def test_osnet_x1_0_widths_and_size():
    net = OSNet(width=1.0)
    assert net.output_shape()["conv5"] == ShapeSpec(channels=512, stride=16)
    num_params = sum(p.numel() for p in net.parameters())
    # The paper's 2.2M includes a 512-d FC embedding layer this backbone leaves to the head.
    assert 1.7e6 < num_params < 2.2e6


def test_osnet_builds_from_config(tiny_cfg):
    cfg = tiny_cfg
    cfg.MODEL.BACKBONE.NAME = "build_osnet_backbone"
    cfg.MODEL.REID.OSNET.WIDTH = 0.25
    cfg.MODEL.REID.BACKBONE_OUT_FEATURES = ["conv5"]
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(backbone, OSNet)
    assert backbone.output_shape()["conv5"].channels == 128


def test_global_pooling_kinds():
    x = torch.rand(2, 3, 4, 2) + 0.1
    torch.testing.assert_close(GlobalPool("avg")(x), x.mean(dim=(2, 3)))
    torch.testing.assert_close(GlobalPool("max")(x), x.amax(dim=(2, 3)))
    torch.testing.assert_close(GlobalPool("gem", gem_p=1.0)(x), x.mean(dim=(2, 3)))
    cubic = x.pow(3).mean(dim=(2, 3)).pow(1 / 3)
    torch.testing.assert_close(GlobalPool("gem", gem_p=3.0)(x), cubic)
    with pytest.raises(ValueError, match="median"):
        GlobalPool("median")
