"""Pictures of a footage search: the contact sheet and full frames with the match boxed.

The contact sheet shows the query (a crop around its box, framed blue) on the left and the
ranked matches as a grid of crops (framed orange), each captioned with its rank, similarity,
camera and frame (video: frame number and time; image: file name). Boxes and captions are
drawn by Detectron2's ``Visualizer`` (:func:`~person_search.visualization.search_visualizer.
draw_panel`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from person_search.visualization.search_visualizer import (
    FRAME,
    GAP,
    PANEL_HEIGHT,
    QUERY_COLOR,
    draw_panel,
    hstack_panels,
)

from .index import SearchHit

__all__ = [
    "MATCH_COLOR",
    "crop_with_context",
    "draw_contact_sheet",
    "draw_full_frame",
    "hit_caption",
]

MATCH_COLOR = (255, 140, 0)  # RGB frame and box of the matches
# A crop around a box extends it by this fraction of its height above and below, and is at
# least CROP_MIN_ASPECT times as wide as high (room for the caption), both within the frame.
CROP_MARGIN = 0.15
CROP_MIN_ASPECT = 0.6
_WHITE = 255


def crop_with_context(image: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """A crop of ``image`` (H, W, 3) around ``box`` (XYXY) and the box in its coordinates."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    h = max(y1 - y0, 1.0)
    w = max(x1 - x0, CROP_MIN_ASPECT * h * (1 + 2 * CROP_MARGIN))
    cx = (x0 + x1) / 2
    top = int(max(0, np.floor(y0 - CROP_MARGIN * h)))
    bottom = int(min(height, np.ceil(y1 + CROP_MARGIN * h)))
    left = int(max(0, np.floor(cx - w / 2)))
    right = int(min(width, np.ceil(cx + w / 2)))
    if right <= left or bottom <= top:
        raise ValueError(f"box {list(box)} lies outside the {width}x{height} frame")
    crop = image[top:bottom, left:right]
    return crop, np.asarray([x0 - left, y0 - top, x1 - left, y1 - top])


def hit_caption(hit: SearchHit) -> str:
    """Two lines: ``#rank sim S`` and ``camera  frame N  T s`` (video) or ``camera  file``."""
    if hit.kind == "video":
        where = f"f{hit.frame}" + ("" if hit.time is None else f" {hit.time:.1f}s")
    else:
        where = os.path.basename(hit.path)
    return f"#{hit.rank} sim {hit.similarity:.3f}\n{hit.camera} {where}"


def draw_contact_sheet(
    query_image: np.ndarray,
    query_box: Sequence[float],
    hits: Sequence[SearchHit],
    hit_images: Sequence[np.ndarray],
    *,
    columns: int = 5,
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The contact sheet.

    Args:
        query_image: (H, W, 3) uint8 RGB; query_box: XYXY in its pixels.
        hits: ranked matches; hit_images: the (H_i, W_i, 3) uint8 RGB frame of each.
        columns: matches per row of the grid.

    Returns:
        (H, W, 3) uint8 RGB picture and each panel's ``(x0, y0, x1, y1)`` (query first).
    """
    if len(hits) != len(hit_images):
        raise ValueError(f"{len(hits)} matches but {len(hit_images)} images")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    query_panel = draw_panel(*crop_with_context(query_image, query_box), "query", QUERY_COLOR)
    panels = [
        draw_panel(*crop_with_context(image, hit.box), hit_caption(hit), MATCH_COLOR)
        for hit, image in zip(hits, hit_images)
    ]
    rows = [hstack_panels(panels[i : i + columns]) for i in range(0, len(panels), columns)]
    grid_width = max((row.shape[1] for row, _ in rows), default=0)
    grid_height = len(rows) * PANEL_HEIGHT + max(len(rows) - 1, 0) * GAP
    left = query_panel.shape[1] + GAP
    height = max(PANEL_HEIGHT, grid_height)
    sheet = np.full((height, left + grid_width, 3), _WHITE, dtype=np.uint8)
    sheet[:PANEL_HEIGHT, : query_panel.shape[1]] = query_panel
    rects = [(0, 0, query_panel.shape[1], PANEL_HEIGHT)]
    for r, (row, spans) in enumerate(rows):
        y = r * (PANEL_HEIGHT + GAP)
        sheet[y : y + PANEL_HEIGHT, left : left + row.shape[1]] = row
        rects.extend((left + x0, y, left + x1, y + PANEL_HEIGHT) for x0, x1 in spans)
    return sheet, rects


def draw_full_frame(image: np.ndarray, hit: SearchHit) -> np.ndarray:
    """The whole frame at its own size (plus the frame border), the match boxed and
    captioned."""
    caption = hit_caption(hit).replace("\n", "  ")
    return draw_panel(image, np.asarray(hit.box), caption, MATCH_COLOR, image.shape[0] + 2 * FRAME)
