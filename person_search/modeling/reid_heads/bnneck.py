"""BNNeck head of the strong re-id baseline (Luo et al., "Bag of Tricks", CVPRW 2019)."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from torch import nn

from ..losses.reid_losses import DISTANCES, batch_hard_triplet_loss, cross_entropy_label_smooth
from .build import REID_HEAD_REGISTRY, resolve_num_classes
from .pooling import GlobalPool

__all__ = ["BNNeckHead"]

NECK_FEATS = ("before", "after")
# Std of the normal init of the classifier weights (Bag of Tricks).
_CLASSIFIER_INIT_STD = 0.001


@REID_HEAD_REGISTRY.register()
class BNNeckHead(nn.Module):
    """Global pooling -> feature f_t (triplet loss) -> BatchNorm with frozen zero bias -> f_i
    -> bias-free linear classifier (label-smoothed cross-entropy).

    Inference returns f_i ("after") or f_t ("before") as the embedding.
    """

    @configurable
    def __init__(
        self,
        *,
        in_feature: str,
        in_channels: int,
        num_classes: int,
        pooling: str = "avg",
        gem_p: float = 3.0,
        gem_learn_p: bool = True,
        neck_feat: str = "after",
        ce_weight: float = 1.0,
        ce_epsilon: float = 0.1,
        triplet_weight: float = 1.0,
        triplet_margin: float = 0.3,
        triplet_soft_margin: bool = False,
        triplet_distance: str = "euclidean",
    ):
        """
        Args:
            in_feature: name of the backbone output to read.
            in_channels: its channels C (the embedding size D).
            num_classes: number of training identities.
            pooling, gem_p, gem_learn_p: see :class:`GlobalPool`.
            neck_feat: inference embedding "after" or "before" the BatchNorm.
            ce_weight, ce_epsilon: weight and label smoothing of the identity loss.
            triplet_weight, triplet_margin, triplet_soft_margin, triplet_distance: weight
                (0 = off) and form of the batch-hard triplet loss on the pre-BN feature.
        """
        super().__init__()
        if neck_feat not in NECK_FEATS:
            raise ValueError(f"neck_feat must be one of {NECK_FEATS}, got {neck_feat!r}")
        if triplet_distance not in DISTANCES:
            raise ValueError(f"triplet distance must be one of {DISTANCES}: {triplet_distance!r}")
        if num_classes <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        self.in_feature = in_feature
        self.neck_feat = neck_feat
        self.ce_weight = ce_weight
        self.ce_epsilon = ce_epsilon
        self.triplet_weight = triplet_weight
        self.triplet_margin = triplet_margin
        self.triplet_soft_margin = triplet_soft_margin
        self.triplet_distance = triplet_distance

        self.pool = GlobalPool(pooling, gem_p=gem_p, gem_learn_p=gem_learn_p)
        self.bottleneck = nn.BatchNorm1d(in_channels)
        nn.init.ones_(self.bottleneck.weight)
        nn.init.zeros_(self.bottleneck.bias)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(in_channels, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=_CLASSIFIER_INIT_STD)

    @classmethod
    def from_config(
        cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec], backbone: nn.Module | None = None
    ) -> dict:
        # ``backbone`` (see REID_HEAD_REGISTRY) is not needed: BNNeck reads only feature maps.
        hcfg, lcfg = cfg.MODEL.REID.HEAD, cfg.MODEL.REID.LOSS
        if hcfg.IN_FEATURE not in input_shape:
            raise ValueError(
                f"MODEL.REID.HEAD.IN_FEATURE={hcfg.IN_FEATURE!r} is not a backbone output; "
                f"available: {sorted(input_shape)} (MODEL.REID.BACKBONE_OUT_FEATURES)"
            )
        return {
            "in_feature": hcfg.IN_FEATURE,
            "in_channels": input_shape[hcfg.IN_FEATURE].channels,
            "num_classes": resolve_num_classes(cfg),
            "pooling": hcfg.POOLING,
            "gem_p": hcfg.GEM_P,
            "gem_learn_p": hcfg.GEM_LEARN_P,
            "neck_feat": hcfg.NECK_FEAT,
            "ce_weight": lcfg.CE_WEIGHT,
            "ce_epsilon": lcfg.CE_EPSILON,
            "triplet_weight": lcfg.TRIPLET_WEIGHT,
            "triplet_margin": lcfg.TRIPLET_MARGIN,
            "triplet_soft_margin": lcfg.TRIPLET_SOFT_MARGIN,
            "triplet_distance": lcfg.TRIPLET_DISTANCE,
        }

    def forward(
        self, features: dict[str, torch.Tensor], targets: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            features: backbone outputs; ``features[in_feature]`` is (N, C, H, W).
            targets: training only: {"person_id": (N,) int64 in [0, num_classes)}.

        Returns:
            training: {"loss_cls": scalar, "loss_triplet": scalar} (weighted; a loss with
            weight 0 is left out); inference: {"features": (N, C)}.
        """
        global_feat = self.pool(features[self.in_feature])
        bn_feat = self.bottleneck(global_feat)
        if not self.training:
            return {"features": bn_feat if self.neck_feat == "after" else global_feat}
        if targets is None or "person_id" not in targets:
            raise ValueError("BNNeckHead needs targets['person_id'] in training")
        person_ids = targets["person_id"]
        num_classes = self.classifier.out_features
        if person_ids.numel() and not 0 <= int(person_ids.min()) <= int(person_ids.max()) < (
            num_classes
        ):
            raise ValueError(
                f"training person_id values must be in [0, {num_classes}) (the classifier's "
                f"classes), got range [{int(person_ids.min())}, {int(person_ids.max())}]"
            )
        losses = {}
        if self.ce_weight > 0:
            logits = self.classifier(bn_feat)
            losses["loss_cls"] = self.ce_weight * cross_entropy_label_smooth(
                logits, person_ids, self.ce_epsilon
            )
        if self.triplet_weight > 0:
            losses["loss_triplet"] = self.triplet_weight * batch_hard_triplet_loss(
                global_feat,
                person_ids,
                margin=self.triplet_margin,
                soft_margin=self.triplet_soft_margin,
                metric=self.triplet_distance,
            )
        return losses
