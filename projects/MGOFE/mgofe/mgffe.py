"""MGFFE, multi-granularity feature fusion enhancement: each person feature attends to its
virtual features (the same box in the occluded copies) and adds what it reads.

    q = p W_q,  k_j = g_j W_k,  v_j = g_j W_v       (p, g_j: (C,); q, k_j: (d,); v_j: (C,))
    w_j = softmax_j(q . k_j / sqrt(d))              (over the m virtual features)
    p'  = p + sum_j w_j v_j
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MGFFE"]


class MGFFE(nn.Module):
    """Attention of real features over their virtual features, added residually.

    The projections have no bias (``Q = p W_q`` as the paper writes them). ``W_v`` starts at
    zero (ours), so that an untrained MGFFE is the identity and training starts from the
    baseline's features.
    """

    def __init__(self, in_dim: int, attn_dim: int = 0):
        """
        Args:
            in_dim: C, the size of the real and virtual features.
            attn_dim: d, the size of queries and keys (0 = C).
        """
        super().__init__()
        if in_dim < 1 or attn_dim < 0:
            raise ValueError(f"MGFFE needs in_dim >= 1 and attn_dim >= 0, got {in_dim}, {attn_dim}")
        self.in_dim = in_dim
        self.attn_dim = attn_dim or in_dim
        self.query = nn.Linear(in_dim, self.attn_dim, bias=False)
        self.key = nn.Linear(in_dim, self.attn_dim, bias=False)
        self.value = nn.Linear(in_dim, in_dim, bias=False)
        nn.init.zeros_(self.value.weight)

    def attention(self, real: torch.Tensor, virtual: torch.Tensor) -> torch.Tensor:
        """(M, C) real and (M, m, C) virtual features -> (M, m) weights (softmax over m)."""
        q = self.query(real)  # (M, d)
        k = self.key(virtual)  # (M, m, d)
        logits = torch.einsum("md,mjd->mj", q, k) / math.sqrt(self.attn_dim)
        return logits.softmax(dim=1)

    def forward(self, real: torch.Tensor, virtual: torch.Tensor) -> torch.Tensor:
        """
        Args:
            real: (M, C) features p of the RoIs in the original image.
            virtual: (M, m, C) features g_j of the same RoIs in the m occluded copies.

        Returns:
            (M, C) enhanced features p'.
        """
        if real.dim() != 2 or virtual.dim() != 3 or virtual.shape[::2] != real.shape:
            raise ValueError(
                f"MGFFE expects real (M, C) and virtual (M, m, C), got {tuple(real.shape)} and "
                f"{tuple(virtual.shape)}"
            )
        weights = self.attention(real, virtual)
        return real + torch.einsum("mj,mjc->mc", weights, self.value(virtual))
