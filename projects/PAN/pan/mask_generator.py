"""PAN's mask generator: one 1x1 convolution from F1 to p masks, no softmax by default."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskGenerator"]


class MaskGenerator(nn.Module):
    """``M = G(F1)``: a 1x1 convolution (with bias) from C1 channels to ``num_masks`` masks.

    The masks are weakly supervised: no mask target exists, they are learnt through the
    identity and triplet losses of the local features they pool. With ``softmax`` the p masks
    are normalised to probabilities at each position (the ablation of Table 4); without it
    (PAN) each mask is a free real-valued map.

    The mask count is also kept as a buffer, ``num_masks``: a whole-model checkpoint whose mask
    generator has another count is refused on loading with an error naming
    ``MODEL.PAN.NUM_MASKS`` and both counts (Detectron2's checkpointer would otherwise drop
    the mis-shaped convolution with a warning and keep a random one).
    """

    def __init__(self, in_channels: int, num_masks: int, *, softmax: bool = False):
        """
        Args:
            in_channels: C1, channels of F1.
            num_masks: p (``MODEL.PAN.NUM_MASKS``).
            softmax: normalise the masks over p at each position (``MODEL.PAN.MASK_SOFTMAX``).
        """
        super().__init__()
        if num_masks < 1:
            raise ValueError(f"MODEL.PAN.NUM_MASKS must be >= 1, got {num_masks}")
        self.conv = nn.Conv2d(in_channels, num_masks, kernel_size=1)
        self.softmax = softmax
        self.register_buffer("num_masks", torch.tensor(num_masks, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C1, H, W) -> masks (N, p, H, W)."""
        masks = self.conv(x)
        return masks.softmax(dim=1) if self.softmax else masks

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ):
        own = int(self.num_masks)
        counts = {}
        if prefix + "num_masks" in state_dict:
            counts[prefix + "num_masks"] = int(state_dict[prefix + "num_masks"])
        if prefix + "conv.weight" in state_dict:
            counts[prefix + "conv.weight"] = int(state_dict[prefix + "conv.weight"].shape[0])
        for key, count in counts.items():
            if count != own:
                raise ValueError(
                    f"MODEL.PAN.NUM_MASKS = {own}, but the weights being loaded have a mask "
                    f"generator of {count} masks ({key}): set MODEL.PAN.NUM_MASKS {count} to "
                    "use them, or load a checkpoint trained with the same mask count"
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )

    def extra_repr(self) -> str:
        return f"softmax={self.softmax}"
