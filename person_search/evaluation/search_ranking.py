"""The one person-search ranking: which detections a query searches, their similarity (CBGM
re-scored when on) and which of them are true positives.

:class:`SearchRanker` is used by the evaluation (:func:`.search_metrics.evaluate_search`, hence
:class:`~.person_search_evaluator.PersonSearchEvaluator` and ``tools/evaluate_saved.py``) and by
the pictures (:mod:`person_search.visualization.search_visualizer`), so a picture shows the
ranking the numbers were computed from. The rules (``person-search-protocol.md``):

* Only gallery detections with ``score >= det_thresh`` take part. Similarity is the cosine of
  the embeddings (both sides are L2-normalised here, whatever the model returned).
* The searched images of a query: the variant's explicit list (CUHK-SYSU ``TestG<N>``), or,
  when the list is ``None``, every gallery image except the query's own image (PRW), minus the
  query camera's images when the variant is ``cross_camera``. Each searched image is scored
  once, even when a list names it twice.
* CBGM (optional, :mod:`.cbgm`) re-scores the similarities before the true positives are
  chosen, as SeqNet does.
* In every searched image holding the query person (first ground-truth box listed for that
  image, width ``w``, height ``h``), the most similar detection with
  ``IoU >= min(0.5, w*h / ((w+10)*(h+10)))`` is the single true positive; every other
  detection is a negative. ``count_gt`` = number of ``positives`` entries whose image is
  searched (a list naming an image twice comes with two entries, so its ground truth counts
  twice while its detections are scored once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from person_search.data.search_protocol import QueryGalleries, SearchProtocol

from .array_ops import csr_offsets, expand_ranges, l2_normalize, paired_iou
from .cbgm import CBGMParams, cbgm_rescore, check_query_contexts, context_nodes

__all__ = [
    "GalleryDetections",
    "QueryRanking",
    "QueryTables",
    "SearchRanker",
    "search_iou_thresholds",
]

SEARCH_MAX_IOU = 0.5  # IoU a detection needs on a large ground-truth box to be a true positive
SMALL_BOX_MARGIN = 10.0  # pixels added to w and h in the small-box IoU rule


def search_iou_thresholds(gt_boxes: np.ndarray) -> np.ndarray:
    """IoU a detection needs on each gt box: ``min(0.5, w*h / ((w+10)*(h+10)))``; (N, 4) -> (N,)."""
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64)
    w = gt_boxes[:, 2] - gt_boxes[:, 0]
    h = gt_boxes[:, 3] - gt_boxes[:, 1]
    small = (w * h) / ((w + SMALL_BOX_MARGIN) * (h + SMALL_BOX_MARGIN))
    return np.minimum(SEARCH_MAX_IOU, small)


@dataclass
class GalleryDetections:
    """Detections of a list of images, flattened by image (CSR): the gallery images in protocol
    gallery order or, for CBGM, each query's image in query order (its context).

    Attributes:
        offsets: (G+1,) int64; image ``g`` owns rows ``offsets[g]:offsets[g+1]``.
        boxes: (M, 4) float32 XYXY_ABS in original image pixels.
        scores: (M,) float32 detection scores.
        embeddings: (M, D) float32 re-id embeddings.
    """

    offsets: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray

    def __post_init__(self) -> None:
        """Arrays to their dtypes and shapes; ``ValueError`` if sizes disagree or a score is not
        finite."""
        self.scores = np.asarray(self.scores, dtype=np.float32).ravel()
        num = len(self.scores)
        self.offsets = csr_offsets(self.offsets, num, "GalleryDetections")
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        if self.embeddings.ndim != 2 or len(self.embeddings) != num or len(self.boxes) != num:
            raise ValueError(
                f"GalleryDetections: {num} scores but boxes {self.boxes.shape} and "
                f"embeddings {self.embeddings.shape}"
            )
        if not np.all(np.isfinite(self.scores)):
            raise ValueError("GalleryDetections: non-finite detection scores")

    @classmethod
    def from_per_image(
        cls,
        per_image: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
        embedding_dim: int,
    ) -> GalleryDetections:
        """Build from one ``(boxes (n, 4), scores (n,), embeddings (n, D))`` per image."""
        counts = np.array([len(scores) for _, scores, _ in per_image], dtype=np.int64)
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)

        def cat(parts: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
            parts = [np.asarray(p, dtype=np.float32).reshape(-1, *shape) for p in parts]
            return np.concatenate(parts) if parts else np.zeros((0, *shape), np.float32)

        return cls(
            offsets=offsets,
            boxes=cat([b for b, _, _ in per_image], (4,)),
            scores=cat([s for _, s, _ in per_image], ()),
            embeddings=cat([e for _, _, e in per_image], (embedding_dim,)),
        )

    @property
    def num_images(self) -> int:
        return len(self.offsets) - 1

    def image_indices(self) -> np.ndarray:
        """(M,) int64 image index of each detection."""
        return np.repeat(np.arange(self.num_images, dtype=np.int64), np.diff(self.offsets))

    def above(self, det_thresh: float) -> GalleryDetections:
        """The detections with ``score >= det_thresh``, same image order."""
        keep = self.scores >= det_thresh
        kept_before = np.r_[0, np.cumsum(keep)]
        return GalleryDetections(
            offsets=kept_before[self.offsets],
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            embeddings=self.embeddings[keep],
        )


@dataclass
class QueryRanking:
    """One query's searched detections, most similar first.

    Attributes:
        query_index: index into ``SearchProtocol.queries``.
        detections: (n,) int64 rows of :attr:`SearchRanker.dets` (the thresholded detections).
            Order: decreasing similarity; among equal similarities negatives come first (the
            metrics' pessimistic top-k rule), then gallery order.
        similarities: (n,) float32, after CBGM when it is on.
        true_positive: (n,) bool.
        count_gt: occurrences of the query person in its searched images (detected or not).
    """

    query_index: int
    detections: np.ndarray
    similarities: np.ndarray
    true_positive: np.ndarray
    count_gt: int


@dataclass
class QueryTables:
    """Per query of a variant, what does not depend on the similarities, for all its queries at
    once (CSR by query position): the positive candidates and, for explicit galleries, the
    searched detections. Built by :meth:`SearchRanker.query_tables`.

    Attributes:
        count_gt: (P,) int64, occurrences of the query person in its searched images.
        candidates: (C,) int64 detection rows of the searched images holding the query person,
            by query, then image (gallery order); ``candidate_offsets`` (P+1,).
        iou_ok: (C,) bool, the candidate passes the IoU rule against its image's gt box.
        image_starts: (S,) first position of each candidate image's run, relative to its
            query's slice of ``candidates``; ``image_offsets`` (P+1,).
        searched: (N,) int64 searched detections (increasing per query) and
            ``searched_offsets`` (P+1,); ``None`` when not built (``sparse=False``).
    """

    count_gt: np.ndarray
    candidates: np.ndarray
    candidate_offsets: np.ndarray
    iou_ok: np.ndarray
    image_starts: np.ndarray
    image_offsets: np.ndarray
    searched: np.ndarray | None = None
    searched_offsets: np.ndarray | None = None

    def candidates_of(self, pos: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """``(count_gt, candidates (c,), iou_ok (c,), image_starts)`` of the ``pos``-th query."""
        c0, c1 = self.candidate_offsets[pos], self.candidate_offsets[pos + 1]
        i0, i1 = self.image_offsets[pos], self.image_offsets[pos + 1]
        return (
            int(self.count_gt[pos]),
            self.candidates[c0:c1],
            self.iou_ok[c0:c1],
            self.image_starts[i0:i1],
        )

    def searched_of(self, pos: int) -> np.ndarray:
        """(n,) the ``pos``-th query's searched detections, increasing."""
        if self.searched is None:
            raise ValueError("these query tables were built without the searched detections")
        return self.searched[self.searched_offsets[pos] : self.searched_offsets[pos + 1]]


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """``np.unique(keys)`` for int64 keys by a sort (faster here than NumPy's hash-based unique
    of large arrays)."""
    keys = np.sort(keys)
    return keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys


def _offsets(owner: np.ndarray, num: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(num+1,) int64 CSR offsets of rows owned by ``owner`` (sorted), each ``weights`` long."""
    counts = np.bincount(owner, weights=weights, minlength=num)
    return np.r_[0, np.cumsum(counts)].astype(np.int64)


def _check_variant(v: QueryGalleries, num_queries: int, num_images: int) -> None:
    q = len(v.query_indices)
    if np.any((v.query_indices < 0) | (v.query_indices >= num_queries)):
        raise ValueError(f"variant {v.name!r}: query index out of range [0, {num_queries})")
    if len(v.positives) != q or (v.galleries is not None and len(v.galleries) != q):
        raise ValueError(
            f"variant {v.name!r}: {q} queries but {len(v.positives)} positives and "
            f"{'no' if v.galleries is None else len(v.galleries)} galleries"
        )
    if v.galleries is not None:
        for gal in v.galleries:
            if len(gal) and (gal.min() < 0 or gal.max() >= num_images):
                raise ValueError(f"variant {v.name!r}: gallery index out of [0, {num_images})")


class SearchRanker:
    """Ranks the thresholded gallery detections for the queries of a protocol.

    Args:
        protocol: the test protocol; ``detections`` follow its ``gallery_image_ids`` order.
        detections: every gallery detection (any score; ``det_thresh`` is applied here).
        query_embeddings: (len(protocol.queries), D).
        det_thresh: detections with ``score >= det_thresh`` are searched.
        cbgm: CBGM parameters, ``None`` to rank by plain similarity.
        contexts: with ``cbgm``, each query's context in query order (:mod:`.cbgm`).

    Attributes:
        dets: the detections with ``score >= det_thresh``; det_image: (M,) their image.
        gallery_emb: (M, D) and query_emb: (Q, D), L2-normalised float32.
    """

    def __init__(
        self,
        protocol: SearchProtocol,
        detections: GalleryDetections,
        query_embeddings: np.ndarray,
        *,
        det_thresh: float,
        cbgm: CBGMParams | None = None,
        contexts: GalleryDetections | None = None,
    ) -> None:
        num_queries = len(protocol.queries)
        query_embeddings = np.asarray(query_embeddings)
        if query_embeddings.ndim != 2 or len(query_embeddings) != num_queries:
            raise ValueError(
                f"query_embeddings has shape {query_embeddings.shape}; expected ({num_queries}, D)"
            )
        if detections.num_images != len(protocol.gallery_image_ids):
            raise ValueError(
                f"detections cover {detections.num_images} images; the protocol has "
                f"{len(protocol.gallery_image_ids)} gallery images"
            )
        if detections.embeddings.shape[1] != query_embeddings.shape[1]:
            raise ValueError(
                f"embedding sizes differ: gallery {detections.embeddings.shape[1]}, "
                f"query {query_embeddings.shape[1]}"
            )
        if cbgm is not None:
            check_query_contexts(contexts, num_queries, query_embeddings.shape[1])
        self.protocol = protocol
        self.det_thresh = det_thresh
        self.cbgm = cbgm
        self.contexts = contexts
        self.dets = detections.above(det_thresh)
        self.det_image = self.dets.image_indices()
        self.gallery_emb = l2_normalize(self.dets.embeddings)
        self.query_emb = l2_normalize(query_embeddings)
        self.camera_ids = np.asarray(protocol.gallery_camera_ids, dtype=np.int64)
        index_of_image = {name: i for i, name in enumerate(protocol.gallery_image_ids)}
        self.query_image = np.array([index_of_image.get(q.image_id, -1) for q in protocol.queries])
        self.query_camera = np.array([q.camera_id for q in protocol.queries], dtype=np.int64)
        self._context: tuple[int, np.ndarray] | None = None  # (query, nodes) of the last query

    def build_variants(
        self, variants: Sequence[str] | Sequence[QueryGalleries] | None
    ) -> list[QueryGalleries]:
        """Variant names (or built variants; ``None`` = all of the protocol), built and checked."""
        if variants is None:
            variants = list(self.protocol.variant_loaders)
        built = [v if isinstance(v, QueryGalleries) else self.protocol.variant(v) for v in variants]
        for v in built:
            _check_variant(v, len(self.protocol.queries), self.dets.num_images)
        return built

    def searched(self, variant: QueryGalleries, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """Boolean mask (G,) of the images searched for the variant's ``pos``-th query and the
        searched detections' indices (n,), increasing.

        An explicit gallery list is searched as listed; with ``None`` (every gallery image) the
        query's own image is left out (:meth:`query_tables` gives the searched detections of
        every query of a variant with explicit galleries at once).
        """
        qi = int(variant.query_indices[pos])
        keep = np.zeros(self.dets.num_images, dtype=bool)
        if variant.galleries is None:
            keep[:] = True
            if self.query_image[qi] >= 0:
                keep[self.query_image[qi]] = False
        else:
            keep[np.asarray(variant.galleries[pos])] = True
        if variant.cross_camera:
            if self.query_camera[qi] < 0:
                raise ValueError("cross-camera evaluation needs the query's camera id (got -1)")
            keep &= self.camera_ids != self.query_camera[qi]
        return keep, np.flatnonzero(keep[self.det_image])

    def similarities(
        self,
        query: int,
        det_idx: np.ndarray,
        *,
        dense: np.ndarray | None = None,
        buffer: np.ndarray | None = None,
    ) -> np.ndarray:
        """(M,) similarity of ``query`` to the detections, valid at ``det_idx`` (CBGM applied
        there when on).

        Args:
            dense: the query's (M,) similarity to every detection, when already computed.
            buffer: an (M,) float32 array to write the similarities at ``det_idx`` into.
        """
        if dense is not None:
            sims = dense
        else:
            sims = buffer if buffer is not None else np.zeros(len(self.dets.scores), np.float32)
            sims[det_idx] = self.gallery_emb[det_idx] @ self.query_emb[query]
        if self.cbgm is None:
            return sims
        if self._context is None or self._context[0] != query:
            nodes = context_nodes(self.contexts, query, det_thresh=self.det_thresh, k2=self.cbgm.k2)
            self._context = (query, nodes)
        sims = sims.copy()
        sims[det_idx] = cbgm_rescore(
            sims[det_idx],
            self.det_image[det_idx],
            det_idx,
            self.gallery_emb,
            self._context[1],
            self.cbgm.k1,
        )
        return sims

    def positive_candidates(
        self, sims: np.ndarray, keep: np.ndarray, positives: tuple[np.ndarray, np.ndarray]
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """The detections that may be a true positive (one query; :meth:`query_tables` builds
        the same for every query of a variant at once).

        Args:
            sims: (M,) similarities (read in the searched images holding the person).
            keep: (G,) searched images.
            positives: (image_indices (k,), boxes (k, 4)) of the query person.
        Returns:
            ``count_gt``; ``cand`` (c,) the detections of the searched images holding the
            person, by image; ``cand_sims`` (c,) their similarity, ``-inf`` when the IoU rule
            fails; ``starts`` the first position in ``cand`` of each image with detections.
        """
        images = np.asarray(positives[0], dtype=np.int64).ravel()
        boxes = np.asarray(positives[1]).reshape(-1, 4)
        owner = np.zeros(len(images), dtype=np.int64)
        tables = self._candidate_tables(owner, images, boxes, keep[images], 1)
        count_gt, cand, iou_ok, starts = tables.candidates_of(0)
        return count_gt, cand, np.where(iou_ok, sims[cand], -np.inf), starts

    def query_tables(self, variant: QueryGalleries, *, sparse: bool = False) -> QueryTables:
        """Every query's positive candidates in ``variant`` and, with ``sparse`` (explicit
        galleries only), its searched detections: vectorised over the queries, the same as
        :meth:`positive_candidates` / :meth:`searched` query by query."""
        num = len(variant.query_indices)
        query_indices = np.asarray(variant.query_indices, dtype=np.int64)
        if variant.cross_camera and num and np.any(self.query_camera[query_indices] < 0):
            raise ValueError("cross-camera evaluation needs the query's camera id (got -1)")
        num_images = self.dets.num_images
        lengths = [len(np.asarray(p[0]).ravel()) for p in variant.positives]
        owner = np.repeat(np.arange(num, dtype=np.int64), lengths)
        images = np.concatenate(
            [np.asarray(p[0], dtype=np.int64).ravel() for p in variant.positives]
            or [np.zeros(0, np.int64)]
        )
        boxes = np.concatenate(
            [np.asarray(p[1], dtype=np.float64).reshape(-1, 4) for p in variant.positives]
            or [np.zeros((0, 4))]
        )
        gallery_keys = None
        if variant.galleries is None:
            in_gallery = images != self.query_image[query_indices[owner]]
        else:
            gallery_owner = np.repeat(
                np.arange(num, dtype=np.int64), [len(g) for g in variant.galleries]
            )
            gallery_images = np.concatenate(
                [np.asarray(g, dtype=np.int64) for g in variant.galleries]
                or [np.zeros(0, np.int64)]
            )
            gallery_keys = _sorted_unique(gallery_owner * num_images + gallery_images)
            keys = owner * num_images + images
            at = np.minimum(np.searchsorted(gallery_keys, keys), max(len(gallery_keys) - 1, 0))
            in_gallery = (gallery_keys[at] == keys) if len(gallery_keys) else keys < 0
        if variant.cross_camera:
            in_gallery &= self.camera_ids[images] != self.query_camera[query_indices[owner]]
        tables = self._candidate_tables(owner, images, boxes, in_gallery, num)
        if sparse:
            if gallery_keys is None:
                raise ValueError(f"variant {variant.name!r}: sparse search needs gallery lists")
            searched_owner, searched_images = np.divmod(gallery_keys, num_images)
            if variant.cross_camera:
                other = (
                    self.camera_ids[searched_images]
                    != self.query_camera[query_indices[searched_owner]]
                )
                searched_owner, searched_images = searched_owner[other], searched_images[other]
            starts = self.dets.offsets[searched_images]
            ends = self.dets.offsets[searched_images + 1]
            tables.searched = expand_ranges(starts, ends)
            tables.searched_offsets = _offsets(searched_owner, num, ends - starts)
        return tables

    def _candidate_tables(
        self,
        owner: np.ndarray,
        images: np.ndarray,
        boxes: np.ndarray,
        in_gallery: np.ndarray,
        num_queries: int,
    ) -> QueryTables:
        """Positive candidates of ``num_queries`` queries from their flattened positives:
        ``owner`` (k,) query position of each entry (sorted), ``images`` (k,), ``boxes`` (k, 4),
        ``in_gallery`` (k,) whether the entry's image is searched by its query."""
        owner, images, boxes = owner[in_gallery], images[in_gallery], boxes[in_gallery]
        count_gt = np.bincount(owner, minlength=num_queries).astype(np.int64)
        # The first box listed for an image is its ground truth (a duplicate entry counts in
        # count_gt only); keys sort by query, then image.
        num_images = self.dets.num_images
        keys, first = np.unique(owner * num_images + images, return_index=True)
        image_owner, image = np.divmod(keys, num_images)
        gt_boxes = boxes[first]
        starts, ends = self.dets.offsets[image], self.dets.offsets[image + 1]
        counts = ends - starts
        cand = expand_ranges(starts, ends)
        group = np.repeat(np.arange(len(image)), counts)
        iou = paired_iou(self.dets.boxes[cand], gt_boxes[group])
        iou_ok = iou >= search_iou_thresholds(gt_boxes)[group]
        candidate_offsets = _offsets(image_owner, num_queries, counts)
        with_dets = counts > 0
        run_starts = np.cumsum(counts) - counts - candidate_offsets[image_owner]
        return QueryTables(
            count_gt=count_gt,
            candidates=cand,
            candidate_offsets=candidate_offsets,
            iou_ok=iou_ok,
            image_starts=run_starts[with_dets],
            image_offsets=_offsets(image_owner[with_dets], num_queries),
        )

    def true_positives(
        self, sims: np.ndarray, keep: np.ndarray, positives: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, int]:
        """The true positives' detection indices (one per image at most) and ``count_gt``."""
        count_gt, cand, cand_sims, starts = self.positive_candidates(sims, keep, positives)
        if len(cand) == 0:
            return np.zeros(0, dtype=np.int64), count_gt
        best = np.maximum.reduceat(cand_sims, starts)
        counts = np.diff(np.r_[starts, len(cand)])
        hit = np.flatnonzero((cand_sims == np.repeat(best, counts)) & np.isfinite(cand_sims))
        _, first = np.unique(np.searchsorted(starts, hit, side="right"), return_index=True)
        return cand[hit[first]], count_gt  # the first best of each image

    def rank(self, variant: QueryGalleries, query_index: int) -> QueryRanking:
        """The ranking of one query of ``variant`` (all its searched detections)."""
        hits = np.flatnonzero(np.asarray(variant.query_indices) == query_index)
        if len(hits) == 0:
            raise ValueError(
                f"query {query_index} is not evaluated in protocol variant {variant.name!r}"
            )
        pos = int(hits[0])
        keep, det_idx = self.searched(variant, pos)
        sims = self.similarities(query_index, det_idx)
        tps, count_gt = self.true_positives(sims, keep, variant.positives[pos])
        searched_sims = sims[det_idx]
        is_tp = np.isin(det_idx, tps)
        order = np.lexsort((det_idx, is_tp, -searched_sims))
        return QueryRanking(
            query_index=query_index,
            detections=det_idx[order],
            similarities=searched_sims[order],
            true_positive=is_tp[order],
            count_gt=count_gt,
        )
