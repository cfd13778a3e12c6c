from . import (
    head_stage,  # noqa: F401  (registers ROI_HEAD_STAGE_REGISTRY and the ResNet res5 stage)
    reid_backbones,  # noqa: F401  (registers the re-id ResNet and OSNet backbones)
    timm_backbones,  # noqa: F401  (registers ConvNeXt / Res2Net trunks and head stages)
)
