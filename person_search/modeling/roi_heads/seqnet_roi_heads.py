"""SeqNet RoI heads (Li & Miao, "Sequential End-to-end Network for Efficient Person Search",
AAAI 2021); with ConvNeXt trunk and head stage they are SeqNeXt's (Jaffe et al., 2023).

Two RCNN heads run in sequence on the stride-16 feature map, each with its own copy of the
last backbone stage (ResNet res5 / ConvNeXt stage 4):

1. First head (a Faster R-CNN head, inherited from :class:`OIMROIHeads`): RoIAlign of the RPN
   proposals -> ``res5`` -> pooled vector -> person/background softmax + box regression
   (Detectron2's ``FastRCNNOutputLayers``; sampling with ``MODEL.ROI_HEADS``).
2. Second head on the first head's *refined* boxes (detached): RoIAlign -> ``reid_res5`` ->
   pooled res4 and res5 vectors -> Norm-Aware Embedding (embedding direction = re-id feature,
   its norm = person logit, trained with BCE) + class-agnostic box regression; the OIM loss
   is applied to its embeddings (sampling with ``MODEL.SEQNET``).

Inference: first head -> score threshold / NMS / top-k (``MODEL.SEQNET.FIRST_*``;
:meth:`~SeqNetROIHeads.first_detections`) -> second
head on those boxes -> refined boxes, embeddings, scores (``FINAL_SCORE``: the first head's
score, SeqNet's "First Classification Score", or the NAE score) -> score threshold
(``ROI_HEADS.SCORE_THRESH_TEST``), NMS (``SECOND_NMS_THRESH_TEST``), top-k
(``TEST.DETECTIONS_PER_IMAGE``). Query boxes are embedded by the second head. Embeddings stay
L2-normalised: SeqNet's confidence-weighted similarity (embedding x score) is left to the
evaluator, which gets the scores.

The second head is a sequence of overridable steps (each docstring says what a project
overrides it for): :meth:`~SeqNetROIHeads.sample_second_head` (training) ->
:meth:`~SeqNetROIHeads.second_roi_features` -> :meth:`~SeqNetROIHeads.transform_roi_features`
(identity; MGOFE's fusion) -> :meth:`~SeqNetROIHeads.embed` ->
:meth:`~SeqNetROIHeads.second_head_losses` (training).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, batched_nms
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import Boxes, Instances
from torch import nn

from .box_utils import (
    BOX_DIM,
    POOLINGS,
    BoxRegressor,
    label_and_sample_boxes,
    pool_roi_maps,
    proposal_person_ids,
)
from .forced_detections import append_forced, finish_forced
from .norm_aware_embedding import NormAwareEmbedding
from .oim_roi_heads import Extra, FeatureMaps, OIMROIHeads, PerImage

__all__ = ["SeqNetROIHeads"]


@ROI_HEADS_REGISTRY.register()
class SeqNetROIHeads(OIMROIHeads):
    """First Faster R-CNN head (inherited) + second head with Norm-Aware Embedding and OIM.

    ``embedding_head`` is a :class:`NormAwareEmbedding` taking the pooled res4 and res5
    vectors of the second head. No mask branch (``MODEL.MASK_ON`` must be False).
    """

    @configurable
    def __init__(
        self,
        *,
        reid_res5: nn.Module,
        box_regressor_2nd: nn.Module,
        matcher_2nd: Matcher,
        batch_size_per_image_2nd: int,
        positive_fraction_2nd: float,
        pooling: str,
        first_score_thresh: float,
        first_nms_thresh: float,
        first_topk: int,
        second_nms_thresh: float,
        final_score: str,
        test_score_thresh: float,
        test_topk: int,
        loss_weight_cls_2nd: float = 1.0,
        **kwargs,
    ):
        """
        Args:
            reid_res5: the second head's copy of the last backbone stage.
            box_regressor_2nd: (M, C5) -> (M, 4) class-agnostic deltas, and their loss (a
                :class:`~.box_utils.BoxRegressor`).
            matcher_2nd, batch_size_per_image_2nd, positive_fraction_2nd: sampling of the
                refined boxes for the second head.
            pooling: ``"max"`` or ``"avg"`` global pooling of RoI maps.
            first_score_thresh, first_nms_thresh, first_topk: test-time filtering of the first
                head's detections before the second head.
            second_nms_thresh: test-time NMS IoU on the refined boxes.
            final_score: ``"first"`` or ``"second"``, see module doc.
            test_score_thresh, test_topk: final score threshold and boxes per image.
            loss_weight_cls_2nd: weight of the second head's person classification loss.
            kwargs: :class:`OIMROIHeads` arguments (``embedding_head`` must be an NAE, no
                ``mask_head``).
        """
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"MODEL.SEQNET.POOLING={pooling!r} is not one of {POOLINGS}")
        if final_score not in ("first", "second"):
            raise ValueError(f"MODEL.SEQNET.FINAL_SCORE={final_score!r}: 'first' or 'second'")
        if not isinstance(self.embedding_head, NormAwareEmbedding):
            raise TypeError("SeqNetROIHeads needs a NormAwareEmbedding as embedding_head")
        if self.mask_on:
            raise ValueError("SeqNetROIHeads has no mask branch: MODEL.MASK_ON must be False")
        self.reid_res5 = reid_res5
        self.box_regressor_2nd = box_regressor_2nd
        self.matcher_2nd = matcher_2nd
        self.batch_size_per_image_2nd = batch_size_per_image_2nd
        self.positive_fraction_2nd = positive_fraction_2nd
        self.pooling = pooling
        self.first_score_thresh = first_score_thresh
        self.first_nms_thresh = first_nms_thresh
        self.first_topk = first_topk
        self.second_nms_thresh = second_nms_thresh
        self.final_score = final_score
        self.test_score_thresh = test_score_thresh
        self.test_topk = test_topk
        self.loss_weight_cls_2nd = loss_weight_cls_2nd

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        s = cfg.MODEL.SEQNET
        res5 = ret["res5"]
        ret.update(
            # SeqNet starts both heads from the same (ImageNet) weights.
            reid_res5=copy.deepcopy(res5),
            box_regressor_2nd=BoxRegressor(
                cfg, res5.out_channels, bn_neck=s.BN_NECK, loss_weight=s.LOSS_WEIGHT_BOX_REG
            ),
            # Training: sampling of the refined boxes, the person classification loss.
            matcher_2nd=Matcher(s.IOU_THRESHOLDS, s.IOU_LABELS, allow_low_quality_matches=False),
            batch_size_per_image_2nd=s.BATCH_SIZE_PER_IMAGE,
            positive_fraction_2nd=s.POSITIVE_FRACTION,
            loss_weight_cls_2nd=s.LOSS_WEIGHT_BOX_CLS,
            pooling=s.POOLING,
            # Test: the first head's detections sent to the second head.
            first_score_thresh=s.FIRST_SCORE_THRESH_TEST,
            first_nms_thresh=s.FIRST_NMS_THRESH_TEST,
            first_topk=s.FIRST_DETECTIONS_PER_IMAGE,
            # Test: the final detections.
            second_nms_thresh=s.SECOND_NMS_THRESH_TEST,
            final_score=s.FINAL_SCORE,
            test_score_thresh=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            test_topk=cfg.TEST.DETECTIONS_PER_IMAGE,
        )
        return ret

    @classmethod
    def build_embedding_head(cls, cfg, roi_channels: int, head_channels: int) -> nn.Module:
        """Norm-Aware Embedding of the second head's pooled res4 and res5 vectors."""
        return NormAwareEmbedding(cfg, in_channels=[roi_channels, head_channels])

    def pool(self, roi_features: torch.Tensor) -> torch.Tensor:
        """(M, C, h, w) -> (M, C) by ``MODEL.SEQNET.POOLING`` (SeqNet: max)."""
        return pool_roi_maps(roi_features, self.pooling)

    # ---------------------------------------------------------------------- first head
    def first_head(
        self, features: FeatureMaps, proposals: list[Instances]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], list[torch.Tensor]]:
        """First-head predictions (scores (R, 2), deltas (R, 4)) and per-image refined boxes
        (R_i, 4). No feature transform: the first head only detects."""
        pooled = self.pool(self.roi_features(features, [p.proposal_boxes for p in proposals]))
        predictions = self.box_predictor(pooled)
        return predictions, list(self.box_predictor.predict_boxes(predictions, proposals))

    def first_detections(self, features: FeatureMaps, proposals: PerImage) -> PerImage:
        """Inference: per image the first head's detections the second head embeds
        (``Instances(pred_boxes, scores, pred_classes)``, resized image coordinates): refined
        proposals after the score threshold, NMS and top-k of ``MODEL.SEQNET.FIRST_*``.
        MGOFE calls it to know which boxes to occlude in its test-time copies."""
        predictions, refined = self.first_head(features, proposals)
        probs = self.box_predictor.predict_probs(predictions, proposals)
        first, _ = fast_rcnn_inference(
            refined,
            probs,
            [p.image_size for p in proposals],
            self.first_score_thresh,
            self.first_nms_thresh,
            self.first_topk,
        )
        return first

    # --------------------------------------------------------------------- second head
    def sample_second_head(
        self, refined: list[torch.Tensor], proposals: list[Instances], targets: list[Instances]
    ) -> list[Instances]:
        """Training: the first head's refined boxes (detached, clipped to the image) matched to
        ``targets`` and sampled with ``MODEL.SEQNET``'s matcher and sample size (see
        :func:`~.box_utils.label_and_sample_boxes`). Override for another sampling."""
        boxes = []
        for boxes_i, p in zip(refined, proposals):
            b = Boxes(boxes_i.detach()[:, :BOX_DIM])  # one (person) class
            b.clip(p.image_size)
            boxes.append(b)
        return label_and_sample_boxes(
            boxes,
            targets,
            matcher=self.matcher_2nd,
            batch_size_per_image=self.batch_size_per_image_2nd,
            positive_fraction=self.positive_fraction_2nd,
            num_classes=self.num_classes,
            append_gt=self.proposal_append_gt,
        )

    def second_roi_features(self, features: FeatureMaps, boxes: list[Boxes]) -> list[torch.Tensor]:
        """RoI features of the second head on B lists of boxes (M in total): ``[v4 (M, C4),
        v5 (M, C5)]``, the pooled RoIAlign map and the pooled output of ``reid_res5`` on it.
        Override to embed other RoI features."""
        x4 = self.pooler([features[f] for f in self.in_features], boxes)
        v5 = self.pool(self.reid_res5(x4))
        return [self.pool(x4), v5]

    def transform_roi_features(
        self, roi_features: Any, boxes: list[Boxes], extra_features: Extra
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """Hook between the second head's RoI features (``[v4, v5]`` of
        :meth:`second_roi_features`) and :meth:`embed`: the identity. Returns the transformed
        features (same shapes) and auxiliary training losses.

        Override for MGOFE's MGFFE (fusing the RoI features of the same boxes in the occluded
        copies, from ``extra_features``) and MGFA (the adversarial alignment loss)."""
        return super().transform_roi_features(roi_features, boxes, extra_features)

    def embed(
        self, roi_features: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[v4, v5]`` -> embeddings (M, D) L2-normalised and person logits (M,) (Norm-Aware
        Embedding), box deltas (M, 4) (regressed from v5). Override for another embedding."""
        embeddings, logits = self.embedding_head(roi_features)
        return embeddings, logits, self.box_regressor_2nd(roi_features[-1])

    def second_head(
        self,
        features: FeatureMaps,
        boxes: list[Boxes],
        extra_features: Extra | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Second head on B lists of boxes (M in total): RoI features -> transform -> embed.

        Returns:
            embeddings (M, D) L2-normalised, person logits (M,), box deltas (M, 4), and the
            auxiliary losses of :meth:`transform_roi_features`.
        """
        roi_features, aux_losses = self.transform_roi_features(
            self.second_roi_features(features, boxes), boxes, extra_features or {}
        )
        return (*self.embed(roi_features), aux_losses)

    def second_head_losses(
        self,
        sampled: list[Instances],
        embeddings: torch.Tensor,
        logits: torch.Tensor,
        deltas: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Losses of the second head on its sampled boxes: ``loss_cls_2nd`` (NAE person BCE),
        ``loss_box_reg_2nd`` (class-agnostic regression of person boxes) and the re-id loss's
        (on all sampled boxes with their person ids). Override to add or reweight losses."""
        gt_classes = torch.cat([s.gt_classes for s in sampled])
        is_person = (gt_classes >= 0) & (gt_classes < self.num_classes)
        losses = {
            "loss_cls_2nd": self.loss_weight_cls_2nd
            * NormAwareEmbedding.classification_loss(logits, is_person),
            "loss_box_reg_2nd": self.box_regressor_2nd.losses(deltas, sampled, self.num_classes),
        }
        pids = proposal_person_ids(sampled, self.num_classes).to(embeddings.device)
        losses.update(self.reid_loss(embeddings, pids))
        return losses

    # ------------------------------------------------------------------------ forward
    def box_embeddings(
        self, features: FeatureMaps, boxes: list[Boxes], extra_features: Extra
    ) -> torch.Tensor:
        """Second-head embeddings (M, D) of given boxes (the query path)."""
        return self.second_head(features, boxes, extra_features)[0]

    def forward_train(
        self, features: FeatureMaps, proposals: PerImage, targets: PerImage, extra_features: Extra
    ) -> dict[str, torch.Tensor]:
        """``loss_cls``, ``loss_box_reg`` (first head), ``loss_cls_2nd``, ``loss_box_reg_2nd``
        (second head), the re-id loss's and those of :meth:`transform_roi_features`."""
        proposals = self.label_and_sample_proposals(proposals, targets)
        predictions, refined = self.first_head(features, proposals)
        losses = self.box_predictor.losses(predictions, proposals)
        sampled = self.sample_second_head(refined, proposals, targets)
        boxes = [s.proposal_boxes for s in sampled]
        embeddings, logits, deltas, aux_losses = self.second_head(features, boxes, extra_features)
        losses.update(self.second_head_losses(sampled, embeddings, logits, deltas))
        losses.update(aux_losses)
        return losses

    def forward_inference(
        self,
        features: FeatureMaps,
        proposals: PerImage,
        extra_features: Extra,
        forced_detections: PerImage | None = None,
    ) -> PerImage:
        """Per image ``Instances(pred_boxes, scores, pred_classes, embeddings (K, D))`` in the
        resized image coordinates (see the module docstring). ``forced_detections`` (the CBGM
        query context) enter the NMS on the refined boxes as score-1 detections, after the
        score threshold, where SeqNet adds the query box (:mod:`.forced_detections`)."""
        first = self.first_detections(features, proposals)
        image_sizes = [p.image_size for p in proposals]
        boxes = [f.pred_boxes for f in first]
        embeddings, logits, deltas, _ = self.second_head(features, boxes, extra_features)
        transform = self.box_predictor.box2box_transform
        counts = [len(b) for b in boxes]
        forced = forced_detections if forced_detections is not None else [None] * len(first)
        results = []
        for f, emb, logit, delta, size, forced_i in zip(
            first,
            embeddings.split(counts),
            logits.split(counts),
            deltas.split(counts),
            image_sizes,
            forced,
        ):
            refined_boxes = Boxes(transform.apply_deltas(delta, f.pred_boxes.tensor))
            refined_boxes.clip(size)
            scores = f.scores if self.final_score == "first" else torch.sigmoid(logit)
            keep = torch.nonzero(scores > self.test_score_thresh).squeeze(1)
            candidates, candidate_scores = refined_boxes.tensor[keep], scores[keep]
            if forced_i is not None:
                candidates, candidate_scores = append_forced(candidates, candidate_scores, forced_i)
            nms_keep = batched_nms(
                candidates,
                candidate_scores,
                torch.zeros_like(candidate_scores, dtype=torch.long),
                self.second_nms_thresh,
            )
            nms_keep = nms_keep[: self.test_topk] if self.test_topk >= 0 else nms_keep
            result = Instances(size)
            result.pred_boxes = Boxes(candidates[nms_keep])
            result.scores = candidate_scores[nms_keep]
            result.pred_classes = torch.zeros_like(nms_keep)
            if forced_i is None:
                result.embeddings = emb[keep[nms_keep]]
            else:
                finish_forced(result, nms_keep, len(keep), forced_i, lambda r, e=emb[keep]: e[r])
            results.append(result)
        return results
