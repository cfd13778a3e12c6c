"""RoI heads of the OIM person-search baseline (Xiao et al., CVPR 2017), on Detectron2's C4
``Res5ROIHeads``.

Per RoI: RoIAlign on the res4 map (14x14) -> the last backbone stage (res5, stride 2) ->
global average pooling -> a C-d vector (2048 for ResNet-50) feeding

* the box predictor (person vs background softmax + class-specific box regression,
  Detectron2's ``FastRCNNOutputLayers``), and
* the embedding head (Linear + BN -> D = 256, L2-normalised), trained with the re-id loss
  (``MODEL.PERSON_SEARCH.REID_LOSS``, OIM) on the sampled proposals: a proposal matched
  (IoU >= ``MODEL.ROI_HEADS.IOU_THRESHOLDS``, 0.5) to a labelled person carries its identity,
  one matched to an unlabelled person feeds the queue;
* with ``MODEL.MASK_ON``, Detectron2's mask head (``MODEL.ROI_MASK_HEAD``) on the res5 RoI maps
  of foreground proposals matched to persons that have a mask (``gt_has_mask``).

At inference the embedding of a detection is the one of the proposal it was regressed from
(OIM's single pass; no second RoIAlign on the refined box).

``forward`` calls :meth:`~OIMROIHeads.forward_train` or :meth:`~OIMROIHeads.forward_inference`,
each a sequence of overridable steps (each docstring says what a project overrides it for):
:meth:`~OIMROIHeads.roi_features` -> :meth:`~OIMROIHeads.transform_roi_features` (identity) ->
:meth:`~OIMROIHeads.pool` -> :meth:`~OIMROIHeads.forward_box`, :meth:`~OIMROIHeads.forward_reid`,
:meth:`~OIMROIHeads.forward_mask` (its training proposals:
:meth:`~OIMROIHeads.mask_training_selection`); queries go through
:meth:`~OIMROIHeads.box_embeddings`.
"""

from __future__ import annotations

from typing import Any

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference
from detectron2.modeling.roi_heads.mask_head import build_mask_head
from detectron2.modeling.roi_heads.roi_heads import Res5ROIHeads, select_foreground_proposals
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ...data.datasets import get_num_person_ids
from ...layers.pooler import build_roi_pooler
from ..backbone.head_stage import build_roi_head_stage
from ..losses.build import build_reid_loss
from .box_utils import proposal_person_ids
from .embedding_head import EmbeddingHead
from .forced_detections import append_forced, finish_forced

__all__ = ["Extra", "FeatureMaps", "OIMROIHeads", "PerImage", "resolve_num_person_ids"]

# Backbone maps by name, each (B, C, H, W).
FeatureMaps = dict[str, torch.Tensor]
# What PersonSearchRCNN.extract_features returns beside the backbone maps ({} by default).
Extra = dict[str, Any]
# One Instances per image of the batch (proposals, targets, detections).
PerImage = list[Instances]


def resolve_num_person_ids(cfg) -> int:
    """Rows of the OIM lookup table: ``MODEL.OIM.NUM_PERSON_IDS``, or when it is 0 the sum of
    the identity counts of ``DATASETS.TRAIN`` (the training loader offsets the ids of each
    dataset by the counts of those before it), from ``get_num_person_ids`` (the published
    count of a real training set, else read from the dataset, once per process)."""
    if cfg.MODEL.OIM.NUM_PERSON_IDS > 0:
        return int(cfg.MODEL.OIM.NUM_PERSON_IDS)
    names = list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError(
            "MODEL.OIM.NUM_PERSON_IDS=0 reads the identity count from DATASETS.TRAIN, which is "
            "empty: set MODEL.OIM.NUM_PERSON_IDS"
        )
    total = 0
    for name in names:
        try:
            num = get_num_person_ids(name)
        except (OSError, ValueError) as e:
            raise RuntimeError(
                f"MODEL.OIM.NUM_PERSON_IDS=0: reading the identity count of training dataset "
                f"{name!r} failed ({e}); set MODEL.OIM.NUM_PERSON_IDS explicitly"
            ) from e
        total += num
    return total


@ROI_HEADS_REGISTRY.register()
class OIMROIHeads(Res5ROIHeads):
    """Detectron2's ``Res5ROIHeads`` (RoIAlign + last backbone stage + box predictor + optional
    mask head) with an embedding head and a re-id loss.

    The person-search RoI-head interface (what ``PersonSearchRCNN`` calls):
    ``forward(images, features, proposals, targets=None, extra_features=None)`` as Detectron2's
    (inference instances carry ``embeddings`` (K, D)) and
    ``embed_boxes(features, boxes, extra_features=None) -> list[(n_i, D)]``.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: list[str],
        pooler: nn.Module,
        res5: nn.Module,
        box_predictor: nn.Module,
        embedding_head: nn.Module,
        reid_loss: nn.Module,
        mask_head: nn.Module | None = None,
        **kwargs,
    ):
        """
        Args:
            in_features: the one backbone feature map the RoIs are pooled from.
            pooler: ``forward(list[(B, C, H, W)], list[Boxes]) -> (M, C, h, w)``.
            res5: the RoI head stage, (M, C, h, w) -> (M, C', h', w').
            box_predictor: ``FastRCNNOutputLayers``-like, on (M, C') vectors.
            embedding_head: (M, C') -> (M, D) L2-normalised.
            reid_loss: a re-id loss of ``REID_LOSS_REGISTRY``: ``(embeddings (R, D), pids (R,))
                -> dict of losses`` on all sampled proposals.
            mask_head: Detectron2 mask head on the (M, C', h', w') RoI maps, or None.
            kwargs: ``ROIHeads`` arguments (sampling, matcher, num_classes).
        """
        if len(in_features) != 1:
            raise ValueError(f"{type(self).__name__} pools one feature map, got {in_features}")
        super().__init__(
            in_features=in_features,
            pooler=pooler,
            res5=res5,
            box_predictor=box_predictor,
            mask_head=mask_head,
            **kwargs,
        )
        self.embedding_head = embedding_head
        self.reid_loss = reid_loss

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super(Res5ROIHeads, cls).from_config(cfg)  # ROIHeads': sampling and matching
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        if len(in_features) != 1:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES must name one map for {cls.__name__}, got "
                f"{in_features}"
            )
        in_shape = input_shape[in_features[0]]
        ret["in_features"] = in_features
        # The compiled RoIAlign by default; MODEL.ROI_POOLER_IMPL "detectron2" for Detectron2's.
        ret["pooler"] = build_roi_pooler(
            cfg,
            cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION,
            (1.0 / in_shape.stride,),
            cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
            cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
        )
        res5 = build_roi_head_stage(cfg, ShapeSpec(channels=in_shape.channels))
        ret["res5"] = res5
        ret["box_predictor"] = cls.build_box_predictor(cfg, res5.out_channels)
        ret["embedding_head"] = cls.build_embedding_head(cfg, in_shape.channels, res5.out_channels)
        ret["reid_loss"] = build_reid_loss(cfg, num_person_ids=resolve_num_person_ids(cfg))
        if cfg.MODEL.MASK_ON:
            ret["mask_head"] = build_mask_head(cfg, ShapeSpec(channels=res5.out_channels))
        return ret

    @classmethod
    def build_box_predictor(cls, cfg, in_channels: int) -> nn.Module:
        """The box predictor on (M, ``in_channels``) pooled vectors: Detectron2's
        ``FastRCNNOutputLayers``. Heads with another box branch (HOIM) override it."""
        return FastRCNNOutputLayers(cfg, ShapeSpec(channels=in_channels, height=1, width=1))

    @classmethod
    def build_embedding_head(cls, cfg, roi_channels: int, head_channels: int) -> nn.Module:
        """The embedding head: :class:`EmbeddingHead` on the (M, ``head_channels``) pooled
        head-stage vectors (``roi_channels``: channels of the pooled backbone map, unused
        here). SeqNet overrides it (Norm-Aware Embedding of both)."""
        return EmbeddingHead(cfg, in_channels=head_channels)

    # ------------------------------------------------------------------------------- steps
    def roi_features(self, features: FeatureMaps, boxes: list[Boxes]) -> torch.Tensor:
        """RoIAlign on the backbone map + the head stage (``res5``).

        Args:
            features: backbone maps, ``features[in_features[0]]`` is (B, C, H, W).
            boxes: B Boxes in the coordinates of the (resized) input images.

        Returns:
            (M, C', h', w') RoI maps, M = total number of boxes, in image order.

        Override to extract RoI features differently (another pooler or stage).
        """
        return self._shared_roi_transform([features[f] for f in self.in_features], boxes)

    def transform_roi_features(
        self, roi_features: Any, boxes: list[Boxes], extra_features: Extra
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """Hook between the RoI features and everything that reads them (here the box, re-id
        and mask branches): the identity.

        Args:
            roi_features: what :meth:`roi_features` returned ((M, C', h', w') RoI maps).
            boxes: the B lists of boxes they were pooled from.
            extra_features: what the meta architecture's ``extract_features`` returned beside
                the backbone maps ({} by default).

        Returns:
            the features, transformed (same type and shape), and a dict of auxiliary losses
            (added to the training losses; ignored at inference).

        Override for a feature transform: IIDFC's pedestrian attention (PAM) on the head-stage
        maps, MGOFE's fusion with the RoI features of occluded copies (from
        ``extra_features``) and its adversarial alignment loss.
        """
        del boxes, extra_features
        return roi_features, {}

    def pool(self, roi_features: torch.Tensor) -> torch.Tensor:
        """(M, C', h', w') RoI maps -> (M, C') by global average pooling (OIM). Override for
        another pooling."""
        return roi_features.mean(dim=(2, 3))

    def forward_box(
        self, pooled: torch.Tensor, proposals: list[Instances]
    ) -> dict[str, torch.Tensor] | tuple[list[Instances], list[torch.Tensor]]:
        """Box branch on (R, C') pooled vectors of the proposals.

        Returns:
            training: the box losses (``loss_cls``, ``loss_box_reg``); inference: per image
            ``Instances(pred_boxes, scores, pred_classes)`` (resized image coordinates) and the
            index of the proposal each detection was regressed from.

        Override for another box loss or classifier (IIDFC's CIoU regression loss).
        """
        if self.training:
            return self.box_predictor.losses(self.box_predictor(pooled), proposals)
        boxes, scores = self.box_candidates(pooled, proposals)
        return self.final_nms(boxes, scores, proposals)

    def box_candidates(
        self, pooled: torch.Tensor, proposals: PerImage
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Inference: per image, the candidates of the final NMS, regressed boxes (R_i, 4K) and
        class probabilities (R_i, K + 1), background last (Detectron2's layout). Override with
        another box branch (HOIM: p_f of the embedding as the person score)."""
        predictions = self.box_predictor(pooled)
        return (
            list(self.box_predictor.predict_boxes(predictions, proposals)),
            list(self.box_predictor.predict_probs(predictions, proposals)),
        )

    def final_nms(
        self, boxes: list[torch.Tensor], scores: list[torch.Tensor], proposals: PerImage
    ) -> tuple[PerImage, list[torch.Tensor]]:
        """Score threshold -> NMS -> top-k (``MODEL.ROI_HEADS.SCORE_THRESH_TEST``,
        ``NMS_THRESH_TEST``, ``TEST.DETECTIONS_PER_IMAGE``): per image the detections and the
        indices of the candidates they came from (Detectron2's ``fast_rcnn_inference``)."""
        predictor = self.box_predictor
        return fast_rcnn_inference(
            boxes,
            scores,
            [p.image_size for p in proposals],
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )

    def forward_context(
        self, pooled: torch.Tensor, proposals: PerImage, forced: PerImage
    ) -> PerImage:
        """Inference with ``forced`` detections appended to each image's final-NMS candidates
        (score 1, their own embeddings; :mod:`.forced_detections`): the CBGM context of query
        images. The other survivors are embedded by ``embedding_head``."""
        boxes, scores = self.box_candidates(pooled, proposals)
        extended = [append_forced(b, s, f) for b, s, f in zip(boxes, scores, forced)]
        detections, kept = self.final_nms(
            [b for b, _ in extended], [s for _, s in extended], proposals
        )
        per_image = pooled.split([len(p) for p in proposals])
        return [
            finish_forced(inst, k, len(p), f, lambda rows, x=x: self.embedding_head(x[rows]))
            for inst, k, p, f, x in zip(detections, kept, proposals, forced, per_image)
        ]

    def forward_reid(
        self,
        pooled: torch.Tensor,
        proposals: list[Instances],
        detections: list[Instances] | None = None,
        kept: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor] | list[Instances]:
        """Re-id branch: embeddings of the (R, C') pooled vectors.

        Training: the re-id loss of the embeddings of all sampled ``proposals`` (their person
        ids: :func:`~.box_utils.proposal_person_ids`). Inference: ``detections`` (from
        :meth:`forward_box`) with ``embeddings`` (K, D) of the proposals ``kept`` gave them.

        Override to change what the loss sees (which RoIs, extra targets); a new loss is
        better registered in ``REID_LOSS_REGISTRY`` (IIDFC's FC loss).
        """
        if self.training:
            pids = proposal_person_ids(proposals, self.num_classes).to(pooled.device)
            return self.reid_loss(self.embedding_head(pooled), pids)
        per_image = pooled.split([len(p) for p in proposals])
        for inst, pooled_i, kept_i in zip(detections, per_image, kept):
            inst.embeddings = self.embedding_head(pooled_i[kept_i])
        return detections

    def forward_mask(
        self,
        roi_features: torch.Tensor | None,
        instances: list[Instances],
        features: FeatureMaps | None = None,
        extra_features: Extra | None = None,
    ) -> dict[str, torch.Tensor] | list[Instances]:
        """Mask branch (``MODEL.MASK_ON``; without a mask head: ``{}`` / ``instances``).

        Training: ``roi_features`` (R, C', h', w') of the sampled proposals ``instances``; the
        mask loss (``loss_mask``) reads only foreground proposals matched to a person with a
        mask (``gt_has_mask``; all when the field is absent): persons without a mask and
        background proposals contribute exactly nothing. Inference: the RoI features of the
        detections' boxes are computed from ``features`` (through
        :meth:`transform_roi_features`) and ``instances`` get ``pred_masks``.

        Override for another mask branch; to change which proposals train it, override
        :meth:`mask_training_selection`.
        """
        if not self.mask_on:
            return {} if self.training else instances
        if not self.training:
            boxes = [x.pred_boxes for x in instances]
            x, _ = self.transform_roi_features(
                self.roi_features(features, boxes), boxes, extra_features or {}
            )
            return self.mask_head(x, instances)
        foreground, fg_masks = select_foreground_proposals(instances, self.num_classes)
        x = roi_features[torch.cat(fg_masks)]
        with_mask = self.mask_training_selection(foreground)
        selected = [p[keep] for p, keep in zip(foreground, with_mask)]
        return self.mask_head(x[torch.cat(with_mask)], selected)

    def mask_training_selection(self, foreground: PerImage) -> list[torch.Tensor]:
        """Training: which foreground proposals the mask head (and its loss) reads, per image an
        (n_i,) bool tensor: those matched to a person with a mask (``gt_has_mask``; all when the
        field is absent). Override to narrow it (MaskGuidedPS: labelled persons only)."""
        return [
            p.gt_has_mask if p.has("gt_has_mask") else torch.ones_like(p.gt_classes, dtype=bool)
            for p in foreground
        ]

    # ------------------------------------------------------------------------------ forward
    def box_embeddings(
        self, features: FeatureMaps, boxes: list[Boxes], extra_features: Extra
    ) -> torch.Tensor:
        """(M, D) float32 L2-normalised embeddings of B lists of boxes (M in total), no
        detection: RoI features -> transform -> pool -> embedding head."""
        x, _ = self.transform_roi_features(
            self.roi_features(features, boxes), boxes, extra_features
        )
        return self.embedding_head(self.pool(x))

    def embed_boxes(
        self,
        features: FeatureMaps,
        boxes: list[Boxes],
        extra_features: Extra | None = None,
    ) -> list[torch.Tensor]:
        """Embeddings of given boxes (no detection): per image an (n_i, D) float32 tensor."""
        embeddings = self.box_embeddings(features, boxes, extra_features or {})
        return list(embeddings.split([len(b) for b in boxes]))

    def forward(
        self,
        images: ImageList,
        features: FeatureMaps,
        proposals: list[Instances],
        targets: list[Instances] | None = None,
        extra_features: Extra | None = None,
        *,
        forced_detections: PerImage | None = None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor]]:
        """Detectron2's ``ROIHeads.forward``: training ``([], forward_train(...))``, inference
        ``(forward_inference(...), {})``; ``extra_features`` default to {}.

        ``forced_detections`` (inference only; per image ``pred_boxes`` (F, 4) and
        ``embeddings`` (F, D)) enter the final NMS as score-1 detections: the CBGM query
        context (:mod:`.forced_detections`)."""
        del images
        extra_features = extra_features or {}
        if not self.training:
            return self.forward_inference(
                features, proposals, extra_features, forced_detections=forced_detections
            ), {}
        if targets is None:
            raise ValueError(f"{type(self).__name__} needs targets in training")
        if forced_detections is not None:
            raise ValueError("forced_detections are an inference input")
        return [], self.forward_train(features, proposals, targets, extra_features)

    def forward_train(
        self, features: FeatureMaps, proposals: PerImage, targets: PerImage, extra_features: Extra
    ) -> dict[str, torch.Tensor]:
        """Training losses: the box losses, the re-id loss's, ``loss_mask``
        (``MODEL.MASK_ON``) and those of :meth:`transform_roi_features`. ``targets`` need
        ``gt_boxes``, ``gt_classes`` and ``gt_pids`` (and ``gt_masks`` with masks on)."""
        proposals = self.label_and_sample_proposals(proposals, targets)
        boxes = [p.proposal_boxes for p in proposals]
        roi_features, aux_losses = self.transform_roi_features(
            self.roi_features(features, boxes), boxes, extra_features
        )
        pooled = self.pool(roi_features)
        losses = self.forward_box(pooled, proposals)
        losses.update(self.forward_reid(pooled, proposals))
        losses.update(self.forward_mask(roi_features, proposals))
        losses.update(aux_losses)
        return losses

    def forward_inference(
        self,
        features: FeatureMaps,
        proposals: PerImage,
        extra_features: Extra,
        forced_detections: PerImage | None = None,
    ) -> PerImage:
        """Per image ``Instances(pred_boxes, scores, pred_classes, embeddings (K, D)
        [, pred_masks])`` in the resized image coordinates; with ``forced_detections``, the
        CBGM query context (:meth:`forward_context`)."""
        boxes = [p.proposal_boxes for p in proposals]
        roi_features, _ = self.transform_roi_features(
            self.roi_features(features, boxes), boxes, extra_features
        )
        pooled = self.pool(roi_features)
        if forced_detections is not None:
            return self.forward_context(pooled, proposals, forced_detections)
        detections, kept = self.forward_box(pooled, proposals)
        detections = self.forward_reid(pooled, proposals, detections, kept)
        return self.forward_mask(None, detections, features, extra_features)
