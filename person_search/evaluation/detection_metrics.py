"""Pedestrian detection metrics of the person-search protocols (gallery images), vectorised numpy.

Per gallery image: detections with ``score >= det_thresh`` against the ground-truth boxes (all
persons, or labelled persons only). A (detection, gt) pair is a match only if
``IoU >= 0.5`` **and** the gt is the detection's best gt **and** the detection is the gt's best
detection (first index on exact IoU ties, as ``np.argmax``). ``recall = matched gts / gts``;
``AP = average_precision(scores, matched) * recall`` over every detection of every image (so
undetected persons lower AP).

Labelled-only mode follows the reference code (SeqNet's ``eval_detection``): images without a
labelled person are skipped entirely, their detections counting as neither true nor false
positives. In the all-persons mode, detections on an image without any person are false
positives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from detectron2.structures import BoxMode

from .array_ops import csr_offsets, paired_iou
from .search_metrics import GalleryDetections, average_precision

__all__ = ["DetectionResult", "GalleryGroundTruth", "evaluate_detection"]

DETECTION_IOU = 0.5  # IoU of a matched detection-gt pair (all person-search papers)
UNLABELLED_PERSON_ID = -1  # person_id of an unlabelled person in the dataset dicts


@dataclass
class GalleryGroundTruth:
    """Ground-truth persons of every gallery image (CSR by image, protocol gallery order).

    Attributes:
        offsets: (G+1,) int64; boxes: (N, 4) float64 XYXY_ABS; person_ids: (N,) int64, -1 for
            unlabelled persons.
    """

    offsets: np.ndarray
    boxes: np.ndarray
    person_ids: np.ndarray

    def __post_init__(self) -> None:
        self.person_ids = np.asarray(self.person_ids, dtype=np.int64).ravel()
        n = len(self.person_ids)
        self.offsets = csr_offsets(self.offsets, n, "GalleryGroundTruth")
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if len(self.boxes) != n:
            raise ValueError(f"GalleryGroundTruth: {n} person ids but {len(self.boxes)} boxes")

    @property
    def num_images(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_dataset_dicts(
        cls, dataset_dicts: Sequence[dict[str, Any]], gallery_image_ids: Sequence[str]
    ) -> GalleryGroundTruth:
        """Collect the gallery images' annotations (query dicts are ignored).

        Raises ``ValueError`` naming the image when a gallery image is missing, listed twice,
        or has a box that is not ``XYXY_ABS``.
        """
        by_id: dict[str, list[dict[str, Any]]] = {}
        for d in dataset_dicts:
            if "query_index" in d:
                continue
            if d["image_id"] in by_id:
                raise ValueError(f"gallery image {d['image_id']!r} appears twice in the dataset")
            by_id[d["image_id"]] = d.get("annotations", [])
        boxes, pids, counts = [], [], []
        for image_id in gallery_image_ids:
            if image_id not in by_id:
                raise ValueError(
                    f"gallery image {image_id!r} of the protocol is not in the dataset"
                )
            annos = by_id[image_id]
            for a in annos:
                if a.get("bbox_mode", BoxMode.XYXY_ABS) != BoxMode.XYXY_ABS:
                    raise ValueError(f"image {image_id!r}: annotation bbox_mode is not XYXY_ABS")
                boxes.append(a["bbox"])
                pids.append(a["person_id"])
            counts.append(len(annos))
        return cls(
            offsets=np.r_[0, np.cumsum(counts, dtype=np.int64)],
            boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            person_ids=np.asarray(pids, dtype=np.int64),
        )

    def labelled(self) -> GalleryGroundTruth:
        """Only the labelled persons (``person_id != -1``)."""
        keep = self.person_ids != UNLABELLED_PERSON_ID
        kept_before = np.r_[0, np.cumsum(keep)]
        return GalleryGroundTruth(
            kept_before[self.offsets], self.boxes[keep], self.person_ids[keep]
        )


@dataclass
class DetectionResult:
    """ap, recall: fractions in [0, 1]; count_gt / count_tp: gts considered / matched."""

    ap: float
    recall: float
    count_gt: int
    count_tp: int


def _first_argmax_per_group(values: np.ndarray, group: np.ndarray, local: np.ndarray, n: int):
    """Per group (pairs sorted by group), the ``local`` index of the first maximum of ``values``.

    Returns (n,) int64, -1 for groups without pairs.
    """
    out = np.full(n, -1, dtype=np.int64)
    if len(values) == 0:
        return out
    starts = np.flatnonzero(np.r_[True, np.diff(group) != 0])
    gmax = np.maximum.reduceat(values, starts)
    gid = group[starts]
    is_max = values == np.repeat(gmax, np.diff(np.r_[starts, len(values)]))
    big = np.iinfo(np.int64).max
    out[gid] = np.minimum.reduceat(np.where(is_max, local, big), starts)
    return out


def evaluate_detection(
    gt: GalleryGroundTruth,
    detections: GalleryDetections,
    *,
    det_thresh: float,
    labelled_only: bool = False,
    iou_thresh: float = DETECTION_IOU,
) -> DetectionResult:
    """Detection AP and recall over the gallery images (see the module docstring)."""
    if gt.num_images != detections.num_images:
        raise ValueError(
            f"ground truth covers {gt.num_images} images, detections {detections.num_images}"
        )
    dets = detections.above(det_thresh)
    if labelled_only:
        gt = gt.labelled()
    n_gt = np.diff(gt.offsets)
    n_det = np.diff(dets.offsets)
    image_used = n_gt > 0 if labelled_only else np.ones(gt.num_images, dtype=bool)

    # All (detection, gt) pairs within each image, ordered by detection then gt.
    pairs_per_image = n_gt * n_det
    total = int(pairs_per_image.sum())
    image = np.repeat(np.arange(gt.num_images), pairs_per_image)
    k = np.arange(total) - np.repeat(np.cumsum(pairs_per_image) - pairs_per_image, pairs_per_image)
    d_local = k // np.maximum(n_gt[image], 1)
    g_local = k % np.maximum(n_gt[image], 1)
    d_glob = dets.offsets[image] + d_local
    g_glob = gt.offsets[image] + g_local
    iou = paired_iou(dets.boxes[d_glob], gt.boxes[g_glob])

    best_gt_of_det = _first_argmax_per_group(iou, d_glob, g_local, len(dets.scores))
    by_gt = np.lexsort((d_local, g_glob))
    best_det_of_gt = _first_argmax_per_group(
        iou[by_gt], g_glob[by_gt], d_local[by_gt], len(gt.person_ids)
    )
    matched = (
        (iou >= iou_thresh)
        & (best_gt_of_det[d_glob] == g_local)
        & (best_det_of_gt[g_glob] == d_local)
    )
    det_matched = np.zeros(len(dets.scores), dtype=bool)
    det_matched[d_glob[matched]] = True

    det_used = image_used[dets.image_indices()]
    count_gt = int(n_gt[image_used].sum())
    count_tp = int(matched.sum())
    if count_gt == 0:
        raise ValueError(
            "detection evaluation: no ground-truth person in the gallery"
            + (" (labelled only)" if labelled_only else "")
        )
    recall = count_tp / count_gt
    ap = average_precision(dets.scores[det_used], det_matched[det_used]) * recall
    return DetectionResult(ap=ap, recall=recall, count_gt=count_gt, count_tp=count_tp)
