"""MGOFE's RoI heads: SeqNeXt's (SeqNet's heads with a ConvNeXt head stage) whose second head
fuses each RoI's feature with its virtual features (MGFFE) and trains an adversarial alignment
of the two (MGFA), in the library's ``transform_roi_features`` step.

The person feature of a RoI is ``p = [v4, v5]`` (the second head's pooled RoIAlign map and
pooled head-stage output, concatenated); its virtual features ``g_1..g_m`` are the same
computation on the same box in the m occluded copies' maps (the backbone's, shared; the
second head's stage, shared). The embedding (Norm-Aware Embedding + OIM) and the second box
regression then read the fused ``p'`` split back into ``[v4', v5']``.
"""

from __future__ import annotations

from typing import Any

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.structures import Boxes

from person_search.modeling.roi_heads import SeqNetROIHeads

from .meta_arch import VIRTUAL_FEATURES
from .mgfa import MGFA
from .mgffe import MGFFE

__all__ = ["MGOFEROIHeads"]


@ROI_HEADS_REGISTRY.register()
class MGOFEROIHeads(SeqNetROIHeads):
    """:class:`SeqNetROIHeads` with MGFFE and MGFA on the second head's RoI features."""

    @configurable
    def __init__(
        self,
        *,
        feature_sizes: tuple[int, int],
        mgffe_dim: int | None = None,
        mgfa_hidden_dim: int | None = None,
        mgfa_grl_lambda: float = 1.0,
        mgfa_weight: float = 1.0,
        **kwargs,
    ):
        """
        Args:
            feature_sizes: (C4, C5), the sizes of v4 and v5 (p has C4 + C5 values).
            mgffe_dim: d of MGFFE's queries and keys (0 = C4 + C5), or None: no MGFFE
                (``MODEL.MGOFE.MGFFE.ENABLED`` False).
            mgfa_hidden_dim: hidden width of MGFA's discriminator, or None: no MGFA
                (``MODEL.MGOFE.MGFA.ENABLED`` False).
            mgfa_grl_lambda: MGFA's gradient-reversal factor.
            mgfa_weight: weight of ``loss_mgfa``.
            kwargs: :class:`SeqNetROIHeads` arguments.

        MGFFE and MGFA are created after SeqNet's heads, so that from the same seed the heads
        they share with SeqNeXt start from SeqNeXt's weights.
        """
        super().__init__(**kwargs)
        self.feature_sizes = tuple(feature_sizes)
        dim = sum(self.feature_sizes)
        self.mgffe = None if mgffe_dim is None else MGFFE(dim, mgffe_dim)
        self.mgfa = None if mgfa_hidden_dim is None else MGFA(dim, mgfa_hidden_dim, mgfa_grl_lambda)
        self.mgfa_weight = mgfa_weight

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        m = cfg.MODEL.MGOFE
        ret["feature_sizes"] = (
            input_shape[ret["in_features"][0]].channels,
            ret["res5"].out_channels,
        )
        if m.MGFFE.ENABLED:
            ret["mgffe_dim"] = m.MGFFE.DIM
        if m.MGFA.ENABLED:
            ret["mgfa_hidden_dim"] = m.MGFA.HIDDEN_DIM
            ret["mgfa_grl_lambda"] = m.MGFA.GRL_LAMBDA
            ret["mgfa_weight"] = m.MGFA.LOSS_WEIGHT
        return ret

    def virtual_roi_features(
        self, boxes: list[Boxes], extra_features: dict[str, Any]
    ) -> torch.Tensor | None:
        """(M, m, C4 + C5) features of the boxes in the m copies (one RoIAlign and one head
        stage pass over all copies), or None without copies in ``extra_features``."""
        maps = extra_features.get(VIRTUAL_FEATURES)
        if maps is None:
            return None
        m = next(iter(maps.values())).shape[1]
        level_major = {n: t.transpose(0, 1).flatten(0, 1) for n, t in maps.items()}  # (m*B, ...)
        v4, v5 = self.second_roi_features(level_major, list(boxes) * m)
        num_boxes = sum(len(b) for b in boxes)
        return torch.cat([v4, v5], dim=1).unflatten(0, (m, num_boxes)).transpose(0, 1)

    def transform_roi_features(
        self, roi_features: list[torch.Tensor], boxes: list[Boxes], extra_features: dict
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """MGFA's loss (training) on p and its virtual features, and MGFFE's fusion of p with
        them; without copies (inference by default) each RoI is its own virtual feature.

        Returns:
            ``[v4', v5']`` ((M, C4), (M, C5)) and ``{"loss_mgfa"}`` in training with MGFA.
        """
        if self.mgffe is None and self.mgfa is None:
            return roi_features, {}
        v4, v5 = roi_features
        real = torch.cat([v4, v5], dim=1)
        virtual = self.virtual_roi_features(boxes, extra_features)
        if virtual is None and self.training:
            raise ValueError(
                f"MGOFEROIHeads in training need the copies' maps in extra_features"
                f"[{VIRTUAL_FEATURES!r}]: use MODEL.META_ARCHITECTURE 'MGOFERCNN' with "
                "INPUT.MGRO.ENABLED True"
            )
        losses = {}
        if self.training and self.mgfa is not None:
            losses["loss_mgfa"] = self.mgfa_weight * self.mgfa(real, virtual)
        if self.mgffe is not None:
            fused = self.mgffe(real, real[:, None] if virtual is None else virtual)
            v4, v5 = fused.split(self.feature_sizes, dim=1)
        return [v4, v5], losses
