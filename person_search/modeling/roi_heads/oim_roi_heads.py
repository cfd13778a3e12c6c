"""RoI heads of the OIM person-search baseline (Xiao et al., CVPR 2017).

Per RoI: RoIAlign on the res4 map (14x14) -> the last backbone stage (res5, stride 2) ->
global average pooling -> a C-d vector (2048 for ResNet-50) feeding

* the box predictor (person vs background softmax + class-specific box regression,
  Detectron2's ``FastRCNNOutputLayers``), and
* the embedding head (Linear + BN -> D = 256, L2-normalised), trained with the OIM loss on
  foreground proposals: a proposal matched (IoU >= ``MODEL.ROI_HEADS.IOU_THRESHOLDS``, 0.5)
  to a labelled person carries its identity, one matched to an unlabelled person feeds the
  queue.

At inference the embedding of a detection is the one of the proposal it was regressed from
(OIM's single pass; no second RoIAlign on the refined box).
"""

from __future__ import annotations

import numbers

import torch
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import ROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ...layers.pooler import build_roi_pooler
from ..backbone.head_stage import build_roi_head_stage
from ..losses.oim import BACKGROUND_PID, OIMLoss
from .embedding_head import EmbeddingHead
from .forced_detections import append_forced, finish_forced

__all__ = ["OIMROIHeads", "proposal_person_ids", "resolve_num_person_ids"]


def resolve_num_person_ids(cfg) -> int:
    """Rows of the OIM lookup table: ``MODEL.OIM.NUM_PERSON_IDS``, or when it is 0 the sum of
    the ``num_person_ids`` metadata of ``DATASETS.TRAIN`` (the training loader offsets the ids
    of each dataset by the counts of those before it). A dataset whose metadata lacks the count
    is loaded (``DatasetCatalog.get``), which sets it."""
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
        metadata = MetadataCatalog.get(name)
        if not hasattr(metadata, "num_person_ids"):
            try:
                DatasetCatalog.get(name)
            except Exception as e:
                raise RuntimeError(
                    f"MODEL.OIM.NUM_PERSON_IDS=0: loading training dataset {name!r} to read its "
                    f"identity count failed ({e}); set MODEL.OIM.NUM_PERSON_IDS explicitly"
                ) from e
        num = getattr(metadata, "num_person_ids", None)
        if not isinstance(num, numbers.Integral) or num <= 0:
            raise ValueError(
                f"dataset {name!r} has no positive 'num_person_ids' in its metadata (got "
                f"{num!r}): it is not a person-search training set, or set "
                "MODEL.OIM.NUM_PERSON_IDS"
            )
        total += int(num)
    return total


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


@ROI_HEADS_REGISTRY.register()
class OIMROIHeads(ROIHeads):
    """RoIAlign + last backbone stage + box predictor + embedding head + OIM loss.

    Subclasses (other person-search heads) can reuse :meth:`pooled_features`,
    :meth:`embed_boxes` and :meth:`reid_losses`.
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
        **kwargs,
    ):
        """
        Args:
            in_features: the one backbone feature map the RoIs are pooled from.
            pooler: ``forward(list[(B, C, H, W)], list[Boxes]) -> (M, C, h, w)``.
            res5: the RoI head stage, (M, C, h, w) -> (M, C', h', w').
            box_predictor: ``FastRCNNOutputLayers``-like, on (M, C') vectors.
            embedding_head: (M, C') -> (M, D) L2-normalised.
            reid_loss: ``(features (N, D), pids (N,)) -> scalar`` on foreground proposals.
            kwargs: ``ROIHeads`` arguments (sampling, matcher, num_classes).
        """
        super().__init__(**kwargs)
        if len(in_features) != 1:
            raise ValueError(f"OIMROIHeads pools one feature map, got {in_features}")
        self.in_features = in_features
        self.pooler = pooler
        self.res5 = res5
        self.box_predictor = box_predictor
        self.embedding_head = embedding_head
        self.reid_loss = reid_loss

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super().from_config(cfg)
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        if len(in_features) != 1:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES must name one map for OIMROIHeads, got {in_features}"
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
        ret["box_predictor"] = FastRCNNOutputLayers(
            cfg, ShapeSpec(channels=res5.out_channels, height=1, width=1)
        )
        ret["embedding_head"] = EmbeddingHead(cfg, in_channels=res5.out_channels)
        ret["reid_loss"] = OIMLoss(cfg, num_person_ids=resolve_num_person_ids(cfg))
        return ret

    def pooled_features(
        self, features: dict[str, torch.Tensor], boxes: list[Boxes]
    ) -> torch.Tensor:
        """RoIAlign + head stage + global average pooling.

        Args:
            features: backbone maps, ``features[in_features[0]]`` is (B, C, H, W).
            boxes: B Boxes in the coordinates of the (resized) input images.

        Returns:
            (M, C') with M = total number of boxes, in image order.
        """
        x = self.pooler([features[f] for f in self.in_features], boxes)
        return self.res5(x).mean(dim=(2, 3))

    def embed_boxes(
        self, features: dict[str, torch.Tensor], boxes: list[Boxes]
    ) -> list[torch.Tensor]:
        """Embeddings of given boxes (no detection): per image an (n_i, D) float32 tensor."""
        pooled = self.pooled_features(features, boxes)
        embeddings = self.embedding_head(pooled)
        return list(embeddings.split([len(b) for b in boxes]))

    def reid_losses(
        self, embeddings: torch.Tensor, proposals: list[Instances]
    ) -> dict[str, torch.Tensor]:
        """OIM loss of (R, D) embeddings of the sampled proposals (background ones ignored)."""
        pids = proposal_person_ids(proposals, self.num_classes).to(embeddings.device)
        foreground = pids != BACKGROUND_PID
        return {"loss_oim": self.reid_loss(embeddings[foreground], pids[foreground])}

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
        Training: returns ``([], losses)`` with the box losses and ``loss_oim``; ``targets``
        need ``gt_boxes``, ``gt_classes`` and ``gt_pids``.
        Inference: returns per image ``Instances(pred_boxes, scores, pred_classes,
        embeddings (K, D))`` in the resized image coordinates, and ``{}``;
        ``forced_detections`` (per image, ``pred_boxes`` and ``embeddings``) enter the box
        predictor's NMS as score-1 detections (:mod:`.forced_detections`).
        """
        del images
        if self.training:
            if targets is None:
                raise ValueError("OIMROIHeads needs targets in training")
            if forced_detections is not None:
                raise ValueError("forced_detections are an inference input")
            proposals = self.label_and_sample_proposals(proposals, targets)
        pooled = self.pooled_features(features, [p.proposal_boxes for p in proposals])
        predictions = self.box_predictor(pooled)
        if self.training:
            losses = self.box_predictor.losses(predictions, proposals)
            losses.update(self.reid_losses(self.embedding_head(pooled), proposals))
            return [], losses
        if forced_detections is not None:
            return self._inference_with_forced(
                pooled, predictions, proposals, forced_detections
            ), {}
        instances, kept_indices = self.box_predictor.inference(predictions, proposals)
        per_image = pooled.split([len(p) for p in proposals])
        for inst, pooled_i, kept in zip(instances, per_image, kept_indices):
            inst.embeddings = self.embedding_head(pooled_i[kept])
        return instances, {}

    def _inference_with_forced(
        self,
        pooled: torch.Tensor,
        predictions: tuple[torch.Tensor, torch.Tensor],
        proposals: list[Instances],
        forced: list[Instances],
    ) -> list[Instances]:
        """``box_predictor.inference`` with ``forced`` appended to each image's NMS candidates."""
        predictor = self.box_predictor
        boxes = predictor.predict_boxes(predictions, proposals)
        scores = predictor.predict_probs(predictions, proposals)
        extended = [append_forced(b, s, f) for b, s, f in zip(boxes, scores, forced)]
        instances, kept_indices = fast_rcnn_inference(
            [b for b, _ in extended],
            [s for _, s in extended],
            [p.image_size for p in proposals],
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        per_image = pooled.split([len(p) for p in proposals])
        return [
            finish_forced(inst, kept, len(p), f, lambda rows, x=x: self.embedding_head(x[rows]))
            for inst, kept, p, f, x in zip(instances, kept_indices, proposals, forced, per_image)
        ]
