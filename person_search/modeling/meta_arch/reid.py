"""Re-id meta architecture: normalise person crops, backbone, head (losses or embeddings)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from torch import nn

from ..reid_heads import build_reid_head

__all__ = ["DEFAULT_EXTRA_TARGETS", "ReIDBaseline"]

# Per-image training targets forwarded to the head by default (MODEL.REID.EXTRA_TARGETS).
DEFAULT_EXTRA_TARGETS = ("parsing", "part_masks")
# Input keys the model reads itself, which cannot be extra targets.
_RESERVED_INPUTS = ("image", "person_id")


@META_ARCH_REGISTRY.register()
class ReIDBaseline(nn.Module):
    """Person re-identification model: pixel normalisation -> backbone -> re-id head.

    With the BNNeck head and a last-stride-1 ResNet-50 this is the strong baseline of Luo et
    al. ("Bag of Tricks", CVPRW 2019). Projects replace the head (``MODEL.REID.HEAD.NAME``).

    Inputs: a list of dicts, each with "image": (C, H, W) uint8 or float tensor, 0-255, channel
    order of ``INPUT.FORMAT`` (all images of a batch the same size); in training also
    "person_id": int and optionally per-image extra targets (``MODEL.REID.EXTRA_TARGETS``; by
    default "parsing": (H, W) int64 and "part_masks": (G, H, W)), stacked and given to the head
    when every input of the batch carries them.

    Outputs: training: dict of named scalar losses; inference: one dict per input with
    "features": (D,) (and "part_features": (P, d), "part_visibility": (P,) when the head
    gives them).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        extra_targets: Sequence[str] = DEFAULT_EXTRA_TARGETS,
    ):
        """
        Args:
            backbone: returns a dict of feature maps.
            head: a re-id head (see ``REID_HEAD_REGISTRY``).
            pixel_mean, pixel_std: per-channel statistics in 0-255 units, input channel order.
            extra_targets: names of per-image tensors of the inputs forwarded, stacked, to the
                head in training when every input of the batch has them.
        """
        super().__init__()
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"pixel_mean {pixel_mean} and pixel_std {pixel_std} differ in size")
        reserved = [n for n in extra_targets if n in _RESERVED_INPUTS]
        if reserved or len(set(extra_targets)) != len(extra_targets):
            raise ValueError(
                f"MODEL.REID.EXTRA_TARGETS={list(extra_targets)}: names must be distinct and not "
                f"among the inputs the model reads itself {list(_RESERVED_INPUTS)}"
            )
        self.extra_targets = tuple(extra_targets)
        self.backbone = backbone
        self.head = head
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        # The backbone builder loads MODEL.REID.BACKBONE_WEIGHTS: the head sees loaded weights.
        backbone = build_backbone(cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN)))
        return {
            "backbone": backbone,
            "head": build_reid_head(cfg, backbone.output_shape(), backbone),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "extra_targets": cfg.MODEL.REID.EXTRA_TARGETS,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: list[dict]) -> torch.Tensor:
        """Stack and normalise the images: returns (N, C, H, W) float32 (inputs untouched)."""
        shapes = {tuple(x["image"].shape) for x in batched_inputs}
        if len(shapes) != 1:
            raise ValueError(f"re-id images of one batch must share one size, got {sorted(shapes)}")
        images = torch.stack([x["image"].to(self.device) for x in batched_inputs]).float()
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor] | list[dict]:
        """See the class docstring."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images)
        if self.training:
            return self.head(features, self._targets(batched_inputs))
        outputs = self.head(features)
        return [
            {name: value[i] for name, value in outputs.items()} for i in range(len(batched_inputs))
        ]

    def _targets(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        """{"person_id": (N,) int64, and each extra target all inputs carry, stacked}."""
        missing = [i for i, x in enumerate(batched_inputs) if "person_id" not in x]
        if missing:
            raise ValueError(f"training inputs {missing[:5]} have no 'person_id'")
        targets = {
            "person_id": torch.as_tensor(
                [int(x["person_id"]) for x in batched_inputs], dtype=torch.int64, device=self.device
            )
        }
        for name in self.extra_targets:
            if all(name in x for x in batched_inputs):
                targets[name] = torch.stack([x[name] for x in batched_inputs]).to(self.device)
        return targets
