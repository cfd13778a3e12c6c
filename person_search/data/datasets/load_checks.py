"""One policy for bad boxes in every person-search loader, and the summary of what a load did.

Annotation boxes (CUHK-SYSU ``Images.mat``, PRW ``annotations/*.mat`` rows), stored x, y, w, h:

* a non-finite value (NaN, inf): error naming the file, the row and the values;
* a negative width or height (an inverted box): error naming the file, the row and the values,
  unless negative boxes are opted into being dropped (``DATASETS.DROP_NEGATIVE_BOXES``, see
  :mod:`.options`): then dropped and counted;
* zero width or height: dropped and counted, as the published loaders do.

Protocol boxes (queries, and CUHK-SYSU's listed positions of a query's person) are never
dropped, as that would change the protocol: a non-finite or negative box is an error, a query
box without area too; a zero-area listed position is kept as listed (as the community's
evaluation does: it counts as a positive that no detection can match) and named in the summary.
A dropped annotation box that was a query's positive is named in the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..search_protocol import SearchProtocol
from .matfile import AnnotationError

__all__ = [
    "DROP_NEGATIVE",
    "DROP_OUTSIDE",
    "DROP_ZERO_AREA",
    "LoadSummary",
    "NAMED_EXAMPLES",
    "PersonSearchTestSplit",
    "PersonSearchTrainSplit",
    "check_annotation_boxes",
    "check_protocol_boxes",
]

# Reasons a box is dropped, as counted in LoadSummary.dropped.
DROP_ZERO_AREA = "zero width or height"
DROP_NEGATIVE = "negative width or height (DATASETS.DROP_NEGATIVE_BOXES)"
DROP_OUTSIDE = "no area left after clipping to the image's top-left corner"
# Notes printed with a summary (the rest are counted).
_NOTES_SHOWN = 10
# Examples a note names one by one (e.g. lost positives; the rest are counted).
NAMED_EXAMPLES = 5


@dataclass
class LoadSummary:
    """What one load of a dataset split read, kept and dropped.

    Attributes:
        dataset: what was loaded (e.g. ``"CUHK-SYSU test split at datasets/cuhk_sysu"``).
        images: images in the split (gallery images for a test split).
        boxes: person boxes kept.
        identities: distinct labelled identities among the kept boxes.
        queries: queries of a test split (None for a training split).
        variants: the search protocol's variants (test split).
        dropped: reason -> number of boxes dropped for it.
        clipped: kept boxes whose negative coordinates were clipped to 0 (PRW).
        notes: things that changed what the files state or that a user should check (a
            positive lost with a dropped box, a protocol box matching no annotation ...).
    """

    dataset: str
    images: int = 0
    boxes: int = 0
    identities: int = 0
    queries: int | None = None
    variants: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    clipped: int = 0
    notes: list[str] = field(default_factory=list)

    def drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def __str__(self) -> str:
        queries = "" if self.queries is None else f", {self.queries} queries"
        variants = f" (variants: {', '.join(self.variants)})" if self.variants else ""
        dropped = ", ".join(f"{n} ({reason})" for reason, n in self.dropped.items()) or "none"
        lines = [
            f"{self.dataset}: {self.images} images, {self.boxes} boxes, {self.identities} "
            f"identities{queries}{variants}; boxes dropped: {dropped}"
            + (f"; boxes clipped to the image: {self.clipped}" if self.clipped else "")
        ]
        lines += [f"  note: {text}" for text in self.notes[:_NOTES_SHOWN]]
        if len(self.notes) > _NOTES_SHOWN:
            lines.append(f"  ... and {len(self.notes) - _NOTES_SHOWN} more notes")
        return "\n".join(lines)


class PersonSearchTrainSplit(NamedTuple):
    """What a person-search loader returns for a training split."""

    dicts: list[dict]
    num_person_ids: int  # N: person_id in 0..N-1, -1 = unlabelled
    summary: LoadSummary


class PersonSearchTestSplit(NamedTuple):
    """What a person-search loader returns for a test split."""

    dicts: list[dict]  # gallery images, then one dict per query
    protocol: SearchProtocol
    summary: LoadSummary


def _values(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box.tolist()) + "]"


def check_annotation_boxes(
    xywh: np.ndarray,
    where: Callable[[int], str],
    summary: LoadSummary,
    *,
    drop_negative: bool,
) -> np.ndarray:
    """Apply the annotation-box policy to (N, 4) x, y, w, h boxes; returns the (N,) keep mask.

    Args:
        where: row index -> ``"file: location"`` for error messages.
        drop_negative: drop (and count) boxes with a negative width or height instead of
            raising.

    Raises:
        AnnotationError: a non-finite box, or (without ``drop_negative``) a negative size.
    """
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(xywh).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise AnnotationError(f"{where(i)}: box x, y, w, h = {_values(xywh[i])} is not finite")
    negative = (xywh[:, 2] < 0) | (xywh[:, 3] < 0)
    if negative.any() and not drop_negative:
        i = int(np.flatnonzero(negative)[0])
        raise AnnotationError(
            f"{where(i)}: box x, y, w, h = {_values(xywh[i])} has a negative width or height "
            "(DATASETS.DROP_NEGATIVE_BOXES True drops such boxes instead)"
        )
    zero = ~negative & ((xywh[:, 2] == 0) | (xywh[:, 3] == 0))
    summary.drop(DROP_NEGATIVE, int(negative.sum()))
    summary.drop(DROP_ZERO_AREA, int(zero.sum()))
    return ~(negative | zero)


def check_protocol_boxes(
    xywh: np.ndarray, where: Callable[[int], str], *, allow_zero_area: bool
) -> np.ndarray:
    """Check (N, 4) x, y, w, h protocol boxes; returns the (N,) mask of zero-area boxes (all
    False unless ``allow_zero_area``).

    Raises:
        AnnotationError: a non-finite box, a negative size, or (without ``allow_zero_area``) a
            box without area.
    """
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(xywh).all(axis=1)
    negative = finite & ((xywh[:, 2] < 0) | (xywh[:, 3] < 0))
    zero = finite & ~negative & ((xywh[:, 2] == 0) | (xywh[:, 3] == 0))
    bad = ~finite | negative | (zero & (not allow_zero_area))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = (
            "is not finite"
            if not finite[i]
            else "has a negative width or height"
            if negative[i]
            else "has no area"
        )
        raise AnnotationError(f"{where(i)}: box x, y, w, h = {_values(xywh[i])} {what}")
    return zero
