"""Instance masks of gallery detections, kept compactly for drawing (models with a mask branch,
``MODEL.MASK_ON``: MaskGuidedPS).

A model's output ``pred_masks`` are (n, H, W) boolean masks of the whole image. The evaluator
keeps, for each detection scoring at least its detection threshold, the mask cropped to the
detection's box and resized to ``MASK_SIZE`` x ``MASK_SIZE`` (Detectron2's
``BitMasks.crop_and_resize``), bit-packed: ~100 bytes a detection. :func:`paste_box_mask` puts
one back into an image of any size (Detectron2's ``paste_masks_in_image``), e.g. a resized
panel of the search visualizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from detectron2.layers.mask_ops import paste_masks_in_image
from detectron2.structures import BitMasks, Boxes

__all__ = ["MASK_SIZE", "DetectionMasks", "box_masks", "paste_box_mask"]

# Side of the box-relative masks kept per detection, in cells (Mask R-CNN's 28).
MASK_SIZE = 28


def box_masks(masks: torch.Tensor, boxes: torch.Tensor, size: int = MASK_SIZE) -> np.ndarray:
    """(n, H, W) bool image masks -> (n, size, size) bool masks of their (n, 4) XYXY boxes."""
    if len(masks) == 0:
        return np.zeros((0, size, size), dtype=bool)
    crops = BitMasks(masks.to(torch.bool)).crop_and_resize(boxes.to(torch.float32), size)
    return crops.cpu().numpy()


def paste_box_mask(mask: np.ndarray, box: Sequence[float], height: int, width: int) -> np.ndarray:
    """One (size, size) box mask -> (height, width) bool image mask, ``box`` XYXY in the
    image's pixels."""
    pasted = paste_masks_in_image(
        torch.as_tensor(mask, dtype=torch.float32)[None],
        Boxes(torch.as_tensor([list(box)], dtype=torch.float32)),
        (height, width),
        threshold=0.5,
    )
    return pasted[0].numpy()


@dataclass
class DetectionMasks:
    """Box masks of some detections of a ``GalleryDetections`` (same row order).

    Attributes:
        size: side of each mask.
        rows: (M,) int64, per detection the row of its mask in ``bits``, -1 for none.
        bits: (K, ceil(size * size / 8)) uint8, the bit-packed (size, size) masks.
    """

    size: int
    rows: np.ndarray
    bits: np.ndarray

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.int64).ravel()
        width = (self.size * self.size + 7) // 8
        self.bits = np.asarray(self.bits, dtype=np.uint8)
        if self.bits.size == 0:
            self.bits = self.bits.reshape(0, width)  # no mask kept (nothing above det_thresh)
        if self.bits.ndim != 2 or self.bits.shape[1] != width:
            raise ValueError(
                f"DetectionMasks: bits of shape {self.bits.shape}, expected (K, {width}) bytes "
                f"per {self.size}^2 mask"
            )
        if len(self.rows) and self.rows.max() >= len(self.bits):
            raise ValueError(f"DetectionMasks: row {self.rows.max()} of {len(self.bits)} masks")

    def mask(self, detection: int) -> np.ndarray | None:
        """(size, size) bool mask of a detection (row of the detections), or None."""
        row = int(self.rows[detection])
        if row < 0:
            return None
        cells = np.unpackbits(self.bits[row], count=self.size * self.size)
        return cells.reshape(self.size, self.size).astype(bool)

    @classmethod
    def from_per_image(
        cls, per_image: Sequence[tuple[np.ndarray, np.ndarray]], size: int = MASK_SIZE
    ) -> DetectionMasks:
        """From one ``(kept (n,) bool, masks (k, size, size) bool)`` per image, in detection
        order: detection i of an image has a mask when ``kept[i]`` (its masks in order)."""
        rows, bits, count = [], [], 0
        for kept, masks in per_image:
            kept = np.asarray(kept, dtype=bool)
            if int(kept.sum()) != len(masks):
                raise ValueError(f"{int(kept.sum())} detections kept, {len(masks)} masks")
            image_rows = np.full(len(kept), -1, dtype=np.int64)
            image_rows[kept] = count + np.arange(len(masks))
            rows.append(image_rows)
            count += len(masks)
            if len(masks):
                bits.append(np.packbits(np.asarray(masks, bool).reshape(len(masks), -1), axis=1))
        width = (size * size + 7) // 8
        return cls(
            size=size,
            rows=np.concatenate(rows) if rows else np.zeros(0, np.int64),
            bits=np.concatenate(bits) if bits else np.zeros((0, width), np.uint8),
        )
