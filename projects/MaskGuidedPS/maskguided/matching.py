"""Which ground-truth person a mask instance belongs to: by its box, never guessed.

An annotated mask does not say which box of the dataset it outlines, so each instance
(:class:`~.mask_records.MaskInstance`) is matched by the box around its pieces (clipped to the
image), against *every* person box of the image:

1. the boxes with IoU >= ``min_iou``: exactly one is the match, two or more make it ambiguous;
2. when none, the boxes containing at least ``min_containment`` of its box's area (the visible
   part of an occluded person is much smaller than its box): exactly one is the match, two or
   more make it ambiguous.

An instance that matches no box, several boxes, or the box of an *unlabelled* person (the paper
annotated labelled persons only) is skipped and reported with its file and element. Instances
matched to the same labelled person (a body split by an occluder, a separately drawn bag) are
merged into that person's mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .mask_records import MaskInstance, MaskIssue

__all__ = ["MatchRule", "box_iou_containment", "match_instances"]


@dataclass(frozen=True)
class MatchRule:
    """Thresholds of the matching (config ``INPUT.MASKGUIDED.MATCH_IOU`` / ``_CONTAINMENT``)."""

    min_iou: float = 0.5
    min_containment: float = 0.9

    def __post_init__(self):
        for name in ("min_iou", "min_containment"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"MatchRule.{name} must be in (0, 1], got {value}")


def box_iou_containment(box: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU of the XYXY ``box`` (4,) with each of ``boxes`` (N, 4), and the fraction of
    ``box``'s area inside each; both (N,) float64."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    area = float(np.prod(box[2:] - box[:2]))
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = area + areas - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    inside = inter / area if area > 0 else np.zeros_like(inter)
    return iou, inside


def _match_one(instance: MaskInstance, boxes: np.ndarray, rule: MatchRule) -> tuple[int, str]:
    """(box index, "") or (-1, why not)."""
    if len(boxes) == 0:
        return -1, "the image has no person box"
    iou, inside = box_iou_containment(instance.box, boxes)
    for values, threshold, what in (
        (iou, rule.min_iou, "IoU"),
        (inside, rule.min_containment, "containment"),
    ):
        hits = np.flatnonzero(values >= threshold)
        if len(hits) == 1:
            return int(hits[0]), ""
        if len(hits) > 1:
            listed = ", ".join(f"{int(h)} ({what} {values[h]:.2f})" for h in hits)
            return -1, f"matches {len(hits)} person boxes by {what} >= {threshold:g}: {listed}"
    best = int(np.argmax(iou))
    return -1, (
        f"matches no person box (best: box {best}, IoU {iou[best]:.2f} < {rule.min_iou:g}; "
        f"most inside: box {int(np.argmax(inside))}, containment {inside.max():.2f} < "
        f"{rule.min_containment:g})"
    )


def match_instances(
    instances: Sequence[MaskInstance],
    boxes: np.ndarray,
    person_ids: Sequence[int],
    rule: MatchRule,
) -> tuple[dict[int, list[MaskInstance]], list[MaskIssue]]:
    """Match the instances of one image to its person boxes.

    Args:
        boxes: (N, 4) XYXY person boxes of the image (the dataset dict's annotations, in
            order), in the mask file's pixel coordinates.
        person_ids: (N,) their ids, -1 for unlabelled persons.

    Returns:
        per matched box index (labelled persons only), its instances; the skipped ones.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    matched: dict[int, list[MaskInstance]] = {}
    issues = []
    for instance in instances:
        index, why = _match_one(instance, boxes, rule)
        if index >= 0 and person_ids[index] < 0:
            why = f"matches the box of unlabelled person {index} (masks train labelled ones)"
            index = -1
        if index < 0:
            box = ", ".join(f"{v:.1f}" for v in instance.box)
            issues.append(MaskIssue(instance.where, f"mask box [{box}] {why}"))
            continue
        matched.setdefault(index, []).append(instance)
    return matched, issues
