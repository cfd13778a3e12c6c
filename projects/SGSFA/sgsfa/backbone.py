"""SGSFA's backbone: the re-id ResNet with the whole-body attention after stage 1.

The attention multiplies the stage-1 (res2) features before stage 2 (paper Sec. 3.1: "the
whole body's attention is inserted after stage-1"), so it has to sit inside the backbone; its
logit map is returned beside the features for the head's mask loss.
"""

from __future__ import annotations

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from person_search.modeling.backbone.reid_backbones import ReIDResNet, build_reid_resnet_backbone

from .sga import WholeBodyAttention

__all__ = ["WHOLE_BODY_LOGITS", "SGSFAResNet", "build_sgsfa_resnet_backbone"]

# Name of the whole-body attention logits (N, 1, H/4, W/4) in the backbone's outputs.
WHOLE_BODY_LOGITS = "whole_body_logits"
# The stage after which the whole-body attention sits (stage 1 of the paper = res2).
_ATTENDED_STAGE = "res2"


class SGSFAResNet(Backbone):
    """A :class:`ReIDResNet` run stage by stage, with an optional :class:`WholeBodyAttention`
    on res2's output.

    Outputs: the ResNet's ``out_features`` (e.g. "res5", computed from the attended res2) and,
    with the attention, ``"whole_body_logits"``: (N, 1, H/4, W/4) (64x32 for 256x128 inputs).
    """

    def __init__(self, resnet: ReIDResNet, whole_attention: WholeBodyAttention | None):
        """
        Args:
            resnet: the trunk (its weights already loaded); its stem and ``layer1..4`` are run.
            whole_attention: the attention after res2, or None (the "w/o whole attention"
                ablation: a plain ResNet).
        """
        super().__init__()
        self.resnet = resnet
        self.whole_attention = whole_attention
        shapes = resnet.output_shape()
        self._out_features = list(resnet._out_features)
        self._out_feature_channels = {k: v.channels for k, v in shapes.items()}
        self._out_feature_strides = {k: v.stride for k, v in shapes.items()}
        if whole_attention is not None:
            self._out_features.append(WHOLE_BODY_LOGITS)
            self._out_feature_channels[WHOLE_BODY_LOGITS] = 1
            self._out_feature_strides[WHOLE_BODY_LOGITS] = resnet._out_feature_strides[
                _ATTENDED_STAGE
            ]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (N, 3, H, W) normalised images -> {name: feature map} (see the class)."""
        net = self.resnet
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        outputs = {}
        for idx, name in enumerate(net._stage_names[: net._last_stage + 1]):
            x = getattr(net, f"layer{idx + 1}")(x)
            if name == _ATTENDED_STAGE and self.whole_attention is not None:
                x, outputs[WHOLE_BODY_LOGITS] = self.whole_attention(x)
            if name in net._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_sgsfa_resnet_backbone(cfg, input_shape: ShapeSpec) -> SGSFAResNet:
    """The library's re-id ResNet (``MODEL.REID.RESNET.*``, ImageNet weights from
    ``MODEL.REID.BACKBONE_WEIGHTS``) with the whole-body attention when
    ``MODEL.SGSFA.WHOLE_ATTENTION``."""
    resnet = build_reid_resnet_backbone(cfg, input_shape)
    whole = None
    if cfg.MODEL.SGSFA.WHOLE_ATTENTION:
        channels = resnet._out_feature_channels[_ATTENDED_STAGE]
        whole = WholeBodyAttention(channels, cfg.MODEL.SGSFA.WHOLE_REDUCTION)
    return SGSFAResNet(resnet, whole)
