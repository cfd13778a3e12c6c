"""Person masks of the toy scene datasets, in the two layouts MaskGuidedPS reads.

The mask-guided person-search paper (Zheng et al.) annotated visible-part polygons of the
*labelled* persons on part of the CUHK-SYSU training images: the training set is cut into
portions of 5 consecutive images, one image is drawn from each portion, and images showing only
unlabelled persons are dropped (1,833 of 11,206 images). The toy writers do the same with
portions of ``round(1 / fraction)`` images, from an RNG of their own (the scenes are the same
bytes with or without masks), and write the polygons of each selected image's labelled persons,
traced from the renderer's owner map (visible body and accessory; other persons, scene objects
and the image border hide the rest), in both layouts (``datasets/README.md``)::

    masks/labelme/<image stem>.json   one labelme file per image: a "polygon" shape per piece of
                                      a person, label "person", group_id = the person (1, 2, ..)
    masks/instances_train.json        COCO instances: one annotation per person (its polygons),
                                      category 1 "person", images by file name
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "COCO_MASK_FILE",
    "LABELME_MASK_DIR",
    "MASK_SEED_TAG",
    "ImagePersonMasks",
    "owner_polygons",
    "select_mask_images",
    "write_coco_masks",
    "write_labelme_masks",
]

# Layout of the masks under a dataset root.
LABELME_MASK_DIR = os.path.join("masks", "labelme")
COCO_MASK_FILE = os.path.join("masks", "instances_train.json")
# Second entropy word of the mask selection's RNG (the first is the dataset seed), so that it
# never shares a stream with the scene renderer.
MASK_SEED_TAG = 0x6D61736B
# labelme version written in the files (the format of labelme 5).
_LABELME_VERSION = "5.2.1"


@dataclass(frozen=True)
class ImagePersonMasks:
    """The masks of one image: its file, size and, per masked person, its polygons (each a flat
    ``[x0, y0, x1, y1, ...]`` list, pixel coordinates, pixel i spanning [i, i + 1))."""

    image_path: str
    height: int
    width: int
    persons: tuple[tuple[list[float], ...], ...]


def select_mask_images(
    order: Sequence[int],
    has_labelled: Sequence[bool],
    fraction: float,
    rng: np.random.Generator,
) -> list[int]:
    """The images to annotate, by the paper's procedure.

    Args:
        order: the training images (indices) in dataset order.
        has_labelled: per image index, whether it shows a labelled person.
        fraction: 1 / portion size (the paper: 1/5); in (0, 1].
        rng: draws the image of each portion.

    Returns:
        the selected image indices, in ``order``: one image drawn from each portion of
        ``round(1 / fraction)`` consecutive images (the last portion also takes the remainder,
        as the paper's last portion of 6), then those without a labelled person dropped.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"mask_fraction must be in (0, 1], got {fraction}")
    size = max(1, int(round(1.0 / fraction)))
    num_portions = max(1, len(order) // size)
    chosen = []
    for p in range(num_portions):
        end = len(order) if p == num_portions - 1 else (p + 1) * size
        portion = order[p * size : end]
        if portion:
            chosen.append(int(portion[int(rng.integers(0, len(portion)))]))
    return [i for i in chosen if has_labelled[i]]


def owner_polygons(owner: np.ndarray, index: int) -> list[list[float]]:
    """Outer outlines of the pixels of ``owner`` (H, W) equal to ``index``: one flat polygon per
    connected piece with at least 3 vertices, through the boundary pixels' centres (so a
    rasterized polygon lacks about half a pixel of rim; a piece thinner than 2 pixels may
    vanish, as in a hand-drawn outline)."""
    mask = (owner == index).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.float64) + 0.5
        if len(points) >= 3:
            polygons.append([round(float(v), 2) for v in points.reshape(-1)])
    return polygons


def _write_json(path: str, payload: dict) -> None:
    with open(path, "w") as f:
        json.dump(payload, f)
        f.write("\n")


def write_labelme_masks(out_dir: str, images: Sequence[ImagePersonMasks]) -> None:
    """One labelme JSON per image in ``out_dir/masks/labelme`` (``imagePath`` relative to it)."""
    folder = os.path.join(out_dir, LABELME_MASK_DIR)
    os.makedirs(folder, exist_ok=True)
    for image in images:
        shapes = [
            {
                "label": "person",
                "points": np.asarray(polygon).reshape(-1, 2).tolist(),
                "group_id": person,
                "description": "",
                "shape_type": "polygon",
                "flags": {},
            }
            for person, polygons in enumerate(image.persons, start=1)
            for polygon in polygons
        ]
        stem = os.path.splitext(os.path.basename(image.image_path))[0]
        _write_json(
            os.path.join(folder, f"{stem}.json"),
            {
                "version": _LABELME_VERSION,
                "flags": {},
                "shapes": shapes,
                "imagePath": os.path.relpath(os.path.join(out_dir, image.image_path), folder),
                "imageData": None,
                "imageHeight": image.height,
                "imageWidth": image.width,
            },
        )


def write_coco_masks(out_dir: str, images: Sequence[ImagePersonMasks]) -> None:
    """``out_dir/masks/instances_train.json``: COCO instances, one annotation per person."""
    coco_images, annotations = [], []
    for image_id, image in enumerate(images, start=1):
        coco_images.append(
            {
                "id": image_id,
                "file_name": os.path.basename(image.image_path),
                "height": image.height,
                "width": image.width,
            }
        )
        for polygons in image.persons:
            points = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polygons])
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            area = sum(
                float(cv2.contourArea(np.asarray(p, np.float32).reshape(-1, 2))) for p in polygons
            )
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": [list(p) for p in polygons],
                    "area": round(area, 2),
                    "bbox": [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                    "iscrowd": 0,
                }
            )
    path = os.path.join(out_dir, COCO_MASK_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_json(
        path,
        {
            "info": {"description": "toy person masks (person_search.data.toy)"},
            "images": coco_images,
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
        },
    )
