"""The SGSFA re-id head: SGA part attentions + SFA regions, their losses and the part outputs
matched by ``ReIDEvaluator`` (SGSFA Sec. 3, Fig. 2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from torch import nn

from person_search.modeling.losses.reid_losses import (
    DISTANCES,
    batch_hard_triplet_loss,
    cross_entropy_label_smooth,
)
from person_search.modeling.reid_heads import REID_HEAD_REGISTRY, resolve_num_classes

from .backbone import WHOLE_BODY_LOGITS
from .dynamic_loss import choose_regions, dynamic_classification_loss, sample_regions
from .sfa import (
    BODY_PROPORTIONS,
    REGIONS,
    find_head_top,
    region_fraction,
    region_pool,
    region_rows,
    split_rows,
)
from .sga import BranchEmbedding, PartAttention, mask_loss

__all__ = ["SGSFAHead"]

# The SFA blocks matched at test time (eq. 6): the first three regions.
_MATCHED_REGIONS = 3
# Std of the normal init of the classifiers (as the library's BNNeck head).
_CLASSIFIER_INIT_STD = 0.001


class _NeckClassifier(nn.Module):
    """BatchNorm (frozen zero bias) then a bias-free linear classifier, for one branch."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        nn.init.zeros_(self.bn.bias)
        self.fc = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.fc.weight, std=_CLASSIFIER_INIT_STD)


def _necks(features: torch.Tensor, necks: nn.ModuleList) -> torch.Tensor:
    """features (N, B, D) -> each branch through its BatchNorm: (N, B, D)."""
    return torch.stack([neck.bn(features[:, i]) for i, neck in enumerate(necks)], dim=1)


def _logits(normed: torch.Tensor, necks: nn.ModuleList) -> torch.Tensor:
    """normed (N, B, D) -> (N, B, K) class scores of each branch's classifier."""
    return torch.stack([neck.fc(normed[:, i]) for i, neck in enumerate(necks)], dim=1)


@REID_HEAD_REGISTRY.register()
class SGSFAHead(nn.Module):
    """Semantic-guided attention (SGA) and shared feature alignment (SFA) on the last stage.

    SGA: P part attentions (head, upper body, lower body, shoes) on the feature map F
    (N, C, H, W); branch p embeds ``F * sigmoid(part logits p)``, the global branch embeds F
    (already filtered by the backbone's whole-body attention); each branch: 1x1 conv -> BN ->
    ReLU -> average pooling -> D (256), then BN and a classifier. SFA: the map is split below
    the head top found in the learned head mask (15/23/62%) and each region of
    ``REGIONS`` is average-pooled from a shared 1x1 conv of F (D), with its own BN + classifier.

    Inference outputs (N images): "features" (N, (1 + P + 3) D): global, parts, top / middle /
    bottom, concatenated (Fig. 2's final feature); "part_features" (N, P + 3, D) and
    "part_visibility" (N, P + 3) for ``ReIDEvaluator``'s part mode (eq. 6: the P parts and the
    3 blocks); "part_masks" (N, P, H, W) the learned part masks; "region_bounds" (N, 4) the
    split rows ``[t0, b1, b2, H]``; "whole_body_mask" (N, 1, H', W') when the backbone has the
    whole-body attention. Without SFA the blocks are left out.

    Visibility (eqs. 4-5, our reading): a learned mask is binarised at ``mask_threshold``; a
    part's score is the fraction of the map it covers, a block's the fraction of its rows'
    cells covered by any part. A part is visible when its score exceeds
    ``TEST.REID.PART_VISIBILITY_THRESHOLD`` (0 in our configs: any covered cell, the "not all
    0" rule of eq. 2, which also decides block visibility for L_dcls in training).
    """

    @configurable
    def __init__(
        self,
        *,
        in_feature: str,
        in_channels: int,
        num_classes: int,
        num_parts: int,
        head_part: int,
        whole_feature: str | None,
        embed_dim: int = 256,
        part_reduction: int = 2,
        sfa: bool = True,
        split: Sequence[float] = BODY_PROPORTIONS,
        mask_threshold: float = 0.5,
        lam: float = 0.8,
        se_weight: float = 1.0,
        sga_cls_weight: float = 1.0,
        dcls_samples: int = 0,
        ce_epsilon: float = 0.1,
        triplet_margin: float = 0.3,
        triplet_distance: str = "euclidean",
        neck_feat: str = "after",
    ):
        """
        Args:
            in_feature: backbone output holding F (e.g. "res5").
            in_channels: its channels C.
            num_classes: training identities K.
            num_parts: P part attentions (the part groups of the masks, in order).
            head_part: index of the head part (its mask gives the head top for SFA).
            whole_feature: backbone output with the whole-body attention logits, or None
                (no whole-body attention: its mask loss is left out).
            embed_dim: D of every branch.
            part_reduction: gamma_1 of the shared part-attention conv.
            sfa: use the SFA branch (False: the "w/o SFA" ablation).
            split: body proportions (top, middle, bottom).
            mask_threshold: value above which a learned mask cell is set.
            lam: lambda of eq. 11.
            se_weight: weight of L_se inside the lambda group (1 = eq. 11).
            sga_cls_weight: weight of the SGA branches' CE inside the lambda group.
            dcls_samples: regions drawn per image for L_dcls (0 = all chosen).
            ce_epsilon: label smoothing of every CE.
            triplet_margin, triplet_distance: batch-hard triplet on the global branch.
            neck_feat: inference features "after" or "before" the branches' BatchNorm.
        """
        super().__init__()
        if not 0 <= head_part < num_parts:
            raise ValueError(f"head part index {head_part} not in [0, {num_parts})")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"MODEL.SGSFA.LAMBDA must be in [0, 1], got {lam}")
        if triplet_distance not in DISTANCES:
            raise ValueError(f"triplet distance must be one of {DISTANCES}: {triplet_distance!r}")
        if neck_feat not in ("after", "before"):
            raise ValueError(f"neck_feat must be 'after' or 'before', got {neck_feat!r}")
        if dcls_samples < 0:
            raise ValueError(f"MODEL.SGSFA.DCLS_SAMPLES must be >= 0, got {dcls_samples}")
        split_rows(torch.zeros(1, dtype=torch.long), 3, split)  # validates the proportions
        self.in_feature = in_feature
        self.num_parts = num_parts
        self.head_part = head_part
        self.whole_feature = whole_feature
        self.use_sfa = sfa
        self.split = tuple(split)
        self.mask_threshold = mask_threshold
        self.lam = lam
        self.se_weight = se_weight
        self.sga_cls_weight = sga_cls_weight
        self.dcls_samples = dcls_samples
        self.ce_epsilon = ce_epsilon
        self.triplet_margin = triplet_margin
        self.triplet_distance = triplet_distance
        self.neck_feat = neck_feat

        self.part_attention = PartAttention(in_channels, num_parts, part_reduction)
        # branch 0 global, 1..P parts
        self.sga_embed = nn.ModuleList(
            BranchEmbedding(in_channels, embed_dim) for _ in range(1 + num_parts)
        )
        self.sga_necks = nn.ModuleList(
            _NeckClassifier(embed_dim, num_classes) for _ in range(1 + num_parts)
        )
        if sfa:
            self.sfa_embed = BranchEmbedding(in_channels, embed_dim)
            self.sfa_necks = nn.ModuleList(_NeckClassifier(embed_dim, num_classes) for _ in REGIONS)

    @classmethod
    def from_config(
        cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec], backbone: nn.Module | None = None
    ) -> dict:
        """``backbone`` (given by builders that pass it) is not needed: the whole-body
        attention lives in the backbone and reaches the head as a feature."""
        scfg, lcfg = cfg.MODEL.SGSFA, cfg.MODEL.REID.LOSS
        in_feature = cfg.MODEL.REID.HEAD.IN_FEATURE
        if in_feature not in input_shape:
            raise ValueError(
                f"MODEL.REID.HEAD.IN_FEATURE={in_feature!r} is not a backbone output; "
                f"available: {sorted(input_shape)}"
            )
        names = tuple(cfg.INPUT.REID.PARSING_PART_NAMES)
        if not names or len(names) != len(cfg.INPUT.REID.PARSING_GROUPS):
            raise ValueError(
                "SGSFAHead needs part masks: INPUT.REID.PARSING_PART_NAMES and PARSING_GROUPS "
                f"must name the same non-empty groups, got {names} and "
                f"{len(cfg.INPUT.REID.PARSING_GROUPS)} groups (see configs/Base-SGSFA.yaml)"
            )
        if scfg.HEAD_PART not in names:
            raise ValueError(
                f"MODEL.SGSFA.HEAD_PART={scfg.HEAD_PART!r} is not among "
                f"INPUT.REID.PARSING_PART_NAMES {names}"
            )
        if scfg.WHOLE_ATTENTION and WHOLE_BODY_LOGITS not in input_shape:
            raise ValueError(
                "MODEL.SGSFA.WHOLE_ATTENTION is True but the backbone "
                f"(MODEL.BACKBONE.NAME={cfg.MODEL.BACKBONE.NAME!r}) has no "
                f"{WHOLE_BODY_LOGITS!r} output; use 'build_sgsfa_resnet_backbone'"
            )
        return {
            "in_feature": in_feature,
            "in_channels": input_shape[in_feature].channels,
            "num_classes": resolve_num_classes(cfg),
            "num_parts": len(names),
            "head_part": names.index(scfg.HEAD_PART),
            "whole_feature": WHOLE_BODY_LOGITS if scfg.WHOLE_ATTENTION else None,
            "embed_dim": scfg.EMBED_DIM,
            "part_reduction": scfg.PART_REDUCTION,
            "sfa": scfg.SFA,
            "split": tuple(scfg.SPLIT),
            "mask_threshold": scfg.MASK_THRESHOLD,
            "lam": scfg.LAMBDA,
            "se_weight": scfg.SE_WEIGHT,
            "sga_cls_weight": scfg.SGA_CLS_WEIGHT,
            "dcls_samples": scfg.DCLS_SAMPLES,
            "ce_epsilon": lcfg.CE_EPSILON,
            "triplet_margin": lcfg.TRIPLET_MARGIN,
            "triplet_distance": lcfg.TRIPLET_DISTANCE,
            "neck_feat": cfg.MODEL.REID.HEAD.NECK_FEAT,
        }

    def forward(
        self, features: dict[str, torch.Tensor], targets: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            features: backbone outputs: ``in_feature`` (N, C, H, W) and, with the whole-body
                attention, its logits (N, 1, H', W').
            targets: training only: {"person_id": (N,) int64, "part_masks": (N, 1 + P, Hi, Wi)
                whole body then the P parts, -1-filled for images without a parsing map}.

        Returns:
            training: {"loss_triplet", "loss_se", "loss_sga_cls", "loss_dcls"} weighted by
            lambda / 1 - lambda (eq. 11; "loss_dcls" only with SFA); inference: see the class.
        """
        fmap = features[self.in_feature]
        part_logits = self.part_attention(fmap)
        part_masks = torch.sigmoid(part_logits)
        sga = torch.stack(
            [self.sga_embed[0](fmap)]
            + [
                self.sga_embed[1 + p](fmap * part_masks[:, p : p + 1])
                for p in range(self.num_parts)
            ],
            dim=1,
        )  # (N, 1 + P, D)
        set_cells = (part_masks > self.mask_threshold).to(fmap.dtype).detach()
        part_score = set_cells.mean(dim=(2, 3))  # (N, P)
        regions = bounds = region_score = None
        if self.use_sfa:
            top, _ = find_head_top(part_masks[:, self.head_part].detach(), self.mask_threshold)
            bounds = split_rows(top, fmap.shape[2], self.split)
            rows = region_rows(bounds, fmap.shape[2])
            regions = region_pool(self.sfa_embed.conv(fmap), rows)  # (N, 5, D)
            body = set_cells.amax(dim=1)  # (N, H, W): cells covered by any part
            region_score = region_fraction(body, rows)  # (N, 5)

        if not self.training:
            return self._inference_outputs(
                features, sga, part_score, part_masks, regions, region_score, bounds
            )
        return self._losses(features, targets, sga, part_logits, part_score, regions, region_score)

    def _inference_outputs(
        self, features, sga, part_score, part_masks, regions, region_score, bounds
    ) -> dict[str, torch.Tensor]:
        branches, scores = sga, part_score
        normed = _necks(sga, self.sga_necks)
        out = {"part_masks": part_masks}
        if self.use_sfa:
            blocks = regions[:, :_MATCHED_REGIONS]
            branches = torch.cat([sga, blocks], dim=1)
            normed = torch.cat([normed, _necks(blocks, self.sfa_necks[:_MATCHED_REGIONS])], dim=1)
            scores = torch.cat([part_score, region_score[:, :_MATCHED_REGIONS]], dim=1)
            out["region_bounds"] = bounds
        chosen = normed if self.neck_feat == "after" else branches
        out.update(
            features=chosen.flatten(1),
            part_features=chosen[:, 1:],
            part_visibility=scores,
        )
        if self.whole_feature is not None:
            out["whole_body_mask"] = torch.sigmoid(features[self.whole_feature])
        return out

    def _losses(
        self, features, targets, sga, part_logits, part_score, regions, region_score
    ) -> dict[str, torch.Tensor]:
        person_ids, masks = self._check_targets(targets)
        # images whose parsing map is known; the others get no mask losses
        valid = (masks >= 0).flatten(1).all(dim=1)
        loss_se = mask_loss(part_logits, masks[:, 1:], valid)
        if self.whole_feature is not None:
            loss_se = loss_se + mask_loss(features[self.whole_feature], masks[:, :1], valid)

        normed = _necks(sga, self.sga_necks)
        logits = _logits(normed, self.sga_necks)  # (N, 1 + P, K)
        # a part takes part in its CE where it is visible: in the image's parsing map when it
        # has one (any pixel), else in the learned mask (any set cell)
        part_visible = torch.where(
            valid[:, None], masks[:, 1:].flatten(2).amax(dim=2) > 0, part_score > 0
        )
        cls = cross_entropy_label_smooth(logits[:, 0], person_ids, self.ce_epsilon)
        for p in range(self.num_parts):
            if bool(part_visible[:, p].any()):
                seen = part_visible[:, p]
                cls = cls + cross_entropy_label_smooth(
                    logits[seen, 1 + p], person_ids[seen], self.ce_epsilon
                )
        triplet = batch_hard_triplet_loss(
            sga[:, 0], person_ids, margin=self.triplet_margin, metric=self.triplet_distance
        )
        losses = {
            "loss_triplet": self.lam * triplet,
            "loss_se": self.lam * self.se_weight * loss_se,
            "loss_sga_cls": self.lam * self.sga_cls_weight * cls,
        }
        if self.use_sfa:
            visible = region_score[:, :_MATCHED_REGIONS] > 0  # eq. 2: "not all 0"
            chosen = sample_regions(choose_regions(visible), self.dcls_samples)
            region_logits = _logits(_necks(regions, self.sfa_necks), self.sfa_necks)
            losses["loss_dcls"] = (1.0 - self.lam) * dynamic_classification_loss(
                region_logits, person_ids, chosen, self.ce_epsilon
            )
        return losses

    def _check_targets(self, targets) -> tuple[torch.Tensor, torch.Tensor]:
        if targets is None or "person_id" not in targets:
            raise ValueError("SGSFAHead needs targets['person_id'] in training")
        if "part_masks" not in targets:
            raise ValueError(
                "SGSFAHead needs targets['part_masks'] in training: set INPUT.REID.LOAD_PARSING "
                "True and INPUT.REID.PARSING_GROUPS (configs/Base-SGSFA.yaml), and give every "
                "training image a parsing map or INPUT.REID.ALLOW_MISSING_PARSING True"
            )
        masks = targets["part_masks"]
        if masks.dim() != 4 or masks.shape[1] != 1 + self.num_parts:
            raise ValueError(
                f"targets['part_masks'] must be (N, 1 + {self.num_parts}, H, W) (whole body + "
                f"the parts of INPUT.REID.PARSING_GROUPS), got {tuple(masks.shape)}"
            )
        person_ids = targets["person_id"]
        num_classes = self.sga_necks[0].fc.out_features
        if person_ids.numel() and not 0 <= int(person_ids.min()) <= int(person_ids.max()) < (
            num_classes
        ):
            raise ValueError(
                f"training person_id values must be in [0, {num_classes}), got range "
                f"[{int(person_ids.min())}, {int(person_ids.max())}]"
            )
        return person_ids, masks
