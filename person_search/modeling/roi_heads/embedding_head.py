"""Re-id embedding projection of pooled RoI features (OIM: 2048 -> 256, L2-normalised)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

__all__ = ["EmbeddingHead"]


class EmbeddingHead(nn.Module):
    """Linear projection (+ optional BatchNorm1d) followed by L2 normalisation."""

    @configurable
    def __init__(self, *, in_channels: int, embedding_dim: int, use_norm: bool = True):
        """
        Args:
            in_channels: C, size of the pooled RoI feature vector.
            embedding_dim: D, size of the embedding.
            use_norm: add BatchNorm1d after the projection (statistics over all RoIs of the
                batch in training, running statistics at inference).
        """
        super().__init__()
        self.projection = nn.Linear(in_channels, embedding_dim)
        self.norm = nn.BatchNorm1d(embedding_dim) if use_norm else nn.Identity()
        self.embedding_dim = embedding_dim
        nn.init.normal_(self.projection.weight, std=0.01)
        nn.init.zeros_(self.projection.bias)

    @classmethod
    def from_config(cls, cfg, in_channels: int):
        return {
            "in_channels": in_channels,
            "embedding_dim": cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM,
            "use_norm": cfg.MODEL.PERSON_SEARCH.EMBEDDING_NORM,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (M, C) pooled RoI features -> (M, D) L2-normalised embeddings (float32)."""
        if x.shape[0] == 0:
            return x.new_zeros((0, self.embedding_dim), dtype=torch.float32)
        y = self.norm(self.projection(x))
        return F.normalize(y.float(), dim=1)
