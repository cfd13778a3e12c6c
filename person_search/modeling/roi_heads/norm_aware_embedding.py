"""Norm-Aware Embedding (NAE; Chen et al., "Norm-Aware Embedding for Efficient Person Search",
CVPR 2020), as used by SeqNet's second head.

One projected vector per RoI is split into its norm and its direction: the direction
(L2-normalised vector) is the re-id embedding, the norm decides person vs background.
The norm goes through a one-channel BatchNorm (the "rescaler": ``(n - mu) / sqrt(var + eps)
* w + b``) giving a logit, and ``sigmoid(logit)`` is the person score; training applies binary
cross-entropy to the logit. Several pooled inputs (SeqNet: the pooled res4 RoI features and
the pooled output of the head stage) are each projected (Linear + BatchNorm1d) to a slice of
the embedding and concatenated before the split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

__all__ = ["NormAwareEmbedding", "split_embedding_dim"]

# Std of the normal init of projection weights and BN scales (NAE / SeqNet: 0.01).
_INIT_STD = 0.01
# Floor of the norm when normalising (avoids 0/0 for an all-zero projection).
_MIN_NORM = 1e-12


def split_embedding_dim(dim: int, parts: int) -> list[int]:
    """Split ``dim`` into ``parts`` near-equal sizes, the remainder going to the last ones."""
    if parts <= 0 or dim < parts:
        raise ValueError(f"cannot split an embedding of {dim} into {parts} parts")
    sizes = [dim // parts] * parts
    for i in range(dim % parts):
        sizes[-1 - i] += 1
    return sizes


class NormAwareEmbedding(nn.Module):
    """Projections of pooled RoI features -> (L2-normalised embedding, person logit)."""

    @configurable
    def __init__(self, *, in_channels: Sequence[int], embedding_dim: int):
        """
        Args:
            in_channels: sizes C_i of the pooled inputs, in the order they are passed.
            embedding_dim: D, total embedding size (split over the inputs).
        """
        super().__init__()
        self.embedding_dim = embedding_dim
        self.projectors = nn.ModuleList()
        for c, d in zip(in_channels, split_embedding_dim(embedding_dim, len(in_channels))):
            linear, bn = nn.Linear(c, d), nn.BatchNorm1d(d)
            nn.init.normal_(linear.weight, std=_INIT_STD)
            nn.init.zeros_(linear.bias)
            nn.init.normal_(bn.weight, std=_INIT_STD)
            nn.init.zeros_(bn.bias)
            self.projectors.append(nn.Sequential(linear, bn))
        self.rescaler = nn.BatchNorm1d(1)

    @classmethod
    def from_config(cls, cfg, in_channels: Sequence[int]):
        return {
            "in_channels": list(in_channels),
            "embedding_dim": cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM,
        }

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            features: one (M, C_i) tensor per input.

        Returns:
            embeddings: (M, D) float32, L2-normalised.
            logits: (M,) person logits; ``sigmoid(logits)`` is the person score.
        """
        if len(features) != len(self.projectors):
            raise ValueError(f"expected {len(self.projectors)} inputs, got {len(features)}")
        m = features[0].shape[0]
        if m == 0:
            ref = features[0]
            return ref.new_zeros((0, self.embedding_dim), dtype=torch.float32), ref.new_zeros(0)
        projected = torch.cat([p(f) for p, f in zip(self.projectors, features)], dim=1).float()
        norms = projected.norm(dim=1, keepdim=True)  # (M, 1)
        embeddings = projected / norms.clamp(min=_MIN_NORM)
        logits = self.rescaler(norms).squeeze(1)
        return embeddings, logits

    @staticmethod
    def scores(logits: torch.Tensor) -> torch.Tensor:
        """Person scores in [0, 1] of (M,) logits."""
        return torch.sigmoid(logits)

    @staticmethod
    def classification_loss(logits: torch.Tensor, is_person: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy of (M,) logits against (M,) bool person labels."""
        if logits.numel() == 0:
            return logits.sum()
        return F.binary_cross_entropy_with_logits(logits, is_person.to(logits.dtype))
