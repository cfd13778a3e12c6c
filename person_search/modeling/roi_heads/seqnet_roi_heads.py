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

Inference: first head -> score threshold / NMS / top-k (``MODEL.SEQNET.FIRST_*``) -> second
head on those boxes -> refined boxes, embeddings, scores (``FINAL_SCORE``: the first head's
score, SeqNet's "First Classification Score", or the NAE score) -> score threshold
(``ROI_HEADS.SCORE_THRESH_TEST``), NMS (``SECOND_NMS_THRESH_TEST``), top-k
(``TEST.DETECTIONS_PER_IMAGE``). Query boxes are embedded by the second head. Embeddings stay
L2-normalised: SeqNet's confidence-weighted similarity (embedding x score) is left to the
evaluator, which gets the scores.
"""

from __future__ import annotations

import copy

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, batched_nms
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.box_regression import Box2BoxTransform, _dense_box_regression_loss
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from torch import nn

from .forced_detections import append_forced, finish_forced
from .norm_aware_embedding import NormAwareEmbedding
from .oim_roi_heads import OIMROIHeads

__all__ = ["BoxRegressor", "SeqNetROIHeads", "box_regression_loss", "pool_roi_maps"]

# Box dimension (x1, y1, x2, y2).
_BOX_DIM = 4
# Std of the normal init of box regression weights (SeqNet / Detectron2: 0.001-0.01).
_REG_INIT_STD = 0.01
_POOLINGS = ("max", "avg")


def pool_roi_maps(x: torch.Tensor, how: str) -> torch.Tensor:
    """(M, C, h, w) RoI maps -> (M, C) by global ``"max"`` or ``"avg"`` pooling."""
    if how == "max":
        return x.amax(dim=(2, 3))
    if how == "avg":
        return x.mean(dim=(2, 3))
    raise ValueError(f"MODEL.SEQNET.POOLING={how!r} is not one of {_POOLINGS}")


class BoxRegressor(nn.Module):
    """Class-agnostic box deltas of pooled RoI vectors: Linear(C, 4) (+ BatchNorm1d "BN neck").

    forward: (M, C) -> (M, 4) deltas for ``Box2BoxTransform``.
    """

    def __init__(self, in_channels: int, bn_neck: bool):
        super().__init__()
        self.linear = nn.Linear(in_channels, _BOX_DIM)
        nn.init.normal_(self.linear.weight, std=_REG_INIT_STD)
        nn.init.zeros_(self.linear.bias)
        self.norm = nn.BatchNorm1d(_BOX_DIM) if bn_neck else nn.Identity()
        if bn_neck:
            nn.init.normal_(self.norm.weight, std=_REG_INIT_STD)
            nn.init.zeros_(self.norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            return x.new_zeros((0, _BOX_DIM))
        return self.norm(self.linear(x))


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


@ROI_HEADS_REGISTRY.register()
class SeqNetROIHeads(OIMROIHeads):
    """First Faster R-CNN head (inherited) + second head with Norm-Aware Embedding and OIM.

    ``embedding_head`` is a :class:`NormAwareEmbedding` taking the pooled res4 and res5
    vectors of the second head.
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
        loss_weight_box_reg_2nd: float = 1.0,
        **kwargs,
    ):
        """
        Args:
            reid_res5: the second head's copy of the last backbone stage.
            box_regressor_2nd: (M, C5) -> (M, 4) class-agnostic deltas.
            matcher_2nd, batch_size_per_image_2nd, positive_fraction_2nd: sampling of the
                refined boxes for the second head.
            pooling: ``"max"`` or ``"avg"`` global pooling of RoI maps.
            first_score_thresh, first_nms_thresh, first_topk: test-time filtering of the first
                head's detections before the second head.
            second_nms_thresh: test-time NMS IoU on the refined boxes.
            final_score: ``"first"`` or ``"second"``, see module doc.
            test_score_thresh, test_topk: final score threshold and boxes per image.
            loss_weight_cls_2nd, loss_weight_box_reg_2nd: second-head loss weights.
            kwargs: :class:`OIMROIHeads` arguments (``embedding_head`` must be an NAE).
        """
        super().__init__(**kwargs)
        if pooling not in _POOLINGS:
            raise ValueError(f"MODEL.SEQNET.POOLING={pooling!r} is not one of {_POOLINGS}")
        if final_score not in ("first", "second"):
            raise ValueError(f"MODEL.SEQNET.FINAL_SCORE={final_score!r}: 'first' or 'second'")
        if not isinstance(self.embedding_head, NormAwareEmbedding):
            raise TypeError("SeqNetROIHeads needs a NormAwareEmbedding as embedding_head")
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
        self.loss_weight_box_reg_2nd = loss_weight_box_reg_2nd

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        s = cfg.MODEL.SEQNET
        res5 = ret["res5"]
        in_channels = input_shape[ret["in_features"][0]].channels
        ret.update(
            # SeqNet starts both heads from the same (ImageNet) weights.
            reid_res5=copy.deepcopy(res5),
            embedding_head=NormAwareEmbedding(cfg, in_channels=[in_channels, res5.out_channels]),
            box_regressor_2nd=BoxRegressor(res5.out_channels, bn_neck=s.BN_NECK),
            matcher_2nd=Matcher(s.IOU_THRESHOLDS, s.IOU_LABELS, allow_low_quality_matches=False),
            batch_size_per_image_2nd=s.BATCH_SIZE_PER_IMAGE,
            positive_fraction_2nd=s.POSITIVE_FRACTION,
            pooling=s.POOLING,
            first_score_thresh=s.FIRST_SCORE_THRESH_TEST,
            first_nms_thresh=s.FIRST_NMS_THRESH_TEST,
            first_topk=s.FIRST_DETECTIONS_PER_IMAGE,
            second_nms_thresh=s.SECOND_NMS_THRESH_TEST,
            final_score=s.FINAL_SCORE,
            test_score_thresh=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            test_topk=cfg.TEST.DETECTIONS_PER_IMAGE,
            loss_weight_cls_2nd=s.LOSS_WEIGHT_BOX_CLS,
            loss_weight_box_reg_2nd=s.LOSS_WEIGHT_BOX_REG,
        )
        return ret

    def pooled_features(
        self, features: dict[str, torch.Tensor], boxes: list[Boxes]
    ) -> torch.Tensor:
        """First head: RoIAlign + ``res5`` + pooling -> (M, C5)."""
        x = self.pooler([features[f] for f in self.in_features], boxes)
        return pool_roi_maps(self.res5(x), self.pooling)

    def second_head(
        self, features: dict[str, torch.Tensor], boxes: list[Boxes]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Second head on B lists of boxes (M in total).

        Returns:
            embeddings (M, D) L2-normalised, person logits (M,), box deltas (M, 4).
        """
        x4 = self.pooler([features[f] for f in self.in_features], boxes)
        v5 = pool_roi_maps(self.reid_res5(x4), self.pooling)
        embeddings, logits = self.embedding_head([pool_roi_maps(x4, self.pooling), v5])
        return embeddings, logits, self.box_regressor_2nd(v5)

    def embed_boxes(
        self, features: dict[str, torch.Tensor], boxes: list[Boxes]
    ) -> list[torch.Tensor]:
        """Second-head embeddings of given boxes: per image an (n_i, D) float32 tensor."""
        embeddings, _, _ = self.second_head(features, boxes)
        return list(embeddings.split([len(b) for b in boxes]))

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
        Training: ``([], losses)``: ``loss_cls``, ``loss_box_reg`` (first head),
        ``loss_cls_2nd``, ``loss_box_reg_2nd`` (second head), ``loss_oim``.
        Inference: per image ``Instances(pred_boxes, scores, pred_classes, embeddings (K, D))``
        in the resized image coordinates, and ``{}``; ``forced_detections`` enter the NMS on
        the refined boxes as score-1 detections, after the score threshold, as in SeqNet
        (:mod:`.forced_detections`).
        """
        del images
        if self.training:
            if targets is None:
                raise ValueError("SeqNetROIHeads needs targets in training")
            if forced_detections is not None:
                raise ValueError("forced_detections are an inference input")
            return [], self._forward_train(features, proposals, targets)
        return self._forward_test(features, proposals, forced_detections), {}

    def _first_head(
        self, features: dict[str, torch.Tensor], proposals: list[Instances]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], list[torch.Tensor]]:
        """First-head predictions (scores (R, 2), deltas (R, 4)) and per-image refined boxes."""
        pooled = self.pooled_features(features, [p.proposal_boxes for p in proposals])
        predictions = self.box_predictor(pooled)
        return predictions, list(self.box_predictor.predict_boxes(predictions, proposals))

    def _forward_train(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        targets: list[Instances],
    ) -> dict[str, torch.Tensor]:
        proposals = self.label_and_sample_proposals(proposals, targets)
        predictions, refined = self._first_head(features, proposals)
        losses = self.box_predictor.losses(predictions, proposals)

        boxes = []
        for boxes_i, p in zip(refined, proposals):
            b = Boxes(boxes_i.detach()[:, :_BOX_DIM])  # one (person) class
            b.clip(p.image_size)
            boxes.append(b)
        sampled = label_and_sample_boxes(
            boxes,
            targets,
            matcher=self.matcher_2nd,
            batch_size_per_image=self.batch_size_per_image_2nd,
            positive_fraction=self.positive_fraction_2nd,
            num_classes=self.num_classes,
            append_gt=self.proposal_append_gt,
        )
        embeddings, logits, deltas = self.second_head(features, [s.proposal_boxes for s in sampled])
        gt_classes = torch.cat([s.gt_classes for s in sampled])
        is_person = (gt_classes >= 0) & (gt_classes < self.num_classes)
        proposal_boxes = torch.cat([s.proposal_boxes.tensor for s in sampled])
        gt_boxes = torch.cat(
            [(s.gt_boxes if s.has("gt_boxes") else s.proposal_boxes).tensor for s in sampled]
        )
        losses["loss_cls_2nd"] = self.loss_weight_cls_2nd * (
            NormAwareEmbedding.classification_loss(logits, is_person)
        )
        losses["loss_box_reg_2nd"] = self.loss_weight_box_reg_2nd * box_regression_loss(
            self.box_predictor.box2box_transform,
            proposal_boxes,
            gt_boxes,
            deltas,
            is_person,
            loss_type=self.box_predictor.box_reg_loss_type,
            smooth_l1_beta=self.box_predictor.smooth_l1_beta,
        )
        losses.update(self.reid_losses(embeddings, sampled))
        return losses

    def _forward_test(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        forced: list[Instances] | None = None,
    ) -> list[Instances]:
        predictions, refined = self._first_head(features, proposals)
        probs = self.box_predictor.predict_probs(predictions, proposals)
        image_sizes = [p.image_size for p in proposals]
        first, _ = fast_rcnn_inference(
            refined,
            probs,
            image_sizes,
            self.first_score_thresh,
            self.first_nms_thresh,
            self.first_topk,
        )
        boxes = [f.pred_boxes for f in first]
        embeddings, logits, deltas = self.second_head(features, boxes)
        transform = self.box_predictor.box2box_transform
        counts = [len(b) for b in boxes]
        results = []
        for f, emb, logit, delta, size, forced_i in zip(
            first,
            embeddings.split(counts),
            logits.split(counts),
            deltas.split(counts),
            image_sizes,
            forced if forced is not None else [None] * len(first),
        ):
            refined_boxes = Boxes(transform.apply_deltas(delta, f.pred_boxes.tensor))
            refined_boxes.clip(size)
            scores = f.scores if self.final_score == "first" else torch.sigmoid(logit)
            keep = torch.nonzero(scores > self.test_score_thresh).squeeze(1)
            boxes, kept_scores = refined_boxes.tensor[keep], scores[keep]
            if forced_i is not None:
                boxes, kept_scores = append_forced(boxes, kept_scores, forced_i)
            nms_keep = batched_nms(
                boxes,
                kept_scores,
                torch.zeros_like(kept_scores, dtype=torch.long),
                self.second_nms_thresh,
            )
            nms_keep = nms_keep[: self.test_topk] if self.test_topk >= 0 else nms_keep
            result = Instances(size)
            result.pred_boxes = Boxes(boxes[nms_keep])
            result.scores = kept_scores[nms_keep]
            result.pred_classes = torch.zeros_like(nms_keep)
            if forced_i is None:
                result.embeddings = emb[keep[nms_keep]]
            else:
                finish_forced(result, nms_keep, len(keep), forced_i, lambda r, e=emb[keep]: e[r])
            results.append(result)
        return results
