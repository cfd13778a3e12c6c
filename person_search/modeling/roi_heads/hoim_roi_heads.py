"""RoI heads of the HOIM baseline of IIDFC (Hou et al.; HOIM: Chen et al., AAAI 2020).

Per RoI, as the OIM baseline (:class:`OIMROIHeads`): RoIAlign (14x14) on the stride-16 map ->
last backbone stage (IIDFC: Res2Net-50 layer4) -> global average pooling -> a C-d vector
feeding

* a class-agnostic box regressor (Linear(C, 4), Smooth-L1 on foreground RoIs), and
* the embedding head (Linear + BN -> D, L2-normalised).

There is no softmax classifier: person vs background is the first level of the HOIM loss
(:class:`~person_search.modeling.losses.hoim.HOIMLoss`), computed from the embedding against
the memory (LUT, queue, background buffer); at inference a box's score is its p_f.
IIDFC's additions (IRR CIoU regression, FC loss, PAM) are not part of this baseline; they are
a box step override, a registered re-id loss and a feature-transform override.
"""

from __future__ import annotations

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import Instances
from torch import nn

from .box_utils import BoxRegressor
from .oim_roi_heads import OIMROIHeads

__all__ = ["HOIMROIHeads"]


@ROI_HEADS_REGISTRY.register()
class HOIMROIHeads(OIMROIHeads):
    """OIM RoI heads whose classifier is the HOIM loss' first level (``reid_loss``: a loss with
    ``person_scores``, ``MODEL.PERSON_SEARCH.REID_LOSS "HOIMLoss"``; ``box_predictor``:
    :class:`~.box_utils.BoxRegressor`). Only the box step differs from :class:`OIMROIHeads`."""

    @configurable
    def __init__(
        self, *, test_score_thresh: float, test_nms_thresh: float, test_topk: int, **kwargs
    ):
        """
        Args:
            test_score_thresh, test_nms_thresh, test_topk: inference filtering on p_f.
            kwargs: :class:`OIMROIHeads` arguments (``box_predictor`` a
                :class:`~.box_utils.BoxRegressor`, ``reid_loss`` with ``person_scores``).
        """
        super().__init__(**kwargs)
        if not callable(getattr(self.reid_loss, "person_scores", None)):
            raise TypeError(
                f"HOIMROIHeads scores detections with the re-id loss' person_scores(), which "
                f"{type(self.reid_loss).__name__} lacks: set MODEL.PERSON_SEARCH.REID_LOSS to "
                '"HOIMLoss" (or a loss deriving from it)'
            )
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk = test_topk

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        ret.update(
            test_score_thresh=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            test_nms_thresh=cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            test_topk=cfg.TEST.DETECTIONS_PER_IMAGE,
        )
        return ret

    @classmethod
    def build_box_predictor(cls, cfg, in_channels: int) -> nn.Module:
        """Class-agnostic box regressor, no classifier (the HOIM loss is the classifier); loss
        weight ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT``."""
        return BoxRegressor(
            cfg, in_channels, bn_neck=False, loss_weight=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT
        )

    def forward_box(
        self, pooled: torch.Tensor, proposals: list[Instances]
    ) -> dict[str, torch.Tensor] | tuple[list[Instances], list[torch.Tensor]]:
        """Training: ``{"loss_box_reg"}`` (box regression of foreground proposals); inference:
        detections scored by the person probability p_f of their embedding against the HOIM
        memory, and the kept proposal indices (see :meth:`OIMROIHeads.forward_box`).

        Override for another box loss (IIDFC's IRR: SmoothL1 + CIoU)."""
        if self.training:
            deltas = self.box_predictor(pooled)
            return {"loss_box_reg": self.box_predictor.losses(deltas, proposals, self.num_classes)}
        return super().forward_box(pooled, proposals)

    def box_candidates(
        self, pooled: torch.Tensor, proposals: list[Instances]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Regressed boxes (R_i, 4) and (person p_f, background 1 - p_f) scores (R_i, 2), p_f
        of each proposal's embedding against the HOIM memory."""
        counts = [len(p) for p in proposals]
        proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
        transform = self.box_predictor.box2box_transform
        boxes = transform.apply_deltas(self.box_predictor(pooled), proposal_boxes).split(counts)
        p_f = self.reid_loss.person_scores(self.embedding_head(pooled))
        scores = torch.stack([p_f, 1.0 - p_f], dim=1).split(counts)  # (person, background)
        return list(boxes), list(scores)

    def final_nms(
        self, boxes: list[torch.Tensor], scores: list[torch.Tensor], proposals: list[Instances]
    ) -> tuple[list[Instances], list[torch.Tensor]]:
        """Score threshold on p_f -> NMS -> top-k (same keys as OIM's)."""
        return fast_rcnn_inference(
            boxes,
            scores,
            [p.image_size for p in proposals],
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk,
        )
