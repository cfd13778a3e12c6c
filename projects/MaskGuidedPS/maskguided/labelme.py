"""Read person masks from a directory of labelme files (one JSON per image), the tool the
mask-guided person-search paper annotated its 1,833 CUHK-SYSU images with.

A labelme file (labelme 3-5)::

    {"shapes": [{"label": "person", "points": [[x, y], ...], "group_id": 1,
                 "shape_type": "polygon", ...}, ...],
     "imagePath": "../Image/SSM/s123.jpg", "imageHeight": 600, "imageWidth": 800, ...}

The image is named by the file name of ``imagePath``. Shapes sharing a ``group_id`` are one
person (a body split by an occluder, a bag it carries: accessories are foreground); a shape
without ``group_id`` is a person piece of its own, whichever its label (``person``, ``bag``),
and pieces later matched to the same person are merged (:mod:`.matching`). Only ``polygon``
shapes (labelme 3 files have no ``shape_type``: polygons) make masks; other shapes and bad
polygons are skipped and reported (:mod:`.mask_records`). A file that is empty, not JSON or
lacks ``shapes`` / ``imagePath`` / ``imageHeight`` / ``imageWidth`` is an error naming it.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from .mask_records import ImageMasks, MaskInstance, MaskIssue, MaskSet, polygon_piece, read_json

__all__ = ["read_labelme_dir", "read_labelme_file"]


def _required(payload: dict, key: str, path: str) -> Any:
    if key not in payload or payload[key] is None:
        raise ValueError(f"{path}: labelme file without {key!r}")
    return payload[key]


def read_labelme_file(path: str) -> tuple[ImageMasks, list[MaskIssue]]:
    """The masks of one labelme file and the shapes it skipped."""
    payload = read_json(path)
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: a labelme file is a JSON object, got {type(payload).__name__}")
    shapes = _required(payload, "shapes", path)
    if not isinstance(shapes, list):
        raise ValueError(f"{path}: 'shapes' must be a list, got {type(shapes).__name__}")
    image_name = os.path.basename(str(_required(payload, "imagePath", path)).replace("\\", "/"))
    try:
        height = int(_required(payload, "imageHeight", path))
        width = int(_required(payload, "imageWidth", path))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: imageHeight / imageWidth are not integers ({e})") from e
    issues: list[MaskIssue] = []
    groups: dict[Any, list] = {}
    for k, shape in enumerate(shapes):
        where = f"{path}: shapes[{k}]"
        if not isinstance(shape, dict) or "points" not in shape:
            raise ValueError(f"{where}: a shape is an object with 'points'")
        label = shape.get("label", "")
        shape_type = shape.get("shape_type") or "polygon"
        where = f"{where} ({label!r})"
        if shape_type != "polygon":
            issues.append(MaskIssue(where, f"shape_type {shape_type!r} is not a polygon"))
            continue
        piece, issue = polygon_piece(shape["points"], where, height, width)
        if issue is not None:
            issues.append(issue)
            continue
        group = shape.get("group_id")
        key = ("group", group) if group is not None else ("shape", k)
        groups.setdefault(key, []).append(piece)
    instances = [
        MaskInstance(
            tuple(pieces),
            f"{path}: group_id {key[1]}" if key[0] == "group" else pieces[0].where,
        )
        for key, pieces in groups.items()
    ]
    return ImageMasks(image_name, height, width, instances, path), issues


def read_labelme_dir(directory: str) -> MaskSet:
    """Every ``*.json`` of ``directory`` (sorted by name); two files naming the same image are
    an error naming both."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"labelme mask directory not found: {directory}")
    files = sorted(glob.glob(os.path.join(directory, "*.json")))
    if not files:
        raise FileNotFoundError(f"{directory}: no labelme *.json file")
    out = MaskSet(directory)
    for path in files:
        image, issues = read_labelme_file(path)
        out.add(image)
        out.issues.extend(issues)
    return out
