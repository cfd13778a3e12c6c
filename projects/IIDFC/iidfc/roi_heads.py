"""IIDFC's RoI heads: the library's HOIM heads (Res2Net layer4 on every RoI, HOIM loss as the
classifier) with an attention on the layer-4 RoI maps and the IRR box loss; and the library's
OIM heads with the attention (Table IV's "OIM(ours)+PAM+FC").

Per RoI: RoIAlign (14x14) on the stride-16 map -> head stage (layer4) -> **attention**
(``transform_roi_features``, ``MODEL.IIDFC.ATTENTION.NAME``: PAM) -> global average pooling ->
box regressor (**IRR** loss, ``forward_box``) and embedding head (re-id loss, e.g. ``FCLoss``).
The attention runs wherever the RoI maps are read: training, gallery detections and query boxes
(``embed_boxes``). Our reading of Fig. 3 / 9: PAM sits after layer 4, inside the R-CNN head,
so the box regressor and the embedding (whose HOIM first level is the person score) both read
the attended maps.
"""

from __future__ import annotations

from typing import Any

import torch
from detectron2.config import configurable
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.structures import Boxes, Instances
from torch import nn

from person_search.modeling.roi_heads import HOIMROIHeads, OIMROIHeads

from .attention import build_roi_attention
from .irr import IRRBoxRegressor

__all__ = ["AttentionOIMROIHeads", "IIDFCROIHeads", "RoIAttentionMixin"]


class RoIAttentionMixin:
    """Applies ``attention`` ((R, C, h, w) -> same) to the head-stage RoI maps through the
    heads' ``transform_roi_features`` step (placed before an OIM-family head in the bases)."""

    @configurable
    def __init__(self, *, attention: nn.Module, **kwargs):
        """
        Args:
            attention: (R, C, h, w) -> (R, C, h, w), from ``ROI_ATTENTION_REGISTRY``.
            kwargs: the arguments of the heads it is mixed into.
        """
        super().__init__(**kwargs)
        self.attention = attention

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["attention"] = build_roi_attention(cfg, ret["res5"].out_channels)
        return ret

    def transform_roi_features(
        self, roi_features: torch.Tensor, boxes: list[Boxes], extra_features: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(R, C, h, w) head-stage maps -> the attended maps (same shape); no auxiliary loss."""
        roi_features, losses = super().transform_roi_features(roi_features, boxes, extra_features)
        return self.attention(roi_features), losses


@ROI_HEADS_REGISTRY.register()
class IIDFCROIHeads(RoIAttentionMixin, HOIMROIHeads):
    """HOIM heads + attention on the layer-4 RoI maps + IRR (Smooth-L1 + CIoU) box loss.

    Training losses: ``loss_box_reg`` (lambda3 gamma SmoothL1), ``loss_box_ciou``
    (lambda3 beta CIoU) and the re-id loss's (``FCLoss``: ``loss_hoim_cls``,
    ``loss_hoim_reid``). Inference as :class:`~person_search.modeling.roi_heads.HOIMROIHeads`.
    """

    @classmethod
    def build_box_predictor(cls, cfg, in_channels: int) -> nn.Module:
        """:class:`IRRBoxRegressor` (class-agnostic, lambda3 = ``BBOX_REG_LOSS_WEIGHT``)."""
        return IRRBoxRegressor(
            cfg, in_channels, bn_neck=False, loss_weight=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT
        )

    def forward_box(
        self, pooled: torch.Tensor, proposals: list[Instances]
    ) -> dict[str, torch.Tensor] | tuple[list[Instances], list[torch.Tensor]]:
        """Training: the two IRR terms of the (R, C) pooled vectors' deltas; inference: HOIM's
        detections (p_f scores) and the kept proposal indices."""
        if not self.training:
            return super().forward_box(pooled, proposals)
        deltas = self.box_predictor(pooled)
        return self.box_predictor.loss_terms(deltas, proposals, self.num_classes)


@ROI_HEADS_REGISTRY.register()
class AttentionOIMROIHeads(RoIAttentionMixin, OIMROIHeads):
    """The OIM baseline's heads (softmax classifier, Smooth-L1 box loss) + attention on the res5
    RoI maps: Table IV's "OIM(ours)+PAM+FC" with ``MODEL.PERSON_SEARCH.REID_LOSS "OIMFCLoss"``."""
