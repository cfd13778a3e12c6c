"""Pictures of PAN's learnt masks on person crops (the paper's Fig. 4), one PNG per image.

Each picture is a grid of panels of one height: the crop, the fusion of all masks
(``sum_i |m_i|``), then masks 1..p. PAN's masks have no softmax and take either sign: a mask is
drawn in red where it is positive and in blue where it is negative, with an opacity
proportional to ``|m| / max |m|`` of that mask (the fusion panel: red, scaled by its own
maximum). Masks live on the feature grid (e.g. 16x8) and are resized bilinearly to the crop.
Captions are drawn with Detectron2's ``Visualizer`` (panels are its ``VisImage`` outputs).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from detectron2.utils.visualizer import Visualizer

from person_search.utils.file_io import write_png

__all__ = [
    "NEGATIVE_COLOR",
    "POSITIVE_COLOR",
    "draw_masks",
    "overlay_mask",
    "write_mask_pictures",
]

# Overlay colours (RGB, 0-255) of positive and negative mask values, and the largest opacity.
POSITIVE_COLOR = (230, 0, 0)
NEGATIVE_COLOR = (30, 90, 255)
MAX_ALPHA = 0.65
# Layout (pixels): panel height, gap between panels; panels per row.
PANEL_HEIGHT = 256
GAP = 4
COLUMNS = 8
_GAP_VALUE = 255  # white gaps
_CAPTION_COLOR = (1.0, 1.0, 1.0)


def overlay_mask(image_rgb: np.ndarray, mask: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Blend ``mask`` over ``image_rgb``.

    Args:
        image_rgb: (H, W, 3) uint8.
        mask: (H, W) real values on the image's grid.
        scale: value drawn at full opacity (default ``max |mask|``; a zero mask leaves the
            image unchanged).

    Returns:
        (H, W, 3) uint8: red where ``mask > 0``, blue where ``mask < 0``, opacity
        ``MAX_ALPHA * min(|mask| / scale, 1)``.
    """
    if image_rgb.shape[:2] != mask.shape:
        raise ValueError(f"image {image_rgb.shape[:2]} and mask {mask.shape} differ in size")
    scale = float(np.abs(mask).max()) if scale is None else scale
    if scale <= 0:
        return image_rgb.copy()
    alpha = (MAX_ALPHA * np.clip(np.abs(mask) / scale, 0.0, 1.0))[..., None]
    color = np.where(mask[..., None] >= 0, POSITIVE_COLOR, NEGATIVE_COLOR).astype(np.float64)
    blended = image_rgb.astype(np.float64) * (1.0 - alpha) + color * alpha
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _panel(image_rgb: np.ndarray, caption: str) -> np.ndarray:
    vis = Visualizer(image_rgb)
    vis.draw_text(caption, (2, 2), color=_CAPTION_COLOR, horizontal_alignment="left")
    return vis.get_output().get_image()[: image_rgb.shape[0], : image_rgb.shape[1]]


def draw_masks(
    image_rgb: np.ndarray,
    masks: np.ndarray | torch.Tensor,
    *,
    panel_height: int = PANEL_HEIGHT,
    columns: int = COLUMNS,
) -> np.ndarray:
    """The grid picture of one crop and its masks (see the module docstring).

    Args:
        image_rgb: (H, W, 3) uint8 crop.
        masks: (p, h, w) masks of the crop on the feature grid.
        panel_height: height of every panel in pixels (the crop is resized to it).
        columns: most panels per row.

    Returns:
        (rows * panel_height + gaps, W_grid, 3) uint8 RGB picture, white between panels;
        rows of ``columns`` panels (fewer in the last): the crop, the fusion, masks 1..p.
    """
    masks = masks.detach().cpu().float().numpy() if torch.is_tensor(masks) else np.asarray(masks)
    if masks.ndim != 3 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(
            f"need (H, W, 3) image and (p, h, w) masks, got {image_rgb.shape}, {masks.shape}"
        )
    width = max(1, int(round(image_rgb.shape[1] * panel_height / image_rgb.shape[0])))
    image = cv2.resize(image_rgb, (width, panel_height), interpolation=cv2.INTER_LINEAR)
    resized = np.stack(
        [
            cv2.resize(m.astype(np.float32), (width, panel_height), interpolation=cv2.INTER_LINEAR)
            for m in masks
        ]
    )
    panels = [
        _panel(image, "image"),
        _panel(overlay_mask(image, np.abs(resized).sum(0)), "all |m|"),
    ]
    panels += [_panel(overlay_mask(image, m), f"mask {i + 1}") for i, m in enumerate(resized)]
    rows = [panels[i : i + columns] for i in range(0, len(panels), columns)]
    used = min(columns, len(panels))
    grid_w = used * width + (used - 1) * GAP
    grid_h = len(rows) * panel_height + (len(rows) - 1) * GAP
    grid = np.full((grid_h, grid_w, 3), _GAP_VALUE, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            y, x = r * (panel_height + GAP), c * (width + GAP)
            grid[y : y + panel_height, x : x + width] = panel
    return grid


def write_mask_pictures(
    model: torch.nn.Module,
    mapper: Callable[[dict], dict],
    dataset_dicts: Sequence[dict],
    output_dir: str,
    *,
    image_format: str = "RGB",
    panel_height: int = PANEL_HEIGHT,
) -> list[str]:
    """Run ``model`` (a ``ReIDBaseline`` with a PAN head) on each dict and write
    ``output_dir/<image file stem>.png`` (atomically); returns the paths.

    Args:
        mapper: the test mapper (e.g. ``build_reid_mapper(cfg, is_train=False)``).
        image_format: channel order of the mapped images (``INPUT.FORMAT``).
    """
    head = getattr(model, "head", None)
    if not hasattr(head, "predict_masks"):
        raise ValueError(
            f"the model's head ({type(head).__name__}) predicts no masks: "
            "MODEL.REID.HEAD.NAME must be 'PANHead'"
        )
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    model.eval()
    for d in dataset_dicts:
        inputs = mapper(d)
        with torch.no_grad():
            images = model.preprocess_image([inputs])
            masks = head.predict_masks(model.backbone(images))[0]
        image = inputs["image"].permute(1, 2, 0).numpy()
        if image_format == "BGR":
            image = image[:, :, ::-1]
        stem = os.path.splitext(os.path.basename(d["file_name"]))[0]
        path = os.path.join(output_dir, f"{stem}.png")
        write_png(path, draw_masks(np.ascontiguousarray(image), masks, panel_height=panel_height))
        paths.append(path)
    return paths
