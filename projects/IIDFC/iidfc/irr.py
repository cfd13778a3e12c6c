"""Improved RCNN Regression (IRR), IIDFC eq. 1-4: the R-CNN box loss

    L_irr_reg = gamma * SmoothL1(deltas) + beta * CIoU(decoded boxes, gt boxes)

(gamma 0.3, beta 0.7), times lambda3 (``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT``, paper 5), on
the foreground RoIs, each term summed over them and divided by the number of sampled RoIs (the
library's / Detectron2's normalisation of box losses).

CIoU is Detectron2's (``detectron2.layers.ciou_loss``, v0.6; reached through its dense box
regression loss with ``box_reg_loss_type="ciou"``): ``1 - IoU + rho^2 / c^2 + alpha v`` with
``v = 4 / pi^2 (atan(w_gt / h_gt) - atan(w / h))^2`` and ``alpha = v / (1 - IoU + v)`` held
constant in the gradient, as the CIoU authors' code does.
"""

from __future__ import annotations

import torch
from detectron2.config import configurable
from detectron2.structures import Instances

from person_search.modeling.roi_heads.box_utils import BoxRegressor, class_agnostic_box_loss

__all__ = ["IRRBoxRegressor"]


class IRRBoxRegressor(BoxRegressor):
    """The class-agnostic box regressor of HOIM's heads with IRR's two-term loss.

    forward: (M, C) -> (M, 4) deltas (as :class:`BoxRegressor`).
    """

    @configurable
    def __init__(self, *, smooth_l1_weight: float, ciou_weight: float, **kwargs):
        """
        Args:
            smooth_l1_weight: gamma (``MODEL.IIDFC.IRR.SMOOTH_L1_WEIGHT``), >= 0.
            ciou_weight: beta (``MODEL.IIDFC.IRR.CIOU_WEIGHT``), >= 0.
            kwargs: :class:`BoxRegressor` arguments; ``loss_type`` must be ``"smooth_l1"``
                and ``loss_weight`` is lambda3.
        """
        super().__init__(**kwargs)
        if self.loss_type != "smooth_l1":
            raise ValueError(
                "IIDFC's IRR loss is Smooth-L1 + CIoU: MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE must "
                f"be 'smooth_l1', got {self.loss_type!r}"
            )
        for key, value in (
            ("MODEL.IIDFC.IRR.SMOOTH_L1_WEIGHT", smooth_l1_weight),
            ("MODEL.IIDFC.IRR.CIOU_WEIGHT", ciou_weight),
        ):
            if not value >= 0:
                raise ValueError(f"{key} must be >= 0, got {value}")
        self.smooth_l1_weight = float(smooth_l1_weight)
        self.ciou_weight = float(ciou_weight)

    @classmethod
    def from_config(cls, cfg, in_channels: int, bn_neck: bool, loss_weight: float):
        ret = super().from_config(cfg, in_channels, bn_neck, loss_weight)
        ret.update(
            smooth_l1_weight=cfg.MODEL.IIDFC.IRR.SMOOTH_L1_WEIGHT,
            ciou_weight=cfg.MODEL.IIDFC.IRR.CIOU_WEIGHT,
        )
        return ret

    def loss_terms(
        self, deltas: torch.Tensor, sampled: list[Instances], num_classes: int
    ) -> dict[str, torch.Tensor]:
        """The two weighted terms for (R, 4) ``deltas`` of the sampled RoIs:
        ``{"loss_box_reg": lambda3 * gamma * SmoothL1, "loss_box_ciou": lambda3 * beta * CIoU}``."""
        terms = {}
        for name, loss_type, weight in (
            ("loss_box_reg", "smooth_l1", self.smooth_l1_weight),
            ("loss_box_ciou", "ciou", self.ciou_weight),
        ):
            loss = class_agnostic_box_loss(
                self.box2box_transform,
                sampled,
                deltas,
                num_classes,
                loss_type=loss_type,
                smooth_l1_beta=self.smooth_l1_beta,
            )
            terms[name] = self.loss_weight * weight * loss
        return terms

    def losses(
        self, deltas: torch.Tensor, sampled: list[Instances], num_classes: int
    ) -> torch.Tensor:
        """lambda3 * L_irr_reg: the sum of :meth:`loss_terms`."""
        return sum(self.loss_terms(deltas, sampled, num_classes).values())

    def extra_repr(self) -> str:
        return f"smooth_l1_weight={self.smooth_l1_weight}, ciou_weight={self.ciou_weight}"
