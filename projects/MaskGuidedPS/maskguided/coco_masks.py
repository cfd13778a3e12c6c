"""Read person masks from a COCO instances JSON (polygons or RLE, decoded with pycocotools).

::

    {"images": [{"id": 1, "file_name": "s123.jpg", "height": 600, "width": 800}, ...],
     "annotations": [{"id": 7, "image_id": 1, "segmentation": [[x0, y0, x1, y1, ...], ...]
                      or {"size": [600, 800], "counts": "..." or [n0, n1, ...]},
                      "iscrowd": 0, ...}, ...]}

Each annotation is one person instance (its polygons, or its RLE mask); images are named by the
file name of ``file_name``. Crowd annotations (``iscrowd`` 1), empty masks, bad polygons
(:mod:`.mask_records`) and RLE masks whose ``size`` is not the image's are skipped and reported.
A file that is empty, not JSON, without ``images`` / ``annotations``, or whose annotation names
an image id it does not list, is an error naming the file (and the annotation).
"""

from __future__ import annotations

import os
from typing import Any

import pycocotools.mask as mask_util

from .mask_records import (
    ImageMasks,
    MaskInstance,
    MaskIssue,
    MaskPiece,
    MaskSet,
    polygon_piece,
    read_json,
)

__all__ = ["read_coco_instances", "rle_piece"]


def rle_piece(
    segmentation: dict, where: str, height: int, width: int
) -> tuple[MaskPiece | None, MaskIssue | None]:
    """An RLE piece (compressed, ``counts`` as str) from a COCO RLE dict (compressed or not),
    or why it is skipped; ValueError naming ``where`` when pycocotools cannot read it."""
    size = segmentation.get("size")
    counts = segmentation.get("counts")
    if size is None or counts is None:
        raise ValueError(f"{where}: an RLE segmentation has 'size' and 'counts'")
    if [int(v) for v in size] != [height, width]:
        return None, MaskIssue(
            where, f"RLE of size {list(size)}, the image is {height}x{width} ([h, w])"
        )
    try:
        if isinstance(counts, list):
            rle = mask_util.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        else:
            raw = counts.encode("ascii") if isinstance(counts, str) else counts
            rle = {"size": [height, width], "counts": raw}
        area = int(mask_util.area(rle))
        x, y, w, h = (float(v) for v in mask_util.toBbox(rle))
    except Exception as e:  # pycocotools raises plain Exceptions on bad counts
        raise ValueError(f"{where}: pycocotools cannot read this RLE ({e})") from e
    if area == 0:
        return None, MaskIssue(where, "empty RLE mask")
    counts_out = rle["counts"]
    rle = {"size": [height, width], "counts": counts_out.decode("ascii")}
    return MaskPiece(rle, (x, y, x + w, y + h), where), None


def _pieces(ann: dict, where: str, height: int, width: int) -> tuple[list, list[MaskIssue]]:
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, dict):
        piece, issue = rle_piece(segmentation, where, height, width)
        return ([piece] if piece else []), ([issue] if issue else [])
    if not isinstance(segmentation, list):
        raise ValueError(f"{where}: 'segmentation' must be polygons or an RLE dict")
    pieces, issues = [], []
    for k, polygon in enumerate(segmentation):
        piece, issue = polygon_piece(polygon, f"{where}.segmentation[{k}]", height, width)
        if piece is not None:
            pieces.append(piece)
        else:
            issues.append(issue)
    return pieces, issues


def _image_table(payload: dict, path: str) -> dict[Any, ImageMasks]:
    images = payload.get("images")
    if not isinstance(images, list):
        raise ValueError(f"{path}: COCO file without an 'images' list")
    table: dict[Any, ImageMasks] = {}
    for k, image in enumerate(images):
        try:
            key = image["id"]
            name = os.path.basename(str(image["file_name"]).replace("\\", "/"))
            height, width = int(image["height"]), int(image["width"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{path}: images[{k}] needs id, file_name, height and width ({e!r})"
            ) from e
        if key in table:
            raise ValueError(f"{path}: image id {key!r} listed twice in 'images'")
        table[key] = ImageMasks(name, height, width, [], f"{path}: image {name}")
    return table


def read_coco_instances(path: str) -> MaskSet:
    """The person masks of a COCO instances file and the annotations it skipped."""
    payload = read_json(path)
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: a COCO file is a JSON object, got {type(payload).__name__}")
    table = _image_table(payload, path)
    annotations = payload.get("annotations")
    if not isinstance(annotations, list):
        raise ValueError(f"{path}: COCO file without an 'annotations' list")
    out = MaskSet(path)
    for k, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise ValueError(f"{path}: annotations[{k}] is not an object")
        where = f"{path}: annotation id {ann.get('id', k)!r}"
        image = table.get(ann.get("image_id"))
        if image is None:
            raise ValueError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        where = f"{where} ({image.image_name})"
        if ann.get("iscrowd", 0):
            out.issues.append(MaskIssue(where, "crowd annotation (iscrowd 1), not one person"))
            continue
        pieces, issues = _pieces(ann, where, image.height, image.width)
        out.issues.extend(issues)
        if pieces:
            image.instances.append(MaskInstance(tuple(pieces), where))
    for image in table.values():
        out.add(image)
    return out
