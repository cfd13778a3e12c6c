"""The losses every re-id head of the library computes the same way, shared by the baseline's
BNNeck head and the projects' heads (PAN): a label-smoothed identity cross-entropy and a
batch-hard triplet loss with their weights (``MODEL.REID.LOSS.*``), and the check of the
training identities."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from detectron2.config import CfgNode

from ..losses.reid_losses import DISTANCES, batch_hard_triplet_loss, cross_entropy_label_smooth

__all__ = ["ReIDLossTerms", "training_person_ids"]


@dataclass(frozen=True)
class ReIDLossTerms:
    """Weights and forms of the identity and triplet losses (``MODEL.REID.LOSS``).

    Attributes:
        ce_weight, ce_epsilon: weight (0 = off) and label smoothing of the identity loss.
        triplet_weight, triplet_margin, triplet_soft_margin, triplet_distance: weight
            (0 = off), hinge margin, soft margin instead of the hinge, and distance
            ("euclidean" or "cosine") of the batch-hard triplet loss.
    """

    ce_weight: float = 1.0
    ce_epsilon: float = 0.1
    triplet_weight: float = 1.0
    triplet_margin: float = 0.3
    triplet_soft_margin: bool = False
    triplet_distance: str = "euclidean"

    def __post_init__(self):
        if self.triplet_distance not in DISTANCES:
            raise ValueError(
                f"triplet distance must be one of {DISTANCES}: {self.triplet_distance!r}"
            )
        if self.ce_weight < 0 or self.triplet_weight < 0:
            raise ValueError(
                f"re-id loss weights must be >= 0, got CE {self.ce_weight}, triplet "
                f"{self.triplet_weight}"
            )

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ReIDLossTerms:
        lcfg = cfg.MODEL.REID.LOSS
        return cls(
            ce_weight=lcfg.CE_WEIGHT,
            ce_epsilon=lcfg.CE_EPSILON,
            triplet_weight=lcfg.TRIPLET_WEIGHT,
            triplet_margin=lcfg.TRIPLET_MARGIN,
            triplet_soft_margin=lcfg.TRIPLET_SOFT_MARGIN,
            triplet_distance=lcfg.TRIPLET_DISTANCE,
        )

    def as_kwargs(self) -> dict:
        """The fields as keyword arguments (for heads that take them one by one)."""
        return asdict(self)

    def identity(self, logits: torch.Tensor, person_ids: torch.Tensor) -> torch.Tensor:
        """``ce_weight`` x label-smoothed CE of (N, K) ``logits`` against (N,) ids."""
        return self.ce_weight * cross_entropy_label_smooth(logits, person_ids, self.ce_epsilon)

    def triplet(self, embeddings: torch.Tensor, person_ids: torch.Tensor) -> torch.Tensor:
        """``triplet_weight`` x batch-hard triplet loss of (N, D) ``embeddings``."""
        return self.triplet_weight * batch_hard_triplet_loss(
            embeddings,
            person_ids,
            margin=self.triplet_margin,
            soft_margin=self.triplet_soft_margin,
            metric=self.triplet_distance,
        )


def training_person_ids(
    targets: dict[str, torch.Tensor] | None, num_classes: int, head: str
) -> torch.Tensor:
    """``targets["person_id"]`` (N,) int64, checked to exist and to lie in [0, num_classes)
    (the classifier's classes); ``head`` names the caller in the errors."""
    if targets is None or "person_id" not in targets:
        raise ValueError(f"{head} needs targets['person_id'] in training")
    person_ids = targets["person_id"]
    if person_ids.numel() and not 0 <= int(person_ids.min()) <= int(person_ids.max()) < (
        num_classes
    ):
        raise ValueError(
            f"training person_id values must be in [0, {num_classes}) (the classifier's "
            f"classes), got range [{int(person_ids.min())}, {int(person_ids.max())}]"
        )
    return person_ids
