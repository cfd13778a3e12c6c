"""BNNeck head of the strong re-id baseline (Luo et al., "Bag of Tricks", CVPRW 2019)."""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from torch import nn

from .build import REID_HEAD_REGISTRY, resolve_num_classes
from .losses import ReIDLossTerms, training_person_ids
from .pooling import GlobalPool

__all__ = ["BNNeckHead", "bn_neck", "identity_classifier"]

NECK_FEATS = ("before", "after")
# Std of the normal init of the classifier weights (Bag of Tricks).
_CLASSIFIER_INIT_STD = 0.001


def bn_neck(channels: int) -> nn.BatchNorm1d:
    """The BNNeck's BatchNorm: weight 1, bias 0 and frozen (not trained)."""
    bn = nn.BatchNorm1d(channels)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    bn.bias.requires_grad_(False)
    return bn


def identity_classifier(channels: int, num_classes: int) -> nn.Linear:
    """The identity classifier after a BNNeck: bias-free, weights drawn from N(0, 0.001^2)."""
    classifier = nn.Linear(channels, num_classes, bias=False)
    nn.init.normal_(classifier.weight, std=_CLASSIFIER_INIT_STD)
    return classifier


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
        if num_classes <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        self.in_feature = in_feature
        self.neck_feat = neck_feat
        self.losses = ReIDLossTerms(
            ce_weight=ce_weight,
            ce_epsilon=ce_epsilon,
            triplet_weight=triplet_weight,
            triplet_margin=triplet_margin,
            triplet_soft_margin=triplet_soft_margin,
            triplet_distance=triplet_distance,
        )

        self.pool = GlobalPool(pooling, gem_p=gem_p, gem_learn_p=gem_learn_p)
        self.bottleneck = bn_neck(in_channels)
        self.classifier = identity_classifier(in_channels, num_classes)

    @classmethod
    def from_config(
        cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec], backbone: nn.Module | None = None
    ) -> dict:
        # ``backbone`` (see REID_HEAD_REGISTRY) is not needed: BNNeck reads only feature maps.
        hcfg = cfg.MODEL.REID.HEAD
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
            **ReIDLossTerms.from_config(cfg).as_kwargs(),
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
        person_ids = training_person_ids(targets, self.classifier.out_features, "BNNeckHead")
        losses = {}
        if self.losses.ce_weight > 0:
            losses["loss_cls"] = self.losses.identity(self.classifier(bn_feat), person_ids)
        if self.losses.triplet_weight > 0:
            losses["loss_triplet"] = self.losses.triplet(global_feat, person_ids)
        return losses
