"""Box utilities shared by the person-search RoI heads: pooling of RoI maps, the class-agnostic
box regressor and its loss, sampling of boxes against ground truth, person ids of sampled RoIs.
"""

from __future__ import annotations

import torch
from detectron2.config import configurable
from detectron2.modeling.box_regression import Box2BoxTransform, _dense_box_regression_loss
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, Instances, pairwise_iou
from torch import nn

from ..losses.oim import BACKGROUND_PID

__all__ = [
    "POOLINGS",
    "BoxRegressor",
    "box_regression_loss",
    "class_agnostic_box_loss",
    "label_and_sample_boxes",
    "pool_roi_maps",
    "proposal_person_ids",
]

# Box dimension (x1, y1, x2, y2).
BOX_DIM = 4
# Std of the normal init of box regression weights (SeqNet / Detectron2: 0.001-0.01).
_REG_INIT_STD = 0.01
# Global poolings of RoI maps (MODEL.SEQNET.POOLING).
POOLINGS = ("max", "avg")


def pool_roi_maps(x: torch.Tensor, how: str) -> torch.Tensor:
    """(M, C, h, w) RoI maps -> (M, C) by global ``"max"`` or ``"avg"`` pooling."""
    if how == "max":
        return x.amax(dim=(2, 3))
    if how == "avg":
        return x.mean(dim=(2, 3))
    raise ValueError(f"MODEL.SEQNET.POOLING={how!r} is not one of {POOLINGS}")


class BoxRegressor(nn.Module):
    """Class-agnostic box deltas of pooled RoI vectors: Linear(C, 4) (+ BatchNorm1d "BN neck"),
    and their regression loss.

    forward: (M, C) -> (M, 4) deltas for ``box2box_transform``.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        bn_neck: bool,
        box2box_transform: Box2BoxTransform,
        loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
        loss_weight: float = 1.0,
    ):
        """
        Args:
            in_channels: C.
            bn_neck: BatchNorm1d after the linear layer (SeqNet's "BN neck").
            box2box_transform: the delta encoding (``MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS``).
            loss_type, smooth_l1_beta: ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE`` and
                ``SMOOTH_L1_BETA``.
            loss_weight: multiplier of :meth:`losses`.
        """
        super().__init__()
        self.linear = nn.Linear(in_channels, BOX_DIM)
        nn.init.normal_(self.linear.weight, std=_REG_INIT_STD)
        nn.init.zeros_(self.linear.bias)
        self.norm = nn.BatchNorm1d(BOX_DIM) if bn_neck else nn.Identity()
        if bn_neck:
            nn.init.normal_(self.norm.weight, std=_REG_INIT_STD)
            nn.init.zeros_(self.norm.bias)
        self.box2box_transform = box2box_transform
        self.loss_type = loss_type
        self.smooth_l1_beta = smooth_l1_beta
        self.loss_weight = loss_weight

    @classmethod
    def from_config(cls, cfg, in_channels: int, bn_neck: bool, loss_weight: float):
        box_head = cfg.MODEL.ROI_BOX_HEAD
        return {
            "in_channels": in_channels,
            "bn_neck": bn_neck,
            "box2box_transform": Box2BoxTransform(weights=box_head.BBOX_REG_WEIGHTS),
            "loss_type": box_head.BBOX_REG_LOSS_TYPE,
            "smooth_l1_beta": box_head.SMOOTH_L1_BETA,
            "loss_weight": loss_weight,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            return x.new_zeros((0, BOX_DIM))
        return self.norm(self.linear(x))

    def losses(
        self, deltas: torch.Tensor, sampled: list[Instances], num_classes: int
    ) -> torch.Tensor:
        """``loss_weight`` x :func:`class_agnostic_box_loss` of (R, 4) ``deltas`` predicted for
        the sampled RoIs."""
        return self.loss_weight * class_agnostic_box_loss(
            self.box2box_transform,
            sampled,
            deltas,
            num_classes,
            loss_type=self.loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )


def box_regression_loss(
    transform: Box2BoxTransform,
    proposal_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    deltas: torch.Tensor,
    foreground: torch.Tensor,
    *,
    loss_type: str,
    smooth_l1_beta: float,
) -> torch.Tensor:
    """Box regression loss summed over foreground RoIs, divided by the number of RoIs R
    (Detectron2's / SeqNet's normalisation).

    Args:
        proposal_boxes, gt_boxes, deltas: (R, 4); foreground: (R,) bool.
        loss_type, smooth_l1_beta: as ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE`` and
            ``SMOOTH_L1_BETA``.
    """
    loss = _dense_box_regression_loss(
        [Boxes(proposal_boxes)],
        transform,
        [deltas[None]],
        [gt_boxes],
        foreground[None],
        box_reg_loss_type=loss_type,
        smooth_l1_beta=smooth_l1_beta,
    )
    return loss / max(proposal_boxes.shape[0], 1)


def class_agnostic_box_loss(
    transform: Box2BoxTransform,
    sampled: list[Instances],
    deltas: torch.Tensor,
    num_classes: int,
    *,
    loss_type: str,
    smooth_l1_beta: float,
) -> torch.Tensor:
    """:func:`box_regression_loss` of (R, 4) ``deltas`` predicted for the ``proposal_boxes`` of
    sampled RoIs (per image, with ``gt_classes`` and, when the image has ground truth,
    ``gt_boxes``); foreground = ``0 <= gt_classes < num_classes``."""
    gt_classes = torch.cat([s.gt_classes for s in sampled])
    foreground = (gt_classes >= 0) & (gt_classes < num_classes)
    proposal_boxes = torch.cat([s.proposal_boxes.tensor for s in sampled])
    gt_boxes = torch.cat(
        [(s.gt_boxes if s.has("gt_boxes") else s.proposal_boxes).tensor for s in sampled]
    )
    return box_regression_loss(
        transform,
        proposal_boxes,
        gt_boxes,
        deltas,
        foreground,
        loss_type=loss_type,
        smooth_l1_beta=smooth_l1_beta,
    )


def label_and_sample_boxes(
    boxes: list[Boxes],
    targets: list[Instances],
    *,
    matcher: Matcher,
    batch_size_per_image: int,
    positive_fraction: float,
    num_classes: int,
    append_gt: bool,
) -> list[Instances]:
    """Match boxes to ground truth and sample them, as ``ROIHeads.label_and_sample_proposals``
    does for proposals, with a separate matcher and sample size.

    Returns:
        per image, Instances with ``proposal_boxes``, ``gt_classes`` (``num_classes`` =
        background) and, when the image has ground truth, every ``gt_*`` field of the matched
        ground truth (``gt_boxes``, ``gt_pids`` ...).
    """
    out = []
    for boxes_i, target in zip(boxes, targets):
        if append_gt:
            boxes_i = Boxes.cat([boxes_i, target.gt_boxes])
        has_gt = len(target) > 0
        matched_idxs, matched_labels = matcher(pairwise_iou(target.gt_boxes, boxes_i))
        if has_gt:
            gt_classes = target.gt_classes[matched_idxs]
            gt_classes[matched_labels == 0] = num_classes
            gt_classes[matched_labels == -1] = -1
        else:
            gt_classes = torch.full_like(matched_idxs, num_classes)
        fg, bg = subsample_labels(gt_classes, batch_size_per_image, positive_fraction, num_classes)
        sampled = torch.cat([fg, bg])
        inst = Instances(target.image_size)
        inst.proposal_boxes = boxes_i[sampled]
        inst.gt_classes = gt_classes[sampled]
        if has_gt:
            for name, value in target.get_fields().items():
                if name.startswith("gt_") and not inst.has(name):
                    inst.set(name, value[matched_idxs[sampled]])
        out.append(inst)
    return out


def proposal_person_ids(proposals: list[Instances], num_classes: int) -> torch.Tensor:
    """Person id of every sampled proposal, concatenated over images.

    Args:
        proposals: per image, sampled proposals with ``gt_classes`` and (when the image has
            ground truth) ``gt_pids`` of their matched gt box, as set by
            ``ROIHeads.label_and_sample_proposals``.
        num_classes: the background class index.

    Returns:
        (R,) int64: the matched gt's person id for foreground proposals (>= 0 labelled,
        ``UNLABELED_PID`` unlabelled), ``BACKGROUND_PID`` for background ones.
    """
    out = []
    for p in proposals:
        background = torch.full_like(p.gt_classes, BACKGROUND_PID)
        if p.has("gt_pids"):
            out.append(torch.where(p.gt_classes < num_classes, p.gt_pids, background))
        else:
            out.append(background)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
