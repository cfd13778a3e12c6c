"""PAN's weighted part pooling (eq. 3 of the paper), for masks of any sign."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["WeightedPartPooling", "weighted_part_pooling"]


def weighted_part_pooling(
    features: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Pool one feature vector per mask: ``f_i = sum_hw(F * m_i) / max(sum_hw |m_i|, eps)``.

    The masks are not probabilities (PAN applies no softmax): their values may be negative, so
    the denominator sums absolute values (the sum of a mask may be zero); ``eps`` guards a mask
    that is zero everywhere, which pools to zero. Computed in float32 (safe under AMP).

    Args:
        features: (N, C, H, W) feature map F2.
        masks: (N, P, H, W) masks m_1..m_P on the same grid.
        eps: smallest denominator (> 0).

    Returns:
        (N, P, C) local features, in ``features``' dtype.
    """
    if features.dim() != 4 or masks.dim() != 4:
        raise ValueError(
            f"weighted_part_pooling needs (N, C, H, W) features and (N, P, H, W) masks, got "
            f"{tuple(features.shape)} and {tuple(masks.shape)}"
        )
    if features.shape[0] != masks.shape[0] or features.shape[2:] != masks.shape[2:]:
        raise ValueError(
            f"features {tuple(features.shape)} and masks {tuple(masks.shape)} differ in batch "
            "size or spatial size"
        )
    if eps <= 0:
        raise ValueError(f"weighted pooling eps must be > 0, got {eps}")
    f, m = features.float(), masks.float()
    numerator = torch.einsum("nchw,nphw->npc", f, m)
    denominator = m.abs().sum(dim=(2, 3)).clamp_min(eps).unsqueeze(-1)
    return (numerator / denominator).to(features.dtype)


class WeightedPartPooling(nn.Module):
    """:func:`weighted_part_pooling` as a module (``eps`` = ``MODEL.PAN.POOLING_EPS``)."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        if eps <= 0:
            raise ValueError(f"MODEL.PAN.POOLING_EPS must be > 0, got {eps}")
        self.eps = eps

    def forward(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """features: (N, C, H, W), masks: (N, P, H, W) -> (N, P, C)."""
        return weighted_part_pooling(features, masks, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
