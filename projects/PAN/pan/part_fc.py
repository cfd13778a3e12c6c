"""PAN's local FC: one linear map shared by all parts (or one per part, the ablation), and the
global-local balance ratio gamma."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PartFC", "global_local_ratio"]


def global_local_ratio(num_parts: int, local_dim: int, global_dim: int) -> float:
    """gamma = N_l / N_g = p * n_l / N_g (eq. 4): the local share of the embedding relative to
    the global one. Paper: p = 14, n_l = 256, N_g = 512 -> 7."""
    if min(num_parts, local_dim, global_dim) < 1:
        raise ValueError(
            f"gamma needs p, n_l, N_g >= 1, got {num_parts}, {local_dim}, {global_dim}"
        )
    return num_parts * local_dim / global_dim


class PartFC(nn.Module):
    """Linear map of each part's feature, C -> n_l.

    ``shared=True`` (PAN): one ``nn.Linear`` applied to every part, so parts differ only by
    their masks. ``shared=False`` (Table 2 ablation): p independent linear maps, p times the
    parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, num_parts: int, *, shared: bool):
        super().__init__()
        if min(in_channels, out_channels, num_parts) < 1:
            raise ValueError(
                f"PartFC needs positive sizes, got C={in_channels}, n_l={out_channels}, "
                f"p={num_parts}"
            )
        self.shared = shared
        self.num_parts = num_parts
        if shared:
            self.fc = nn.Linear(in_channels, out_channels)
        else:
            # p copies of nn.Linear's default initialisation
            bound = 1.0 / math.sqrt(in_channels)
            self.weight = nn.Parameter(
                torch.empty(num_parts, out_channels, in_channels).uniform_(-bound, bound)
            )
            self.bias = nn.Parameter(torch.empty(num_parts, out_channels).uniform_(-bound, bound))

    def forward(self, parts: torch.Tensor) -> torch.Tensor:
        """parts: (N, p, C) -> (N, p, n_l)."""
        if parts.dim() != 3 or parts.shape[1] != self.num_parts:
            raise ValueError(f"PartFC expects (N, {self.num_parts}, C), got {tuple(parts.shape)}")
        if self.shared:
            return self.fc(parts)
        return torch.einsum("npc,pdc->npd", parts, self.weight) + self.bias

    def extra_repr(self) -> str:
        return f"num_parts={self.num_parts}, shared={self.shared}"
