"""Pictures of a model's detections on scene images: every detection above a score threshold
drawn by Detectron2's ``Visualizer`` with its score, and, for a model with a mask branch
(``MODEL.MASK_ON``, e.g. MaskGuidedPS), its instance mask (``show_masks``)."""

from __future__ import annotations

import numpy as np
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer

__all__ = ["DETECTION_COLOR", "draw_detections"]

# Box, label and mask colour (RGB, 0-255).
DETECTION_COLOR = (0, 200, 0)


def draw_detections(
    image_rgb: np.ndarray,
    instances: Instances,
    *,
    score_thresh: float = 0.5,
    show_masks: bool = False,
    mask_alpha: float = 0.4,
) -> np.ndarray:
    """Draw the detections with ``score >= score_thresh`` on ``image_rgb``.

    Args:
        image_rgb: (H, W, 3) uint8 RGB, the image the detections are in (original size).
        instances: model output: ``pred_boxes`` (n, 4), ``scores`` (n,) and, with
            ``show_masks``, ``pred_masks`` (n, H, W) bool.
        show_masks: also draw the instance masks (ValueError when ``instances`` have none).

    Returns:
        (H, W, 3) uint8 RGB picture.
    """
    inst = instances.to("cpu")
    if show_masks and not inst.has("pred_masks"):
        raise ValueError(
            "show_masks: the model returned no pred_masks (a model with a mask branch, "
            "MODEL.MASK_ON True, makes them)"
        )
    keep = inst.scores >= score_thresh
    inst = inst[keep]
    color = tuple(c / 255.0 for c in DETECTION_COLOR)
    masks = None
    if show_masks:
        masks = inst.pred_masks.numpy().astype(bool)
        if masks.shape[1:] != image_rgb.shape[:2]:
            raise ValueError(
                f"pred_masks are {masks.shape[1:]}, the image is {image_rgb.shape[:2]}: pass "
                "the image the model saw, at its original size"
            )
    vis = Visualizer(image_rgb)
    vis.overlay_instances(
        boxes=inst.pred_boxes.tensor.numpy(),
        labels=[f"{float(s):.2f}" for s in inst.scores],
        masks=masks,
        assigned_colors=[color] * len(inst),
        alpha=mask_alpha,
    )
    return vis.get_output().get_image()
