"""The maps PAN reads (F1 for the masks, F2 for the local features): a backbone output, or a
buffer layer, i.e. a copy of a backbone stage trained apart from it.

Names: a backbone output ("res4", "res5"; OSNet "conv4", "conv5") or ``"<stage>" +
BUFFER_SUFFIX`` ("res5_buffer"). In the paper's Table 3, "Conv40" / "Conv50" are "res4" /
"res5" and "Conv41" / "Conv51" are "res4_buffer" / "res5_buffer".
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from detectron2.layers import ShapeSpec
from torch import nn

from person_search.modeling.backbone.reid_backbones import StagedBackbone

__all__ = ["BUFFER_SUFFIX", "FeatureSources"]

BUFFER_SUFFIX = "_buffer"


class FeatureSources(nn.Module):
    """Computes the named maps a PAN head reads from the backbone's outputs.

    A buffer layer ``"<stage>_buffer"`` is a deep copy of the backbone stage made when the head
    is built, after the backbone's ImageNet weights were loaded: it starts equal to the stage
    and is then trained separately (the paper's "Conv51"). It runs on the output of the stage
    before it, which the backbone must return. Its parameters live in this module
    (``buffer_layers.<stage>.*``), so a whole-model checkpoint saves and restores them.
    """

    def __init__(self, buffers: Mapping[str, nn.Module], buffer_inputs: Mapping[str, str]):
        """
        Args:
            buffers: stage name -> the copied stage module.
            buffer_inputs: stage name -> the backbone output the copy reads.
        """
        super().__init__()
        if set(buffers) != set(buffer_inputs):
            raise ValueError(f"buffers {sorted(buffers)} and inputs {sorted(buffer_inputs)} differ")
        self.buffer_layers = nn.ModuleDict(dict(buffers))
        self.buffer_inputs = dict(buffer_inputs)

    @classmethod
    def from_backbone(
        cls,
        backbone: nn.Module | None,
        input_shape: Mapping[str, ShapeSpec],
        sources: Mapping[str, str],
    ) -> tuple[FeatureSources, dict[str, ShapeSpec]]:
        """Resolve ``sources`` (config key -> source name) against the backbone.

        Returns:
            the module (with one buffer copy per distinct buffered stage) and the shape of each
            source name.

        Raises:
            ValueError: a name is neither a backbone output nor a buffer of a stage whose input
                the backbone returns (the message names the config key, the value and the
                valid values).
        """
        if not isinstance(backbone, StagedBackbone):
            raise ValueError(
                "the PAN head needs the re-id backbone (a StagedBackbone: stages by name) to "
                f"build its buffer layers, got {type(backbone).__name__}"
            )
        buffers, buffer_inputs, shapes = {}, {}, {}
        for key, name in sources.items():
            valid = _valid_sources(backbone, input_shape)
            if name not in valid:
                raise ValueError(
                    f"{key} = {name!r} is not a feature source of this backbone; valid: {valid} "
                    "(a backbone output of MODEL.REID.BACKBONE_OUT_FEATURES = "
                    f"{sorted(input_shape)}, or '<stage>{BUFFER_SUFFIX}' for a stage whose input "
                    "is one of them)"
                )
            if not name.endswith(BUFFER_SUFFIX):
                shapes[name] = input_shape[name]
                continue
            stage = name.removesuffix(BUFFER_SUFFIX)
            if stage not in buffers:
                buffers[stage] = copy.deepcopy(backbone.stage(stage))
                buffer_inputs[stage] = backbone.stage_input(stage)
            shapes[name] = backbone.stage_output_shape(stage)
        return cls(buffers, buffer_inputs), shapes

    def forward(self, features: Mapping[str, torch.Tensor], names: list[str]) -> dict:
        """features: backbone outputs {name: (N, C, H, W)} -> {name: map} for ``names``
        (each buffer run once)."""
        out = {}
        for name in names:
            if name in out:
                continue
            if name.endswith(BUFFER_SUFFIX):
                stage = name.removesuffix(BUFFER_SUFFIX)
                out[name] = self.buffer_layers[stage](features[self.buffer_inputs[stage]])
            else:
                out[name] = features[name]
        return out


def _valid_sources(backbone: StagedBackbone, input_shape: Mapping[str, ShapeSpec]) -> list[str]:
    buffered = [
        stage + BUFFER_SUFFIX
        for stage in backbone.stage_names
        if backbone.stage_input(stage) in input_shape
    ]
    return sorted(input_shape) + buffered
