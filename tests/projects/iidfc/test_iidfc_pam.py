"""PAM (one shared 3x3 weight over three dilations, output shape and range, branches by hand),
the attention registry (Table VII's alternatives, unknown names and bad sizes name the key) and
ImageNet weights loading into an IIDFC model (PAM's parameters are new, not a mismatch)."""

from __future__ import annotations

import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from iidfc_testutils import CONFIG_DIR, TOY_CONFIG, iidfc_cfg
from torch import nn

from iidfc import ROI_ATTENTION_REGISTRY, PedestrianAttention, build_roi_attention
from person_search.modeling.backbone.timm_backbones import create_timm_model
from person_search.modeling.pretrained import (
    convert_state_dict,
    find_head_stages,
    load_pretrained_backbone,
    load_pretrained_parts,
)

# Parameters of one 3x3 convolution 2 -> 1 (weight 1 x 2 x 3 x 3, bias 1).
ONE_CONV3X3 = 2 * 3 * 3 + 1


def test_three_branches_share_one_parameter_tensor():
    pam = PedestrianAttention()
    convs = [m for m in pam.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 and convs[0] is pam.shared_conv
    assert sum(p.numel() for p in pam.shared_conv.parameters()) == ONE_CONV3X3
    # Everything else: SE over the 3 branch maps (3 -> 3 -> 3, with biases) and the 1x1 fuse.
    se = (3 * 3 + 3) * 2
    fuse = 3 + 1
    assert sum(p.numel() for p in pam.parameters()) == ONE_CONV3X3 + se + fuse
    # Changing the one weight changes every branch; gradients of all three branches reach it.
    x = torch.randn(2, 8, 7, 7)
    before = pam.branches(x)
    with torch.no_grad():
        pam.shared_conv.weight.add_(0.5)
    after = pam.branches(x)
    assert len(after) == 3 and all(not torch.equal(b, a) for b, a in zip(before, after))
    for i in range(3):
        pam.zero_grad()
        pam.branches(x)[i].sum().backward()
        assert pam.shared_conv.weight.grad.abs().sum() > 0


def test_branches_by_hand_dilations_one_two_three():
    pam = PedestrianAttention()
    with torch.no_grad():
        pam.shared_conv.weight.fill_(1.0)
        pam.shared_conv.bias.zero_()
    # One lit pixel at the centre of a 9 x 9 map, value 1 in every channel: avg = max = 1
    # there, 0 elsewhere. An all-ones 3x3 kernel of dilation d sums the two descriptor
    # channels, so branch d is 2 on the 3 x 3 grid of spacing d around the centre, 0 elsewhere.
    x = torch.zeros(1, 4, 9, 9)
    x[0, :, 4, 4] = 1.0
    for d, branch in zip((1, 2, 3), pam.branches(x)):
        assert branch.shape == (1, 1, 9, 9)
        expected = torch.zeros(9, 9)
        for dy in (-d, 0, d):
            for dx in (-d, 0, d):
                expected[4 + dy, 4 + dx] = 2.0
        torch.testing.assert_close(branch[0, 0], expected)


@pytest.mark.parametrize("shape", [(3, 64, 7, 7), (1, 16, 14, 6), (0, 8, 7, 7)])
def test_output_shape_and_range(shape):
    torch.manual_seed(0)
    pam = PedestrianAttention()
    x = torch.randn(shape) * 5
    m = pam.attention_map(x)
    assert m.shape == (shape[0], 1, *shape[2:])
    if shape[0]:
        assert (m > 0).all() and (m < 1).all()
    y = pam(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x * m)  # the input reweighted, never amplified or sign-flipped
    assert (y.abs() <= x.abs()).all() and (y * x >= 0).all()


def test_bad_pam_arguments_name_the_key():
    with pytest.raises(ValueError, match=r"MODEL.IIDFC.PAM.DILATIONS must be >= 1 each"):
        PedestrianAttention(dilations=(1, 0, 3))
    with pytest.raises(ValueError, match="MODEL.IIDFC.PAM.BRANCH_CHANNELS must be >= 1, got 0"):
        PedestrianAttention(branch_channels=0)
    with pytest.raises(ValueError, match="MODEL.IIDFC.PAM.SE_REDUCTION must be >= 1, got 0"):
        PedestrianAttention(se_reduction=0)


@pytest.mark.parametrize("name", ["PAM", "SA", "CBAM", "NonLocal", "none"])
def test_every_registered_attention_keeps_the_shape(name):
    cfg = iidfc_cfg(TOY_CONFIG, "MODEL.IIDFC.ATTENTION.NAME", name)
    attention = build_roi_attention(cfg, 64)
    x = torch.randn(2, 64, 7, 7)
    assert attention.train()(x).shape == x.shape
    assert (sum(p.numel() for p in attention.parameters()) == 0) == (name == "none")
    assert {k for k, _ in ROI_ATTENTION_REGISTRY} == {"PAM", "SA", "CBAM", "NonLocal", "none"}


def test_unknown_attention_names_the_key_in_build_model():
    cfg = iidfc_cfg(TOY_CONFIG, "MODEL.IIDFC.ATTENTION.NAME", "SE")
    with pytest.raises(ValueError, match=r"MODEL.IIDFC.ATTENTION.NAME='SE' is not one of"):
        build_model(cfg)


@pytest.mark.parametrize(
    "name, key, value",
    [
        ("SA", "MODEL.IIDFC.SA.KERNEL_SIZE", "4"),
        ("CBAM", "MODEL.IIDFC.CBAM.KERNEL_SIZE", "0"),
        ("CBAM", "MODEL.IIDFC.CBAM.REDUCTION", "0"),
        ("NonLocal", "MODEL.IIDFC.NON_LOCAL.REDUCTION", "0"),
    ],
)
def test_bad_alternative_sizes_name_the_key(name, key, value):
    cfg = iidfc_cfg(TOY_CONFIG, "MODEL.IIDFC.ATTENTION.NAME", name, key, value)
    with pytest.raises(ValueError, match=f"{key} must be .*, got {value}"):
        build_roi_attention(cfg, 64)


def test_imagenet_weights_load_into_the_trunk_and_pam_is_new(tmp_path):
    cfg = iidfc_cfg(TOY_CONFIG)
    torch.manual_seed(0)
    model = build_model(cfg)
    timm_net = create_timm_model(
        cfg.MODEL.TIMM.ARCH, depths=cfg.MODEL.TIMM.DEPTHS, widths=cfg.MODEL.TIMM.WIDTHS
    )
    path = tmp_path / "res2net_tiny.pth"
    torch.save(timm_net.state_dict(), path)
    cfg.MODEL.BACKBONE.PRETRAINED_FILE = str(path)
    cfg.MODEL.BACKBONE.PRETRAINED_FORMAT = "timm_res2net"
    pam_before = {k: v.clone() for k, v in model.roi_heads.attention.state_dict().items()}
    assert load_pretrained_backbone(model, cfg)  # strict: a mismatch would raise
    torch.testing.assert_close(model.backbone.state_dict()["conv1.weight"], timm_net.conv1.weight)
    head = model.roi_heads.res5.state_dict()
    torch.testing.assert_close(head["layer4.0.conv1.weight"], timm_net.layer4[0].conv1.weight)
    for k, v in model.roi_heads.attention.state_dict().items():
        assert torch.equal(v, pam_before[k]), k

    # A HOIM-base checkpoint loads into IIDFC with PAM's parameters reported missing (new),
    # nothing unexpected and no shape mismatch.
    hoim = build_model(iidfc_cfg(TOY_CONFIG, "MODEL.ROI_HEADS.NAME", "HOIMROIHeads"))
    incompatible = DetectionCheckpointer(model)._load_model({"model": hoim.state_dict()})
    assert set(incompatible.missing_keys) == {
        f"roi_heads.attention.{k}" for k in model.roi_heads.attention.state_dict()
    }
    assert not incompatible.unexpected_keys and not incompatible.incorrect_shapes


def test_res2net50d_weights_fit_the_table_vi_variant():
    # Table VI's Res2Net50_v1b_26w_4s is timm's res2net50d: its state dict (deep stem) must
    # load strictly through the library's timm_res2net converter into the variant's config.
    model = build_model(
        iidfc_cfg(os.path.join(CONFIG_DIR, "backbones", "iidfc_res2net50d_prw.yaml"))
    )
    timm_net = create_timm_model("res2net50d")
    parts = convert_state_dict(timm_net.state_dict(), "timm_res2net")
    load_pretrained_parts(parts, model.backbone, find_head_stages(model))
    torch.testing.assert_close(
        model.backbone.state_dict()["conv1.0.weight"], timm_net.conv1[0].weight
    )
