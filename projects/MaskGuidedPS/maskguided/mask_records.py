"""What the mask readers return: the person masks of each image, as annotated, and the shapes
they skipped (each with the file and element it came from and why).

A *piece* is one polygon or one RLE mask; an *instance* is the pieces one annotation groups
into a person (a labelme ``group_id``, a COCO annotation); which ground-truth person an instance
belongs to is decided later, by :mod:`.matching`.

Geometry checks shared by both readers (:func:`polygon_piece`): a polygon needs at least 3
finite vertices, a non-zero area, no two crossing edges (a self-intersecting outline, e.g. a
bow tie, has no well-defined inside) and a part inside the image; a failing one is skipped and
reported, never repaired.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ImageMasks",
    "MaskInstance",
    "MaskIssue",
    "MaskPiece",
    "MaskSet",
    "crossing_edges",
    "polygon_piece",
    "read_json",
]

# A segmentation as Detectron2 reads it: one flat polygon [x0, y0, x1, y1, ...] or a COCO RLE
# dict {"size": [h, w], "counts": ...}.
Segmentation = list[float] | dict[str, Any]


@dataclass(frozen=True)
class MaskIssue:
    """A shape or mask that was skipped: ``where`` (file and element), ``reason``."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(frozen=True)
class MaskPiece:
    """One polygon (flat list, pixel coordinates) or RLE dict, and its XYXY box (clipped to
    the image); ``where`` names the file and element."""

    segmentation: Segmentation
    box: tuple[float, float, float, float]
    where: str

    @property
    def is_polygon(self) -> bool:
        return isinstance(self.segmentation, list)


@dataclass(frozen=True)
class MaskInstance:
    """The pieces one annotation groups into one person."""

    pieces: tuple[MaskPiece, ...]
    where: str

    @property
    def box(self) -> np.ndarray:
        """(4,) XYXY box around all pieces."""
        boxes = np.asarray([p.box for p in self.pieces], dtype=np.float64)
        return np.concatenate([boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)])


@dataclass
class ImageMasks:
    """The masks annotated on one image (``image_name``: the image's file name)."""

    image_name: str
    height: int
    width: int
    instances: list[MaskInstance]
    source: str


@dataclass
class MaskSet:
    """What a reader read from ``source``: images by file name and the skipped shapes."""

    source: str
    images: dict[str, ImageMasks] = field(default_factory=dict)
    issues: list[MaskIssue] = field(default_factory=list)

    def add(self, image: ImageMasks) -> None:
        """Add an image; a second annotation of the same file name is an error naming both."""
        previous = self.images.get(image.image_name)
        if previous is not None:
            raise ValueError(
                f"image {image.image_name!r} is annotated twice: {previous.source} and "
                f"{image.source}"
            )
        self.images[image.image_name] = image


def read_json(path: str) -> Any:
    """The JSON content of ``path``; FileNotFoundError / ValueError naming the file (an empty
    file is an error, not an image without masks)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mask annotation file not found: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.strip():
        raise ValueError(f"{path}: empty file (expected a JSON mask annotation)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def crossing_edges(points: np.ndarray) -> tuple[int, int] | None:
    """The first pair of edges of the closed polygon ``points`` (N, 2) that cross (each passes
    strictly through the other; edge i joins vertex i to i + 1), or None. Edges that only touch
    or run along each other (a traced outline going back over a one-pixel-wide part) do not
    count: the inside stays defined, pycocotools rasterizes them as drawn."""
    n = len(points)
    start, end = points, np.roll(points, -1, axis=0)
    i, j = np.triu_indices(n, k=2)
    p1, p2, q1, q2 = start[i], end[i], start[j], end[j]

    def side(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Sign of the turn a -> b -> c (0: collinear)."""
        d1, d2 = b - a, c - a
        return np.sign(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])

    cross = (side(p1, p2, q1) * side(p1, p2, q2) < 0) & (side(q1, q2, p1) * side(q1, q2, p2) < 0)
    hits = np.flatnonzero(cross)
    return None if hits.size == 0 else (int(i[hits[0]]), int(j[hits[0]]))


def polygon_piece(
    points: Any, where: str, height: int, width: int
) -> tuple[MaskPiece | None, MaskIssue | None]:
    """A polygon piece from ``points`` ((N, 2) vertices or a flat x, y list), or the reason it
    is skipped (see the module docstring). Raises ValueError naming ``where`` when ``points``
    is not numeric at all (a malformed file, not a bad shape)."""
    try:
        xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: polygon vertices are not x, y numbers ({e})") from e
    if len(xy) < 3:
        return None, MaskIssue(where, f"polygon with {len(xy)} vertices (needs >= 3)")
    if not np.isfinite(xy).all():
        return None, MaskIssue(where, "polygon with a non-finite coordinate")
    x, y = xy[:, 0], xy[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    if area == 0.0:
        return None, MaskIssue(where, "polygon of zero area")
    crossing = crossing_edges(xy)
    if crossing is not None:
        return None, MaskIssue(
            where, f"self-intersecting polygon (edges {crossing[0]} and {crossing[1]} cross)"
        )
    box = (
        float(np.clip(x.min(), 0, width)),
        float(np.clip(y.min(), 0, height)),
        float(np.clip(x.max(), 0, width)),
        float(np.clip(y.max(), 0, height)),
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        return None, MaskIssue(where, f"polygon outside the {width}x{height} image")
    return MaskPiece([float(v) for v in xy.reshape(-1)], box, where), None
