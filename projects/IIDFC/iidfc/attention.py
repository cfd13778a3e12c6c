"""Attention modules on the RoI maps of the head stage, selected by
``MODEL.IIDFC.ATTENTION.NAME``: IIDFC's PAM and the alternatives of its Table VII.

| name | module |
|---|---|
| ``"PAM"`` | :class:`~iidfc.pam.PedestrianAttention` (the paper's) |
| ``"SA"`` | CBAM's spatial attention (Woo et al.): [avg_c; max_c] -> k x k conv, BN, sigmoid |
| ``"CBAM"`` | CBAM: channel attention (shared MLP on avg / max pooled vectors) then SA |
| ``"NonLocal"`` | embedded-Gaussian non-local block (Wang et al.), residual, last BN zero-init |
| ``"none"`` | identity (no parameters): Table V before "+PAM" |

SA, CBAM and the non-local block are timm's (``timm.layers``).
"""

from __future__ import annotations

from detectron2.utils.registry import Registry
from timm.layers.cbam import CbamModule, SpatialAttn
from timm.layers.non_local_attn import NonLocalAttn
from torch import nn

from .pam import PedestrianAttention

__all__ = ["ROI_ATTENTION_REGISTRY", "build_roi_attention"]

ROI_ATTENTION_REGISTRY = Registry("ROI_ATTENTION")
ROI_ATTENTION_REGISTRY.__doc__ = """
Attention on the head-stage RoI maps of IIDFC's RoI heads. The registered object is called
with ``obj(cfg, channels)`` (``channels``: C of the RoI maps) and returns an ``nn.Module``
mapping (R, C, H, W) to (R, C, H, W). The registered name is the builder's (``PAM``, ``SA``,
``CBAM``, ``NonLocal``, ``none``).
"""


@ROI_ATTENTION_REGISTRY.register()
def none(cfg, channels: int) -> nn.Module:
    """No attention (the identity)."""
    del cfg, channels
    return nn.Identity()


@ROI_ATTENTION_REGISTRY.register()
def PAM(cfg, channels: int) -> nn.Module:
    """:class:`PedestrianAttention` from ``MODEL.IIDFC.PAM`` (independent of ``channels``)."""
    del channels
    pam = cfg.MODEL.IIDFC.PAM
    return PedestrianAttention(
        dilations=tuple(pam.DILATIONS),
        branch_channels=pam.BRANCH_CHANNELS,
        se_reduction=pam.SE_REDUCTION,
    )


def _odd_kernel(key: str, size: int) -> int:
    if size < 1 or size % 2 == 0:
        raise ValueError(f"{key} must be an odd size >= 1, got {size}")
    return size


def _reduced(key: str, channels: int, reduction: int) -> int:
    """Hidden channels ``channels // reduction`` (at least 1)."""
    if reduction < 1:
        raise ValueError(f"{key} must be >= 1, got {reduction}")
    return max(1, channels // reduction)


@ROI_ATTENTION_REGISTRY.register()
def SA(cfg, channels: int) -> nn.Module:
    """CBAM's spatial attention, kernel ``MODEL.IIDFC.SA.KERNEL_SIZE``."""
    del channels
    return SpatialAttn(_odd_kernel("MODEL.IIDFC.SA.KERNEL_SIZE", cfg.MODEL.IIDFC.SA.KERNEL_SIZE))


@ROI_ATTENTION_REGISTRY.register()
def CBAM(cfg, channels: int) -> nn.Module:
    """CBAM with ``MODEL.IIDFC.CBAM.REDUCTION`` and ``KERNEL_SIZE``."""
    cbam = cfg.MODEL.IIDFC.CBAM
    return CbamModule(
        channels,
        rd_channels=_reduced("MODEL.IIDFC.CBAM.REDUCTION", channels, cbam.REDUCTION),
        spatial_kernel_size=_odd_kernel("MODEL.IIDFC.CBAM.KERNEL_SIZE", cbam.KERNEL_SIZE),
    )


@ROI_ATTENTION_REGISTRY.register()
def NonLocal(cfg, channels: int) -> nn.Module:
    """Non-local block with ``channels / MODEL.IIDFC.NON_LOCAL.REDUCTION`` inner channels."""
    key = "MODEL.IIDFC.NON_LOCAL.REDUCTION"
    return NonLocalAttn(
        channels, rd_channels=_reduced(key, channels, cfg.MODEL.IIDFC.NON_LOCAL.REDUCTION)
    )


def build_roi_attention(cfg, channels: int) -> nn.Module:
    """The attention named by ``MODEL.IIDFC.ATTENTION.NAME`` for ``channels``-channel maps.

    Raises:
        ValueError: the name is not registered (names the key, the value and the known names).
    """
    name = cfg.MODEL.IIDFC.ATTENTION.NAME
    if name not in ROI_ATTENTION_REGISTRY:
        known = sorted(k for k, _ in ROI_ATTENTION_REGISTRY)
        raise ValueError(f"MODEL.IIDFC.ATTENTION.NAME={name!r} is not one of {known}")
    return ROI_ATTENTION_REGISTRY.get(name)(cfg, channels)
