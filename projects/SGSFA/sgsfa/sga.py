"""Semantic-guided alignment (SGA): the attention modules and their mask loss (SGSFA Sec. 3.1).

* :class:`WholeBodyAttention` (paper Fig. 3): after stage 1, a spatial map (supervised by the
  whole-body mask, 64x32 for a 256x128 input) and channel weights, both with reduction
  ``gamma = 8``; the stage-1 features are multiplied by both.
* :class:`PartAttention` (paper Fig. 4): after stage 4, one 1x1 conv with reduction
  ``gamma_1 = 2`` shared by the P parts (head, upper body, lower body, shoes), then one 1x1 conv
  per part to its map (16x8, supervised by the grouped part mask).
* :class:`BranchEmbedding`: the conv and global pooling after each attention -> a 256-d vector.
* :func:`mask_loss`: per-pixel BCE of attention logits against masks resized to their size.

The figures are not in the text we have: "spatial + channel" is our reading of Fig. 3's caption
(blue box spatial, green box channel), written as CBAM-like squeeze-excite branches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BranchEmbedding", "PartAttention", "WholeBodyAttention", "mask_loss"]


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class WholeBodyAttention(nn.Module):
    """Spatial and channel attention on stage-1 features.

    Spatial: 1x1 conv C -> C/gamma, BN, ReLU, 3x3 conv -> 1 logit map. Channel: global average
    pooling, 1x1 conv C -> C/gamma, ReLU, 1x1 conv -> C, sigmoid. Output ``x * sigmoid(spatial)
    * channel`` (``f'(x) = f(x) . M'``).
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        if reduction < 1:
            raise ValueError(f"MODEL.SGSFA.WHOLE_REDUCTION must be >= 1, got {reduction}")
        hidden = max(channels // reduction, 1)
        self.spatial = nn.Sequential(
            _conv_bn_relu(channels, hidden), nn.Conv2d(hidden, 1, 3, padding=1)
        )
        self.channel = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, C, H, W) -> (attended (N, C, H, W), spatial logits (N, 1, H, W))."""
        logits = self.spatial(x)
        return x * torch.sigmoid(logits) * self.channel(x), logits


class PartAttention(nn.Module):
    """P part maps from stage-4 features: a shared 1x1 conv C -> C/gamma_1 (BN, ReLU), then one
    1x1 conv per part to a logit map."""

    def __init__(self, channels: int, num_parts: int, reduction: int = 2):
        super().__init__()
        if reduction < 1 or num_parts < 1:
            raise ValueError(
                f"part attention needs num_parts >= 1 and MODEL.SGSFA.PART_REDUCTION >= 1, got "
                f"{num_parts} and {reduction}"
            )
        hidden = max(channels // reduction, 1)
        self.shared = _conv_bn_relu(channels, hidden)
        # one output channel per part = P separate 1x1 convs on the shared features
        self.parts = nn.Conv2d(hidden, num_parts, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> part logits (N, P, H, W)."""
        return self.parts(self.shared(x))


class BranchEmbedding(nn.Module):
    """1x1 conv C -> D, BN, ReLU (``conv``), then global average pooling."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.conv = _conv_bn_relu(in_channels, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> (N, D)."""
        return self.conv(x).mean(dim=(2, 3))


def mask_loss(logits: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-pixel BCE of attention logits against binary masks of any resolution (paper eq. 8).

    Masks are resized to the logits' size by max pooling: a cell's target is 1 when the part
    covers any of it (our reading; the text only says "resized to 64x32 / 16x8"). Area
    averaging would give a head or shoes a target below 0.5 in every cell of a 16x8 map, so a
    learned mask would never mark them set (head top, visibility).

    Args:
        logits: (N, P, h, w) attention logits.
        masks: (N, P, H, W) binary targets (rows of images without masks arbitrary).
        valid: (N,) bool, images whose masks are known (the others are left out).

    Returns:
        scalar: the mean over valid images and cells of the P maps' BCE summed over P (eq. 9
        sums the per-part losses); 0, still connected to the graph, without a valid image.
    """
    if not bool(valid.any()):
        return logits.sum() * 0.0
    targets = F.adaptive_max_pool2d(masks[valid].float(), logits.shape[-2:])
    bce = F.binary_cross_entropy_with_logits(logits[valid].float(), targets, reduction="none")
    return bce.mean(dim=(0, 2, 3)).sum()
