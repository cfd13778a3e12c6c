"""RoI heads of the HOIM baseline of IIDFC (Hou et al.; HOIM: Chen et al., AAAI 2020).

Per RoI, as the OIM baseline (:class:`OIMROIHeads`): RoIAlign (14x14) on the stride-16 map ->
last backbone stage (IIDFC: Res2Net-50 layer4) -> global average pooling -> a C-d vector
feeding

* a class-agnostic box regressor (Linear(C, 4), Smooth-L1 on foreground RoIs), and
* the embedding head (Linear + BN -> D, L2-normalised).

There is no softmax classifier: person vs background is the first level of the HOIM loss
(:class:`~person_search.modeling.losses.hoim.HOIMLoss`), computed from the embedding against
the memory (LUT, queue, background buffer); at inference a box's score is its p_f.
IIDFC's additions (IRR CIoU regression, FC loss, PAM) are not part of this baseline.
"""

from __future__ import annotations

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import ImageList, Instances

from ..losses.hoim import HOIMLoss
from .forced_detections import append_forced, finish_forced
from .oim_roi_heads import OIMROIHeads, proposal_person_ids, resolve_num_person_ids
from .seqnet_roi_heads import BoxRegressor, box_regression_loss

__all__ = ["HOIMROIHeads"]


@ROI_HEADS_REGISTRY.register()
class HOIMROIHeads(OIMROIHeads):
    """OIM RoI heads whose classifier is the HOIM loss' first level (``reid_loss``:
    :class:`HOIMLoss`; ``box_predictor``: :class:`BoxRegressor`)."""

    @configurable
    def __init__(
        self,
        *,
        box2box_transform: Box2BoxTransform,
        box_reg_loss_type: str,
        smooth_l1_beta: float,
        box_reg_loss_weight: float,
        test_score_thresh: float,
        test_nms_thresh: float,
        test_topk: int,
        **kwargs,
    ):
        """
        Args:
            box2box_transform: box delta encoding (weights ``ROI_BOX_HEAD.BBOX_REG_WEIGHTS``).
            box_reg_loss_type, smooth_l1_beta, box_reg_loss_weight: box regression loss.
            test_score_thresh, test_nms_thresh, test_topk: inference filtering on p_f.
            kwargs: :class:`OIMROIHeads` arguments (``reid_loss`` must be a HOIMLoss).
        """
        super().__init__(**kwargs)
        if not isinstance(self.reid_loss, HOIMLoss):
            raise TypeError("HOIMROIHeads needs a HOIMLoss as reid_loss")
        self.box2box_transform = box2box_transform
        self.box_reg_loss_type = box_reg_loss_type
        self.smooth_l1_beta = smooth_l1_beta
        self.box_reg_loss_weight = box_reg_loss_weight
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk = test_topk

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        box_head = cfg.MODEL.ROI_BOX_HEAD
        ret.update(
            box_predictor=BoxRegressor(ret["res5"].out_channels, bn_neck=False),
            reid_loss=HOIMLoss(cfg, num_person_ids=resolve_num_person_ids(cfg)),
            box2box_transform=Box2BoxTransform(weights=box_head.BBOX_REG_WEIGHTS),
            box_reg_loss_type=box_head.BBOX_REG_LOSS_TYPE,
            smooth_l1_beta=box_head.SMOOTH_L1_BETA,
            box_reg_loss_weight=box_head.BBOX_REG_LOSS_WEIGHT,
            test_score_thresh=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            test_nms_thresh=cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            test_topk=cfg.TEST.DETECTIONS_PER_IMAGE,
        )
        return ret

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
        *,
        forced_detections: list[Instances] | None = None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor]]:
        """
        Training: ``([], {"loss_box_reg", "loss_hoim_cls", "loss_hoim_reid"})``.
        Inference: per image ``Instances(pred_boxes, scores (p_f), pred_classes,
        embeddings (K, D))`` in the resized image coordinates, and ``{}``;
        ``forced_detections`` enter the NMS on p_f as score-1 detections
        (:mod:`.forced_detections`).
        """
        del images
        if self.training:
            if targets is None:
                raise ValueError("HOIMROIHeads needs targets in training")
            if forced_detections is not None:
                raise ValueError("forced_detections are an inference input")
            proposals = self.label_and_sample_proposals(proposals, targets)
        boxes = [p.proposal_boxes for p in proposals]
        pooled = self.pooled_features(features, boxes)
        deltas = self.box_predictor(pooled)
        embeddings = self.embedding_head(pooled)
        if self.training:
            return [], self._losses(proposals, deltas, embeddings)
        return self._inference(proposals, deltas, embeddings, forced_detections), {}

    def _losses(
        self, proposals: list[Instances], deltas: torch.Tensor, embeddings: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        gt_classes = torch.cat([p.gt_classes for p in proposals])
        foreground = (gt_classes >= 0) & (gt_classes < self.num_classes)
        proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
        gt_boxes = torch.cat(
            [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals]
        )
        loss_box_reg = box_regression_loss(
            self.box2box_transform,
            proposal_boxes,
            gt_boxes,
            deltas,
            foreground,
            loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )
        pids = proposal_person_ids(proposals, self.num_classes).to(embeddings.device)
        losses = {"loss_box_reg": self.box_reg_loss_weight * loss_box_reg}
        losses.update(self.reid_loss(embeddings, pids))
        return losses

    def _inference(
        self,
        proposals: list[Instances],
        deltas: torch.Tensor,
        embeddings: torch.Tensor,
        forced: list[Instances] | None = None,
    ) -> list[Instances]:
        counts = [len(p) for p in proposals]
        proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
        boxes = self.box2box_transform.apply_deltas(deltas, proposal_boxes).split(counts)
        p_f = self.reid_loss.person_scores(embeddings)
        scores = torch.stack([p_f, 1.0 - p_f], dim=1).split(counts)  # (person, background)
        if forced is not None:
            extended = [append_forced(b, s, f) for b, s, f in zip(boxes, scores, forced)]
            boxes, scores = [b for b, _ in extended], [s for _, s in extended]
        instances, kept = fast_rcnn_inference(
            list(boxes),
            list(scores),
            [p.image_size for p in proposals],
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk,
        )
        for i, (inst, emb, keep) in enumerate(zip(instances, embeddings.split(counts), kept)):
            if forced is None:
                inst.embeddings = emb[keep]
            else:
                finish_forced(inst, keep, counts[i], forced[i], lambda rows, emb=emb: emb[rows])
        return instances
