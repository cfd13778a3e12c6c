"""The last backbone stage, applied to every RoI as the R-CNN head ("C4" design).

Person-search models in the OIM family split the backbone in two: conv1..res4 run on the whole
image, the last stage (ResNet res5, the last ConvNeXt stage ...) runs on each RoIAlign-pooled
region. ``ROI_HEAD_STAGE_REGISTRY`` holds the builders of that last stage; the name used is
``cfg.MODEL.PERSON_SEARCH.HEAD_STAGE.NAME``.
"""

from __future__ import annotations

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, ResNet
from detectron2.utils.registry import Registry
from torch import nn

__all__ = ["ROI_HEAD_STAGE_REGISTRY", "ResNetRes5Stage", "build_roi_head_stage"]

ROI_HEAD_STAGE_REGISTRY = Registry("ROI_HEAD_STAGE")
ROI_HEAD_STAGE_REGISTRY.__doc__ = """
Registry for the last backbone stage used as the RoI head of a person-search model.

The registered object will be called with `obj(cfg, input_shape) -> nn.Module with
.out_channels`, where `input_shape` (ShapeSpec) describes the pooled RoI features (channels of
the backbone's last whole-image stage). The module maps (M, C_in, h, w) RoI features to
(M, out_channels, h', w').
"""

# Block counts of ResNet res5 per depth (He et al., 2016, Table 1).
_RES5_NUM_BLOCKS = {18: 2, 34: 3, 50: 3, 101: 3, 152: 3}
# res5 has 8x the channels of res2 (channels double at each of res3, res4, res5).
_RES5_CHANNEL_FACTOR = 2**3


@ROI_HEAD_STAGE_REGISTRY.register()
class ResNetRes5Stage(nn.Sequential):
    """Detectron2's ResNet res5 stage (first block stride 2), built from ``MODEL.RESNETS``.

    Same layout and parameter names as the ``res5`` of Detectron2's ``Res5ROIHeads``, so
    ImageNet ResNet weights load into it (the pretrained file's ``res5.*`` keys map onto
    ``roi_heads.res5.*`` via Detectron2's name matching).
    """

    def __init__(self, cfg, input_shape: ShapeSpec):
        """
        Args:
            cfg: reads MODEL.RESNETS (DEPTH, NUM_GROUPS, WIDTH_PER_GROUP, RES2_OUT_CHANNELS,
                STRIDE_IN_1X1, NORM, DEFORM_ON_PER_STAGE).
            input_shape: the pooled res4 features; ``channels`` must equal res4's width.
        """
        r = cfg.MODEL.RESNETS
        if r.DEPTH not in _RES5_NUM_BLOCKS:
            raise ValueError(
                f"MODEL.RESNETS.DEPTH={r.DEPTH} is not a ResNet depth ({sorted(_RES5_NUM_BLOCKS)})"
            )
        if r.DEFORM_ON_PER_STAGE[-1]:
            raise ValueError("MODEL.RESNETS.DEFORM_ON_PER_STAGE[-1]: no deformable res5 head")
        res2_channels = r.RES2_OUT_CHANNELS if r.DEPTH >= 50 else 64
        out_channels = res2_channels * _RES5_CHANNEL_FACTOR
        if input_shape.channels != out_channels // 2:
            raise ValueError(
                f"res5 head expects {out_channels // 2} input channels (res4 of "
                f"MODEL.RESNETS), got {input_shape.channels}"
            )
        if r.DEPTH >= 50:
            blocks = ResNet.make_stage(
                BottleneckBlock,
                _RES5_NUM_BLOCKS[r.DEPTH],
                stride_per_block=[2] + [1] * (_RES5_NUM_BLOCKS[r.DEPTH] - 1),
                in_channels=input_shape.channels,
                bottleneck_channels=r.NUM_GROUPS * r.WIDTH_PER_GROUP * _RES5_CHANNEL_FACTOR,
                out_channels=out_channels,
                num_groups=r.NUM_GROUPS,
                norm=r.NORM,
                stride_in_1x1=r.STRIDE_IN_1X1,
            )
        else:
            blocks = ResNet.make_stage(
                BasicBlock,
                _RES5_NUM_BLOCKS[r.DEPTH],
                stride_per_block=[2] + [1] * (_RES5_NUM_BLOCKS[r.DEPTH] - 1),
                in_channels=input_shape.channels,
                out_channels=out_channels,
                norm=r.NORM,
            )
        super().__init__(*blocks)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (M, C_in, h, w) RoI features -> (M, out_channels, ceil(h/2), ceil(w/2))."""
        return super().forward(x)


def build_roi_head_stage(cfg, input_shape: ShapeSpec) -> nn.Module:
    """Build ``cfg.MODEL.PERSON_SEARCH.HEAD_STAGE.NAME`` from ``ROI_HEAD_STAGE_REGISTRY``."""
    name = cfg.MODEL.PERSON_SEARCH.HEAD_STAGE.NAME
    stage = ROI_HEAD_STAGE_REGISTRY.get(name)(cfg, input_shape)
    if not isinstance(getattr(stage, "out_channels", None), int):
        raise TypeError(f"ROI head stage {name!r} must set an int attribute .out_channels")
    return stage
