"""Every config of projects/IIDFC/configs merges (with add_iidfc_config) and builds its model
with the parts its name states (Table IV-VII rows, the toy configs), at the paper's values."""

from __future__ import annotations

import glob
import os

import pytest
import torch
from detectron2.modeling import build_model
from iidfc_testutils import CONFIG_DIR, NUM_IDS, iidfc_cfg
from torch import nn

from iidfc import (
    ArcFaceLoss,
    FCLoss,
    IIDFCROIHeads,
    IRRBoxRegressor,
    OIMFCLoss,
    PedestrianAttention,
    SphereFaceLoss,
)
from person_search.modeling.losses import HOIMLoss

_CONFIGS = sorted(glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True))
_ANCHOR_RATIOS = [0.9, 1.4, 1.9, 2.3, 2.5, 2.7, 2.9, 3.1, 3.5, 4.0, 4.6, 5.2]
# config (relative to configs/) -> (RoI heads, re-id loss, attention class, trunk family).
_PARTS = {
    "Base-IIDFC.yaml": ("IIDFCROIHeads", FCLoss, "PAM", "res2net"),
    "iidfc_res2net50_cuhk_sysu.yaml": ("IIDFCROIHeads", FCLoss, "PAM", "res2net"),
    "iidfc_res2net50_prw.yaml": ("IIDFCROIHeads", FCLoss, "PAM", "res2net"),
    "iidfc_toy_cuhk_sysu.yaml": ("IIDFCROIHeads", FCLoss, "PAM", "res2net"),
    "ablations/iidfc_res2net50_cuhk_sysu_irr.yaml": ("IIDFCROIHeads", HOIMLoss, "none", "res2net"),
    "ablations/iidfc_res2net50_prw_irr.yaml": ("IIDFCROIHeads", HOIMLoss, "none", "res2net"),
    "ablations/iidfc_toy_cuhk_sysu_irr.yaml": ("IIDFCROIHeads", HOIMLoss, "none", "res2net"),
    "ablations/iidfc_res2net50_cuhk_sysu_irr_fc.yaml": ("IIDFCROIHeads", FCLoss, "none", "res2net"),
    "ablations/iidfc_res2net50_prw_irr_fc.yaml": ("IIDFCROIHeads", FCLoss, "none", "res2net"),
    "ablations/iidfc_toy_cuhk_sysu_irr_fc.yaml": ("IIDFCROIHeads", FCLoss, "none", "res2net"),
    "alternatives/iidfc_res2net50_prw_sa.yaml": ("IIDFCROIHeads", FCLoss, "SA", "res2net"),
    "alternatives/iidfc_res2net50_prw_cbam.yaml": ("IIDFCROIHeads", FCLoss, "CBAM", "res2net"),
    "alternatives/iidfc_res2net50_prw_nonlocal.yaml": (
        "IIDFCROIHeads", FCLoss, "NonLocal", "res2net",
    ),
    "alternatives/iidfc_res2net50_prw_sphereface.yaml": (
        "IIDFCROIHeads", SphereFaceLoss, "PAM", "res2net",
    ),
    "alternatives/iidfc_res2net50_prw_arcface.yaml": (
        "IIDFCROIHeads", ArcFaceLoss, "PAM", "res2net",
    ),
    "backbones/iidfc_R50_cuhk_sysu.yaml": ("IIDFCROIHeads", FCLoss, "PAM", "resnet"),
    "backbones/iidfc_R50_prw.yaml": ("IIDFCROIHeads", FCLoss, "PAM", "resnet"),
    "backbones/iidfc_res2net50d_prw.yaml": ("IIDFCROIHeads", FCLoss, "PAM", "res2net"),
    "backbones/hoim_R50_cuhk_sysu.yaml": ("HOIMROIHeads", HOIMLoss, None, "resnet"),
    "backbones/hoim_R50_prw.yaml": ("HOIMROIHeads", HOIMLoss, None, "resnet"),
    "oim/oim_pam_fc_R50_cuhk_sysu.yaml": ("AttentionOIMROIHeads", OIMFCLoss, "PAM", "resnet"),
    "oim/oim_pam_fc_R50_prw.yaml": ("AttentionOIMROIHeads", OIMFCLoss, "PAM", "resnet"),
    "oim/oim_pam_fc_toy_cuhk_sysu.yaml": ("AttentionOIMROIHeads", OIMFCLoss, "PAM", "resnet"),
}  # fmt: skip
_ATTENTION_CLASSES = {"PAM": PedestrianAttention, "none": nn.Identity}


def _name(path: str) -> str:
    return os.path.relpath(path, CONFIG_DIR)


def test_every_table_row_has_a_config():
    assert {_name(p) for p in _CONFIGS} == set(_PARTS)


@pytest.mark.parametrize("path", _CONFIGS, ids=_name)
def test_config_builds_its_model(path):
    heads, loss_cls, attention, trunk = _PARTS[_name(path)]
    cfg = iidfc_cfg(path)
    torch.manual_seed(0)
    model = build_model(cfg)
    roi_heads = model.roi_heads
    assert type(roi_heads).__name__ == heads
    assert type(roi_heads.reid_loss) is loss_cls
    assert roi_heads.reid_loss.num_person_ids == NUM_IDS
    assert ("ResNet" if trunk == "resnet" else "Res2Net") in type(roi_heads.res5).__name__
    if attention is None:
        assert not hasattr(roi_heads, "attention")
    else:
        assert attention == cfg.MODEL.IIDFC.ATTENTION.NAME
        expected = _ATTENTION_CLASSES.get(attention)
        assert expected is None or type(roi_heads.attention) is expected
    if isinstance(roi_heads, IIDFCROIHeads):
        assert type(roi_heads.box_predictor) is IRRBoxRegressor
        irr = roi_heads.box_predictor
        assert (irr.smooth_l1_weight, irr.ciou_weight) == (0.3, 0.7)  # gamma, beta
    if loss_cls in (FCLoss, OIMFCLoss):
        assert (roi_heads.reid_loss.m1, roi_heads.reid_loss.m2) == (0.9, 0.1)
    # IIDFC's settings (the toy and OIM configs keep their baselines' schedule and sizes)
    if "toy" not in path and "oim/" not in path:
        assert cfg.INPUT.MAX_SIZE_TRAIN == 1500
        assert roi_heads.reid_loss.scalar == 30.0
        assert cfg.SOLVER.BASE_LR == 0.003 and cfg.SOLVER.IMS_PER_BATCH == 5
        assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS) == (23, (16,))
        lambda2, lambda3 = (cfg.MODEL.RPN.BBOX_REG_LOSS_WEIGHT, roi_heads.box_predictor.loss_weight)
        assert (lambda2, lambda3) == (5.0, 5.0)
        if heads != "HOIMROIHeads":
            assert cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS == [_ANCHOR_RATIOS]
            assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [[32, 64, 128, 256, 512]]
