"""The PAN head, registered in the library's ``REID_HEAD_REGISTRY`` as ``"PANHead"``."""

from __future__ import annotations

import logging

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from torch import nn

from person_search.modeling.reid_heads import (
    REID_HEAD_REGISTRY,
    GlobalPool,
    ReIDLossTerms,
    resolve_num_classes,
    training_person_ids,
)
from person_search.modeling.reid_heads.bnneck import NECK_FEATS, bn_neck, identity_classifier

from .feature_sources import FeatureSources
from .mask_generator import MaskGenerator
from .part_fc import PartFC, global_local_ratio
from .weighted_pooling import WeightedPartPooling

__all__ = ["PANHead"]

logger = logging.getLogger(__name__)


@REID_HEAD_REGISTRY.register()
class PANHead(nn.Module):
    """Part-Aware Network head (Ye et al., Fig. 1).

    * masks ``M = G(F1)``: :class:`MaskGenerator`, p maps;
    * locals ``f_i = sum(F2 * m_i) / sum|m_i|`` (:func:`weighted_part_pooling`), each mapped to
      n_l by one shared FC (:class:`PartFC`);
    * global: pooling of F3 (GMP) and an FC to N_g;
    * embedding: ``concat(global, local_1..local_p)``, N_g + p * n_l values; the balance
      ``gamma = p * n_l / N_g`` (:attr:`gamma`).

    F1 / F2 are backbone outputs or buffer layers (:class:`FeatureSources`); F3 is the backbone
    output ``in_feature``.

    Losses (our reading of eq. 5): ``loss_cls_global`` and ``loss_cls_local`` are each half the
    identity loss (``ce_weight / 2`` x label-smoothed CE), of a classifier on the global
    embedding and of one on the concatenated local embeddings, each after a BatchNorm neck (the
    library's BNNeck); ``loss_triplet`` is the batch-hard triplet loss (soft margin in the
    paper) on the whole embedding before the necks. Inference returns the embedding after the necks
    (``neck_feat="after"``) or before.
    """

    @configurable
    def __init__(
        self,
        *,
        sources: FeatureSources,
        mask_source: str,
        local_source: str,
        in_feature: str,
        mask_channels: int,
        local_channels: int,
        global_channels: int,
        num_classes: int,
        num_masks: int = 14,
        mask_softmax: bool = False,
        global_dim: int = 512,
        local_dim: int = 256,
        shared_local_fc: bool = True,
        pooling: str = "max",
        pooling_eps: float = 1e-6,
        neck_feat: str = "after",
        losses: ReIDLossTerms | None = None,
    ):
        """
        Args:
            sources: computes F1 / F2 (and holds the buffer layers).
            mask_source, local_source: names of F1 and F2 in ``sources``.
            in_feature: backbone output read as F3.
            mask_channels, local_channels, global_channels: C1, C2, C3.
            num_classes: training identities.
            num_masks, mask_softmax: p and the softmax ablation (:class:`MaskGenerator`).
            global_dim, local_dim: N_g and n_l.
            shared_local_fc: one local FC for all parts, or one per part.
            pooling: global pooling of F3 ("max" in the paper; "avg", "gem").
            pooling_eps: guard of the weighted pooling's denominator.
            neck_feat: inference embedding "after" or "before" the BatchNorm necks.
            losses: weights and forms of the identity loss (split equally between the global
                and the local classifier) and of the triplet loss on the embedding; default:
                ``ReIDLossTerms(triplet_soft_margin=True)`` (the paper's).
        """
        super().__init__()
        if neck_feat not in NECK_FEATS:
            raise ValueError(
                f"MODEL.REID.HEAD.NECK_FEAT must be one of {NECK_FEATS}: {neck_feat!r}"
            )
        if num_classes <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        self.sources = sources
        self.mask_source = mask_source
        self.local_source = local_source
        self.in_feature = in_feature
        self.neck_feat = neck_feat
        self.losses = ReIDLossTerms(triplet_soft_margin=True) if losses is None else losses
        self.gamma = global_local_ratio(num_masks, local_dim, global_dim)

        self.mask_generator = MaskGenerator(mask_channels, num_masks, softmax=mask_softmax)
        self.part_pool = WeightedPartPooling(pooling_eps)
        self.local_fc = PartFC(local_channels, local_dim, num_masks, shared=shared_local_fc)
        self.global_pool = GlobalPool(pooling)
        self.global_fc = nn.Linear(global_channels, global_dim)
        self.global_neck = bn_neck(global_dim)
        self.local_neck = bn_neck(num_masks * local_dim)
        self.global_classifier = identity_classifier(global_dim, num_classes)
        self.local_classifier = identity_classifier(num_masks * local_dim, num_classes)

    @classmethod
    def from_config(
        cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec], backbone: nn.Module | None = None
    ) -> dict:
        pcfg, hcfg = cfg.MODEL.PAN, cfg.MODEL.REID.HEAD
        if hcfg.IN_FEATURE not in input_shape:
            raise ValueError(
                f"MODEL.REID.HEAD.IN_FEATURE = {hcfg.IN_FEATURE!r} (F3) is not a backbone output; "
                f"MODEL.REID.BACKBONE_OUT_FEATURES = {sorted(input_shape)}"
            )
        sources, shapes = FeatureSources.from_backbone(
            backbone,
            input_shape,
            {
                "MODEL.PAN.MASK_SOURCE": pcfg.MASK_SOURCE,
                "MODEL.PAN.LOCAL_SOURCE": pcfg.LOCAL_SOURCE,
            },
        )
        mask_shape, local_shape = shapes[pcfg.MASK_SOURCE], shapes[pcfg.LOCAL_SOURCE]
        if mask_shape.stride != local_shape.stride:
            raise ValueError(
                f"MODEL.PAN.MASK_SOURCE = {pcfg.MASK_SOURCE!r} (stride {mask_shape.stride}) and "
                f"MODEL.PAN.LOCAL_SOURCE = {pcfg.LOCAL_SOURCE!r} (stride {local_shape.stride}) "
                "must be maps of one size: the masks weight F2 position by position"
            )
        head = {
            "sources": sources,
            "mask_source": pcfg.MASK_SOURCE,
            "local_source": pcfg.LOCAL_SOURCE,
            "in_feature": hcfg.IN_FEATURE,
            "mask_channels": mask_shape.channels,
            "local_channels": local_shape.channels,
            "global_channels": input_shape[hcfg.IN_FEATURE].channels,
            "num_classes": resolve_num_classes(cfg),
            "num_masks": pcfg.NUM_MASKS,
            "mask_softmax": pcfg.MASK_SOFTMAX,
            "global_dim": pcfg.GLOBAL_DIM,
            "local_dim": pcfg.LOCAL_DIM,
            "shared_local_fc": pcfg.SHARED_LOCAL_FC,
            "pooling": hcfg.POOLING,
            "pooling_eps": pcfg.POOLING_EPS,
            "neck_feat": hcfg.NECK_FEAT,
            "losses": ReIDLossTerms.from_config(cfg),
        }
        logger.info(
            "PAN head: p=%d masks from %s, locals from %s, n_l=%d, N_g=%d, gamma=%.3g",
            pcfg.NUM_MASKS,
            pcfg.MASK_SOURCE,
            pcfg.LOCAL_SOURCE,
            pcfg.LOCAL_DIM,
            pcfg.GLOBAL_DIM,
            global_local_ratio(pcfg.NUM_MASKS, pcfg.LOCAL_DIM, pcfg.GLOBAL_DIM),
        )
        return head

    @property
    def num_masks(self) -> int:
        return int(self.mask_generator.num_masks)

    def predict_masks(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """features: backbone outputs -> the p masks (N, p, h, w) on F1's grid."""
        maps = self.sources(features, [self.mask_source])
        return self.mask_generator(maps[self.mask_source])

    def embed(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """features: backbone outputs -> (global (N, N_g), locals (N, p, n_l)), before the
        necks."""
        maps = self.sources(features, [self.mask_source, self.local_source])
        masks = self.mask_generator(maps[self.mask_source])
        parts = self.part_pool(maps[self.local_source], masks)
        local_emb = self.local_fc(parts)
        global_emb = self.global_fc(self.global_pool(features[self.in_feature]))
        return global_emb, local_emb

    def forward(
        self, features: dict[str, torch.Tensor], targets: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            features: backbone outputs (F3 ``in_feature`` and what the sources read), each
                (N, C, H, W).
            targets: training only: {"person_id": (N,) int64 in [0, num_classes)}.

        Returns:
            training: {"loss_cls_global", "loss_cls_local", "loss_triplet"} scalars (a loss of
            weight 0 is left out); inference: {"features": (N, N_g + p * n_l)}.
        """
        global_emb, local_emb = self.embed(features)
        local_flat = local_emb.flatten(1)
        global_bn, local_bn = self.global_neck(global_emb), self.local_neck(local_flat)
        if not self.training:
            if self.neck_feat == "after":
                return {"features": torch.cat([global_bn, local_bn], dim=1)}
            return {"features": torch.cat([global_emb, local_flat], dim=1)}
        person_ids = training_person_ids(targets, self.global_classifier.out_features, "PANHead")
        losses = {}
        if self.losses.ce_weight > 0:
            # eq. 5: L_id = (L_g + L_l) / 2
            losses["loss_cls_global"] = 0.5 * self.losses.identity(
                self.global_classifier(global_bn), person_ids
            )
            losses["loss_cls_local"] = 0.5 * self.losses.identity(
                self.local_classifier(local_bn), person_ids
            )
        if self.losses.triplet_weight > 0:
            embedding = torch.cat([global_emb, local_flat], dim=1)
            losses["loss_triplet"] = self.losses.triplet(embedding, person_ids)
        return losses
