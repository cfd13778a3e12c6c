"""The person masks a training run uses: read (labelme directory or COCO file), matched to the
training images' person boxes (:mod:`.matching`), reduced to the mask-fraction subset
(:mod:`.subsets`), as Detectron2 segmentations keyed by image and annotation index.

A person's segmentation is the union of its matched pieces: a list of polygons (Detectron2's
polygon format; they go through the mapper's flip and resize as ``PolygonMasks``), or one COCO
RLE when a piece is RLE (needs ``INPUT.MASK_FORMAT`` "bitmask").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
from detectron2.structures import BoxMode

from person_search.data.build import get_person_search_train_dicts
from person_search.data.datasets.builtin import datasets_root

from .coco_masks import read_coco_instances
from .labelme import read_labelme_dir
from .mask_records import MaskInstance, MaskIssue, MaskSet, Segmentation
from .matching import MatchRule, match_instances
from .subsets import select_mask_subset

__all__ = [
    "MASK_FORMATS",
    "TrainingMasks",
    "build_training_masks",
    "load_training_masks",
    "person_segmentation",
    "read_mask_source",
    "resolve_mask_path",
]

logger = logging.getLogger(__name__)

# INPUT.MASKGUIDED.MASKS_FORMAT values.
MASK_FORMATS = ("auto", "labelme", "coco")
# Skipped masks logged one by one (the rest are counted; all are in TrainingMasks.issues).
_LOGGED_ISSUES = 50


@dataclass
class TrainingMasks:
    """Attributes:
    segmentations: image id -> annotation index -> Detectron2 segmentation, for the images
        of the subset.
    issues: every skipped mask (file, element, reason).
    annotated_images: training images with at least one usable mask (before the subset).
    masked_persons: persons with a mask in the subset.
    """

    segmentations: dict[str, dict[int, Segmentation]] = field(default_factory=dict)
    issues: list[MaskIssue] = field(default_factory=list)
    annotated_images: int = 0
    masked_persons: int = 0


def resolve_mask_path(path: str) -> str:
    """``path`` as given when absolute, else under ``$DETECTRON2_DATASETS`` (``datasets``)."""
    return path if os.path.isabs(path) else os.path.join(datasets_root(), path)


def read_mask_source(path: str, mask_format: str = "auto") -> MaskSet:
    """Read a labelme directory or a COCO instances file ("auto": a directory is labelme, a
    file COCO)."""
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"INPUT.MASKGUIDED.MASKS_FORMAT={mask_format!r}: one of {MASK_FORMATS}")
    if mask_format == "auto":
        if not os.path.exists(path):
            raise FileNotFoundError(f"INPUT.MASKGUIDED.MASKS: {path} does not exist")
        mask_format = "labelme" if os.path.isdir(path) else "coco"
    return read_labelme_dir(path) if mask_format == "labelme" else read_coco_instances(path)


def person_segmentation(
    instances: Sequence[MaskInstance], height: int, width: int
) -> Segmentation | list[list[float]]:
    """The union of the pieces of ``instances``: their polygons (a list of flat polygons), or
    one compressed RLE (``counts`` str) when a piece is RLE."""
    pieces = [p for inst in instances for p in inst.pieces]
    if all(p.is_polygon for p in pieces):
        return [list(p.segmentation) for p in pieces]
    rles = []
    for p in pieces:
        if p.is_polygon:
            rles.extend(mask_util.frPyObjects([p.segmentation], height, width))
        else:
            rles.append({"size": [height, width], "counts": p.segmentation["counts"].encode()})
    merged = mask_util.merge(rles, intersect=False)
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}


def _xyxy_boxes(record: dict) -> tuple[np.ndarray, list[int]]:
    annotations = record.get("annotations", ())
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), [a["person_id"] for a in annotations]


def build_training_masks(
    dicts: Sequence[dict],
    masks: MaskSet,
    *,
    rule: MatchRule,
    fraction: float,
    seed: int,
    polygon_only: bool,
) -> TrainingMasks:
    """Match ``masks`` to the training ``dicts`` and keep the subset of ``fraction``.

    Args:
        dicts: the training dataset dicts, in training order (image by ``file_name``'s name).
        rule: the matching thresholds.
        fraction, seed: the subset (:func:`~.subsets.select_mask_subset`).
        polygon_only: ``INPUT.MASK_FORMAT`` is "polygon": an RLE mask is an error.

    Raises:
        ValueError: two training images share a file name, an annotated image's size is not
            the dataset's, an RLE mask with ``polygon_only``, a bad ``fraction``.
    """
    by_name: dict[str, dict] = {}
    for record in dicts:
        name = os.path.basename(record["file_name"])
        if name in by_name:
            raise ValueError(
                f"two training images are named {name!r} ({by_name[name]['file_name']}, "
                f"{record['file_name']}): masks are matched to images by file name"
            )
        by_name[name] = record
    out = TrainingMasks(issues=list(masks.issues))
    usable: dict[str, dict[int, Segmentation]] = {}
    for name, image in masks.images.items():
        record = by_name.get(name)
        if record is None:
            out.issues.append(MaskIssue(image.source, f"image {name!r} is not a training image"))
            continue
        if (image.height, image.width) != (record["height"], record["width"]):
            raise ValueError(
                f"{image.source}: annotated as {image.width}x{image.height}, but "
                f"{record['file_name']} is {record['width']}x{record['height']}"
            )
        if not image.instances:
            out.issues.append(MaskIssue(image.source, "no usable mask on this image"))
            continue
        boxes, person_ids = _xyxy_boxes(record)
        matched, issues = match_instances(image.instances, boxes, person_ids, rule)
        out.issues.extend(issues)
        segmentations = {
            index: person_segmentation(instances, image.height, image.width)
            for index, instances in sorted(matched.items())
        }
        if polygon_only and any(isinstance(s, dict) for s in segmentations.values()):
            raise ValueError(
                f"{image.source}: RLE masks need INPUT.MASK_FORMAT 'bitmask' (it is 'polygon')"
            )
        if segmentations:
            usable[record["image_id"]] = segmentations
    order = [record["image_id"] for record in dicts]
    out.annotated_images = len(usable)
    for image_id in select_mask_subset(order, usable, fraction, seed):
        out.segmentations[image_id] = usable[image_id]
    out.masked_persons = sum(len(s) for s in out.segmentations.values())
    return out


def _log(masks: TrainingMasks, source: str, num_images: int) -> None:
    logger.info(
        f"Person masks from {source}: {masks.annotated_images} of {num_images} training images "
        f"have usable masks; {len(masks.segmentations)} keep them "
        f"({len(masks.segmentations) / max(num_images, 1):.1%} of the training images), "
        f"{masks.masked_persons} labelled persons; {len(masks.issues)} masks skipped"
    )
    for issue in masks.issues[:_LOGGED_ISSUES]:
        logger.warning(f"Skipped mask: {issue}")
    if len(masks.issues) > _LOGGED_ISSUES:
        logger.warning(f"... and {len(masks.issues) - _LOGGED_ISSUES} more skipped masks")


def load_training_masks(cfg: Any) -> TrainingMasks:
    """The masks of ``cfg``'s training run (``INPUT.MASKGUIDED``, ``DATASETS.TRAIN``); logs how
    many images and persons carry one and every skipped mask."""
    mg = cfg.INPUT.MASKGUIDED
    if not mg.MASKS:
        raise ValueError(
            "INPUT.MASKGUIDED.MASKS is empty: set the labelme directory or COCO file of the "
            "person masks (relative to $DETECTRON2_DATASETS or absolute)"
        )
    for key in ("MATCH_IOU", "MATCH_CONTAINMENT"):
        if not 0.0 < mg[key] <= 1.0:
            raise ValueError(f"INPUT.MASKGUIDED.{key}={mg[key]}: must be in (0, 1]")
    source = resolve_mask_path(mg.MASKS)
    masks = read_mask_source(source, mg.MASKS_FORMAT)
    dicts, _ = get_person_search_train_dicts(cfg.DATASETS.TRAIN)
    out = build_training_masks(
        dicts,
        masks,
        rule=MatchRule(mg.MATCH_IOU, mg.MATCH_CONTAINMENT),
        fraction=mg.IMAGE_FRACTION,
        seed=mg.SUBSET_SEED,
        polygon_only=cfg.INPUT.MASK_FORMAT == "polygon",
    )
    _log(out, source, len(dicts))
    return out
