"""The person-search test protocol as data: queries and, per protocol variant, their galleries.

A person-search test dataset (e.g. ``cuhk_sysu_test``, ``prw_test``) is one list of
Detectron2 dataset dicts holding the gallery scene images *and* one dict per query (marked by
``"query_index"``), so that one ``inference_on_dataset`` pass produces everything. Its
:class:`SearchProtocol` comes from
:func:`person_search.data.datasets.get_search_protocol` (a cached function of the dataset name,
also readable as ``MetadataCatalog.get(name).search_protocol``), which the
:class:`~person_search.evaluation.PersonSearchEvaluator` reads. Loaders build it; the evaluator
never reads dataset files itself.

Conventions: boxes are ``XYXY_ABS`` float (x2 = x + w for datasets that store x, y, w, h),
image ids are the scene file names without directory (``s15535.jpg``, ``c1s1_000151.jpg``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["QueryGalleries", "SearchProtocol", "SearchQuery"]


@dataclass(frozen=True)
class SearchQuery:
    """One query person: a given box in a given scene image."""

    image_id: str  # scene image holding the query box
    box: np.ndarray  # (4,) float64 XYXY_ABS, in original image pixels
    person_id: int  # the dataset's own (original) identity id
    camera_id: int = -1  # -1 when the dataset has no cameras (CUHK-SYSU)


@dataclass
class QueryGalleries:
    """One evaluation variant of a protocol (e.g. CUHK-SYSU gallery size 100, PRW cross-camera).

    Attributes:
        name: variant name used in metric keys (``"gallery_100"``, ``"all"``, ``"cross_camera"``,
            ``"occlusion"`` ...).
        query_indices: (Q,) int64 indices into ``SearchProtocol.queries`` that this variant
            evaluates (all queries, or a subset such as CUHK-SYSU's occlusion queries).
        galleries: per evaluated query, (N_q,) int64 indices into
            ``SearchProtocol.gallery_image_ids``: the images to search. ``None`` means "every
            gallery image except the query's own image" (PRW), minus the query camera's images
            when ``cross_camera`` is set. A list may name an image twice (a quirk of CUHK-SYSU's
            files): its detections are scored once, its ground truth counted twice. A list may
            name the query's own image (another quirk): it is searched as listed, as in the
            community's evaluation, so that numbers compare with published tables.
        positives: per evaluated query, a pair ``(image_indices (k,) int64, boxes (k, 4)
            float64 XYXY_ABS)``: where the query person is in the searched images. These count
            in ``count_gt`` whether detected or not. Entries outside the searched images are
            ignored.
        cross_camera: drop gallery images of the query's camera (needs camera ids).
    """

    name: str
    query_indices: np.ndarray
    galleries: list[np.ndarray] | None
    positives: list[tuple[np.ndarray, np.ndarray]]
    cross_camera: bool = False


@dataclass
class SearchProtocol:
    """Everything the search evaluation needs, independent of any model output.

    Attributes:
        name: ``"cuhk_sysu"`` or ``"prw"`` (or ``"toy"`` variants of them).
        gallery_image_ids: ids of the gallery scene images, in a fixed order.
        gallery_camera_ids: (G,) int64 camera of each gallery image (-1 unknown).
        queries: all queries, in a fixed order (``query_index`` in the dataset dicts).
        variant_loaders: variant name -> zero-argument callable building its
            :class:`QueryGalleries` (built when first asked for, then kept: CUHK-SYSU's large
            gallery lists are read only when that variant is evaluated, once per process).
        default_variant: the headline variant (``"gallery_100"`` for CUHK-SYSU, ``"all"`` for
            PRW), reported as ``search/mAP`` and ``search/top1``.
    """

    name: str
    gallery_image_ids: list[str]
    gallery_camera_ids: np.ndarray
    queries: list[SearchQuery]
    variant_loaders: dict[str, Callable[[], QueryGalleries]] = field(default_factory=dict)
    default_variant: str = "all"
    _built: dict[str, QueryGalleries] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _check_known(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in self.variant_loaders]
        if unknown:
            known = ", ".join(sorted(self.variant_loaders))
            raise KeyError(
                f"search protocol {self.name!r} has no variant {unknown[0]!r} (known: {known})"
            )

    def variant(self, name: str) -> QueryGalleries:
        """The named variant, built on the first call; raises ``KeyError`` listing the known
        ones."""
        self._check_known([name])
        if name not in self._built:
            self._built[name] = self.variant_loaders[name]()
        return self._built[name]

    def restricted(self, names: Sequence[str]) -> SearchProtocol:
        """The same protocol with only the variants ``names`` (built by, and kept in, this
        one); raises ``KeyError`` for an unknown name."""
        self._check_known(names)
        loaders = {n: functools.partial(self.variant, n) for n in names}
        return dataclasses.replace(self, variant_loaders=loaders)
