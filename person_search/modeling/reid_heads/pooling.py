"""Global pooling of feature maps: average, max, or generalised mean (GeM)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["POOLINGS", "GlobalPool"]

POOLINGS = ("avg", "max", "gem")
# Lower bound of activations before GeM's power (x^p needs x > 0).
_GEM_EPS = 1e-6


class GlobalPool(nn.Module):
    """Pool (N, C, H, W) maps to (N, C) vectors.

    "gem" is Radenovic et al.'s generalised mean ``(mean(x^p))^(1/p)`` (p = 1 average,
    p -> inf max), computed in float32, with p optionally learnt.
    """

    def __init__(self, kind: str = "avg", *, gem_p: float = 3.0, gem_learn_p: bool = True):
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"unknown pooling {kind!r}; expected one of {POOLINGS}")
        if kind == "gem" and gem_p <= 0:
            raise ValueError(f"GeM exponent must be > 0, got {gem_p}")
        self.kind = kind
        if kind == "gem":
            self.p = nn.Parameter(torch.tensor(float(gem_p)), requires_grad=gem_learn_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> (N, C)."""
        if self.kind == "avg":
            return x.mean(dim=(2, 3))
        if self.kind == "max":
            return x.amax(dim=(2, 3))
        p = self.p.float()
        pooled = x.float().clamp(min=_GEM_EPS).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
        return pooled.to(x.dtype)

    def extra_repr(self) -> str:
        return f"kind={self.kind}"
