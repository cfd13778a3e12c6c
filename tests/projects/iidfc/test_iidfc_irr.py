"""IRR: Detectron2's CIoU loss (the one IIDFC's box loss uses) on hand-computed pairs
(overlapping, disjoint, identical boxes), IRR's two terms on one sampled RoI by hand, and bad
settings naming the key."""

from __future__ import annotations

import math

import pytest
import torch
from detectron2.layers import ciou_loss
from detectron2.structures import Boxes, Instances
from iidfc_testutils import TOY_CONFIG, iidfc_cfg

from iidfc import IRRBoxRegressor

# pred (0, 0, 4, 4) against gt (2, 0, 6, 8): intersection 2 x 4 = 8, union 16 + 32 - 8 = 40,
# IoU = 0.2; enclosing box (0, 0, 6, 8), c^2 = 36 + 64 = 100; centres (2, 2) and (4, 4),
# rho^2 = 8; v = 4 / pi^2 (atan(4 / 8) - atan(4 / 4))^2 = 0.0419565, alpha = v / (1 - IoU + v)
# = 0.0498321; CIoU = 1 - 0.2 + 8 / 100 + alpha v = 0.8820908.
OVERLAPPING = ([0.0, 0.0, 4.0, 4.0], [2.0, 0.0, 6.0, 8.0], 0.8820908)
# pred (0, 0, 2, 2) against gt (4, 0, 6, 2): IoU 0, enclosing (0, 0, 6, 2), c^2 = 40, centres
# (1, 1) and (5, 1), rho^2 = 16, same aspect ratio (v = 0): CIoU = 1 + 16 / 40 = 1.4.
DISJOINT = ([0.0, 0.0, 2.0, 2.0], [4.0, 0.0, 6.0, 2.0], 1.4)
# Identical boxes: IoU 1, rho 0, v 0 -> 0 (up to Detectron2's eps of 1e-7 in the union).
IDENTICAL = ([1.0, 2.0, 3.0, 6.0], [1.0, 2.0, 3.0, 6.0], 0.0)


@pytest.mark.parametrize("pred, gt, expected", [OVERLAPPING, DISJOINT, IDENTICAL])
def test_ciou_of_hand_computed_pairs(pred, gt, expected):
    loss = ciou_loss(torch.tensor([pred], dtype=torch.float64), torch.tensor([gt]).double())
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_ciou_parts_of_the_overlapping_pair():
    v = 4 / math.pi**2 * (math.atan(0.5) - math.atan(1.0)) ** 2
    assert v == pytest.approx(0.0419565, abs=1e-7)
    assert v / (0.8 + v) == pytest.approx(0.0498321, abs=1e-7)
    # alpha is held constant in the gradient (CIoU authors' code): d/dw of the aspect term is
    # alpha dv/dw only. Moving pred's x2 (its width) changes IoU, rho and v; the gradient is
    # finite and points to enlarge the box towards the ground truth.
    pred = torch.tensor([OVERLAPPING[0]], requires_grad=True)
    ciou_loss(pred, torch.tensor([OVERLAPPING[1]])).sum().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 2] < 0 and pred.grad[0, 3] < 0


def _regressor(*opts: str) -> IRRBoxRegressor:
    cfg = iidfc_cfg(TOY_CONFIG, *opts)
    return IRRBoxRegressor(cfg, 8, bn_neck=False, loss_weight=5.0)


def test_irr_terms_on_one_sampled_roi_by_hand():
    reg = _regressor()
    assert (reg.smooth_l1_weight, reg.ciou_weight, reg.loss_weight) == (0.3, 0.7, 5.0)
    assert reg.smooth_l1_beta == 0.0  # Smooth-L1 with beta 0: L1 (the library's default)
    # One foreground RoI = the overlapping pair's pred box with zero deltas (decoded = itself),
    # one background RoI; R = 2 sampled RoIs divide both sums.
    sampled = Instances((16, 16))
    sampled.proposal_boxes = Boxes(torch.tensor([OVERLAPPING[0], [8.0, 8.0, 12.0, 12.0]]))
    sampled.gt_boxes = Boxes(torch.tensor([OVERLAPPING[1], [0.0, 0.0, 1.0, 1.0]]))
    sampled.gt_classes = torch.tensor([0, 1])
    deltas = torch.zeros(2, 4)
    terms = reg.loss_terms(deltas, [sampled], num_classes=1)
    # Target deltas with weights (10, 10, 5, 5): dx = 10 * 2 / 4 = 5, dy = 10 * 2 / 4 = 5,
    # dw = 5 log(4 / 4) = 0, dh = 5 log(8 / 4) = 3.4657359; L1 = 13.4657359.
    l1 = 5.0 + 5.0 + 0.0 + 5 * math.log(2.0)
    assert terms["loss_box_reg"].item() == pytest.approx(5.0 * 0.3 * l1 / 2, rel=1e-6)
    assert terms["loss_box_ciou"].item() == pytest.approx(5.0 * 0.7 * OVERLAPPING[2] / 2, rel=1e-6)
    total = reg.losses(deltas, [sampled], num_classes=1)
    torch.testing.assert_close(total, terms["loss_box_reg"] + terms["loss_box_ciou"])


def test_zero_ciou_weight_is_the_smooth_l1_baseline():
    sampled = Instances((16, 16))
    sampled.proposal_boxes = Boxes(torch.tensor([OVERLAPPING[0]]))
    sampled.gt_boxes = Boxes(torch.tensor([OVERLAPPING[1]]))
    sampled.gt_classes = torch.tensor([0])
    deltas = torch.tensor([[0.1, -0.2, 0.3, 0.05]])
    irr = _regressor(
        "MODEL.IIDFC.IRR.SMOOTH_L1_WEIGHT", "1.0", "MODEL.IIDFC.IRR.CIOU_WEIGHT", "0.0"
    )
    plain = super(IRRBoxRegressor, irr).losses(deltas, [sampled], 1)  # BoxRegressor's
    torch.testing.assert_close(irr.losses(deltas, [sampled], 1), plain)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("MODEL.IIDFC.IRR.SMOOTH_L1_WEIGHT", "-0.3", "SMOOTH_L1_WEIGHT must be >= 0, got -0.3"),
        ("MODEL.IIDFC.IRR.CIOU_WEIGHT", "-0.7", "CIOU_WEIGHT must be >= 0, got -0.7"),
        ("MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE", "giou", "BBOX_REG_LOSS_TYPE must be 'smooth_l1'"),
    ],
)
def test_bad_irr_settings_name_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        _regressor(key, value)
