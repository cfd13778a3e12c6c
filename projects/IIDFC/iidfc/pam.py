"""Pedestrian Attention Module (PAM), IIDFC section 3.2, eq. 5-7 and Fig. 4.

For a feature map F (R, C, H, W):

    D   = [avg_c(F); max_c(F)]                        (R, 2, H, W)  channel-wise pooling
    C_i = ReLU(conv3x3_{dilation d_i}(D; W))           d_i = 1, 2, 3, ONE weight W for all
    S   = SE([C_1; C_2; C_3])                          squeeze-and-excitation over the branches
    M   = sigmoid(conv1x1(S))                          (R, 1, H, W) attention map in (0, 1)
    F'  = M * F

The three dilated convolutions share their weight (and bias): the module holds one 3x3
convolution's parameters, applied with each dilation (padding = dilation keeps H x W). The SE
is timm's ``SEModule``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import SEModule
from torch import nn

__all__ = ["PedestrianAttention"]

# Channels of the pooled descriptor: channel-wise average and maximum.
_DESCRIPTOR_CHANNELS = 2
# Kernel size of the shared dilated convolution (paper: 3x3).
_KERNEL_SIZE = 3


class PedestrianAttention(nn.Module):
    """PAM: ``forward`` (R, C, H, W) -> (R, C, H, W), the input times a spatial map in (0, 1).

    Attributes:
        shared_conv: the one 3x3 convolution (2 -> ``branch_channels``) of all dilations.
        se: SE over the ``len(dilations) * branch_channels`` concatenated branch maps.
        fuse: 1x1 convolution of those to the one-channel map.
    """

    def __init__(
        self,
        *,
        dilations: tuple[int, ...] = (1, 2, 3),
        branch_channels: int = 1,
        se_reduction: int = 1,
    ):
        """
        Args:
            dilations: dilation of each branch of the shared 3x3 convolution (paper: 1, 2, 3).
            branch_channels: output channels of the shared convolution.
            se_reduction: the SE's hidden size is ``max(1, branches // se_reduction)``.
        """
        super().__init__()
        dilations = tuple(int(d) for d in dilations)
        if not dilations or min(dilations) < 1:
            raise ValueError(f"MODEL.IIDFC.PAM.DILATIONS must be >= 1 each, got {dilations}")
        if branch_channels < 1:
            raise ValueError(f"MODEL.IIDFC.PAM.BRANCH_CHANNELS must be >= 1, got {branch_channels}")
        if se_reduction < 1:
            raise ValueError(f"MODEL.IIDFC.PAM.SE_REDUCTION must be >= 1, got {se_reduction}")
        self.dilations = dilations
        self.shared_conv = nn.Conv2d(_DESCRIPTOR_CHANNELS, branch_channels, _KERNEL_SIZE)
        branches = len(dilations) * branch_channels
        self.se = SEModule(branches, rd_channels=max(1, branches // se_reduction))
        self.fuse = nn.Conv2d(branches, 1, 1)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(R, C, H, W) -> one (R, branch_channels, H, W) ReLU map per dilation (eq. 7)."""
        descriptor = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        weight, bias = self.shared_conv.weight, self.shared_conv.bias
        return [
            F.relu(F.conv2d(descriptor, weight, bias, padding=d, dilation=d))
            for d in self.dilations
        ]

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """(R, C, H, W) -> (R, 1, H, W) M_p(F) in (0, 1) (eq. 6)."""
        return torch.sigmoid(self.fuse(self.se(torch.cat(self.branches(x), dim=1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(R, C, H, W) -> M_p(F) * F, (R, C, H, W) (eq. 5)."""
        return x * self.attention_map(x)

    def extra_repr(self) -> str:
        return f"dilations={self.dilations}"
