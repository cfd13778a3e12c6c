"""Person-search ranking metrics (CUHK-SYSU / PRW protocols), vectorised, pure numpy.

The rules follow ``person-search-protocol.md`` (the community's evaluation, as in SeqNet's
``eval_search_cuhk``/``eval_search_prw``), restated here because every number depends on them:

* Only gallery detections with ``score >= det_thresh`` take part. Similarity is the cosine of
  the embeddings (both sides are L2-normalised here, whatever the model returned).
* The searched images of a query: the variant's explicit list (CUHK-SYSU ``TestG<N>``), or,
  when the list is ``None``, every gallery image except the query's own image (PRW), minus the
  query camera's images when the variant is ``cross_camera``. Each searched image is scored
  once, even when a list names it twice.
* In every searched image holding the query person (first ground-truth box listed for that
  image, width ``w``, height ``h``), the most similar detection with
  ``IoU >= min(0.5, w*h / ((w+10)*(h+10)))`` is the single true positive; every other
  detection is a negative.
* ``count_gt`` = number of ``positives`` entries whose image is searched (a list naming an
  image twice comes with two entries, so its ground truth counts twice while its detections
  are scored once: such a query cannot reach full recall, as in the reference code).
  ``count_tp`` = number of true positives found.
* ``AP = average_precision_score(labels, similarities) * count_tp / count_gt`` (scikit-learn's
  non-interpolated AP, tied scores forming one threshold), 0 when ``count_tp == 0``.
  :func:`average_precision` reproduces scikit-learn exactly; the per-query code uses the
  equivalent closed form ``sum_i P(s_i) / count_gt`` over the true positives ``i``, where
  ``P(s)`` is the precision of all detections with similarity ``>= s``.
* top-k (k = 1, 5, 10): 1 if a true positive is among the k most similar detections. Ties are
  resolved pessimistically: the hit needs fewer than ``k`` negatives with a similarity ``>=``
  the best true positive's (the reference code's order among exact ties is that of an unstable
  sort; a constant-embedding model must not score top-1 = 100%).
* mAP and top-k are means over the variant's queries. A query with ``count_gt == 0`` (no
  occurrence in its gallery, e.g. only same-camera occurrences in a cross-camera variant) has
  no defined AP: it is left out of the means and counted in ``num_skipped``.

Decisions where the protocol is silent or quirky:

* **The query image in an explicit list.** CUHK-SYSU's ``TestG<N>`` files are evaluated exactly
  as listed, as the community's evaluation (OIM, SeqNet) does, so that numbers compare with
  published tables: two queries list their own image (one with the identical box, one with
  another box of the same person); that image is searched like any other and its positive
  counts. The query image is excluded only when the variant's gallery is ``None`` (PRW, and the
  CUHK-SYSU full-set variant), where the protocol builds the gallery itself.
* **Queries without ground truth in their gallery**: skipped and counted (see above).
* **CBGM** (optional, :mod:`person_search.evaluation.cbgm`): applied to the similarities before
  the true positives are chosen, as SeqNet does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from person_search.data.search_protocol import QueryGalleries, SearchProtocol

from .array_ops import expand_ranges, paired_iou
from .cbgm import CBGMParams, cbgm_rescore, query_context

__all__ = [
    "TOPK",
    "GalleryDetections",
    "VariantResult",
    "average_precision",
    "evaluate_search",
    "expand_ranges",
    "l2_normalize",
    "paired_iou",
    "search_iou_thresholds",
    "summarize_search",
]

TOPK = (1, 5, 10)  # ranks reported as top-1/5/10
SEARCH_MAX_IOU = 0.5  # IoU a detection needs on a large ground-truth box to be a true positive
SMALL_BOX_MARGIN = 10.0  # pixels added to w and h in the small-box IoU rule
DEFAULT_QUERY_CHUNK = 128  # queries per similarity matmul (memory: chunk x #detections float32)
# A variant whose galleries average fewer than this fraction of the gallery images gets its
# similarities by gathering the searched embeddings per query; larger ones (and "all but the
# query image") by one matmul of a chunk of queries against every detection.
SPARSE_GALLERY_FRACTION = 1 / 16
# Up to this many true positives, "detections at least as similar as each true positive" is
# counted by comparisons (count_tp x n) rather than by sorting the query's n similarities.
_MAX_TP_COUNTED_BY_COMPARISON = 32
_NORM_EPS = 1e-12


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of an (N, D) array to float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, _NORM_EPS)


def search_iou_thresholds(gt_boxes: np.ndarray) -> np.ndarray:
    """IoU a detection needs on each gt box: ``min(0.5, w*h / ((w+10)*(h+10)))``; (N, 4) -> (N,)."""
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64)
    w = gt_boxes[:, 2] - gt_boxes[:, 0]
    h = gt_boxes[:, 3] - gt_boxes[:, 1]
    small = (w * h) / ((w + SMALL_BOX_MARGIN) * (h + SMALL_BOX_MARGIN))
    return np.minimum(SEARCH_MAX_IOU, small)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """scikit-learn's ``average_precision_score(labels, scores)`` for binary labels, exactly.

    Non-interpolated: ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds in
    decreasing order, all detections with equal scores entering at the same threshold.

    Args:
        scores: (N,) finite scores.
        labels: (N,) bool / {0, 1}.
    Returns:
        AP in [0, 1]; 0.0 when there is no positive (scikit-learn warns and returns 0 too).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    if not np.all(np.isfinite(scores)):
        raise ValueError("average_precision: scores must be finite")
    num_pos = int(labels.sum())
    if num_pos == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    group_end = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    tps = np.cumsum(labels[order])[group_end]
    precision = tps / (group_end + 1)
    tp_per_group = np.diff(np.r_[0, tps])
    return float(np.sum(tp_per_group * precision) / num_pos)


@dataclass
class GalleryDetections:
    """Detections of every gallery image, flattened by image (CSR) in protocol gallery order.

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
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).ravel()
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        num = len(self.scores)
        if (
            self.offsets.ndim != 1
            or len(self.offsets) < 1
            or self.offsets[0] != 0
            or self.offsets[-1] != num
            or np.any(np.diff(self.offsets) < 0)
        ):
            raise ValueError(f"GalleryDetections: offsets must rise from 0 to {num}")
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
        """Build from one ``(boxes (n, 4), scores (n,), embeddings (n, D))`` per gallery image."""
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
        """(M,) int64 gallery index of each detection."""
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
class VariantResult:
    """Per-query search outcome of one protocol variant.

    Attributes:
        name: variant name.
        query_indices: (Q,) indices into ``SearchProtocol.queries``.
        average_precision: (Q,) float64 AP (already scaled by count_tp / count_gt); NaN for a
            query with ``count_gt == 0``.
        topk_hits: (Q, len(TOPK)) bool.
        count_gt: (Q,) int64; count_tp: (Q,) int64.
    """

    name: str
    query_indices: np.ndarray
    average_precision: np.ndarray
    topk_hits: np.ndarray
    count_gt: np.ndarray
    count_tp: np.ndarray

    @property
    def evaluated(self) -> np.ndarray:
        """(Q,) bool: queries with ground truth in their gallery (those in the means)."""
        return self.count_gt > 0

    def summary(self) -> OrderedDict[str, float]:
        """mAP and top-k as fractions in [0, 1] over the evaluated queries, plus counts."""
        ok = self.evaluated
        out: OrderedDict[str, float] = OrderedDict()
        n = int(ok.sum())
        out["mAP"] = float(self.average_precision[ok].mean()) if n else float("nan")
        for j, k in enumerate(TOPK):
            out[f"top{k}"] = float(self.topk_hits[ok, j].mean()) if n else float("nan")
        out["num_queries"] = n
        out["num_skipped"] = int(len(ok) - n)
        return out


class _QueryScorer:
    """Scores one query's ranking given its similarity to every (thresholded) detection."""

    def __init__(self, protocol: SearchProtocol, dets: GalleryDetections) -> None:
        self.dets = dets
        self.det_image = dets.image_indices()
        self.num_images = dets.num_images
        self.camera_ids = np.asarray(protocol.gallery_camera_ids, dtype=np.int64)

    def searched(
        self,
        gallery: np.ndarray | None,
        query_image: int,
        query_camera: int,
        cross_camera: bool,
        sparse: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boolean mask (G,) of searched images and the searched detections' indices (n,).

        Args:
            gallery: (N_q,) listed gallery images, or ``None`` for every gallery image.
            query_image: gallery index of the query's own image, -1 if none; left out of the
                search when ``gallery`` is ``None`` (an explicit list is searched as listed).
            sparse: the searched images are few: gather their detection ranges instead of
                testing every detection's image.
        """
        keep = np.zeros(self.num_images, dtype=bool)
        if gallery is None:
            keep[:] = True
            if query_image >= 0:
                keep[query_image] = False
        else:
            keep[gallery] = True
        if cross_camera:
            if query_camera < 0:
                raise ValueError("cross-camera evaluation needs the query's camera id (got -1)")
            keep &= self.camera_ids != query_camera
        if sparse:
            images = np.flatnonzero(keep)
            det_idx = expand_ranges(self.dets.offsets[images], self.dets.offsets[images + 1])
        else:
            det_idx = np.flatnonzero(keep[self.det_image])
        return keep, det_idx

    def score(
        self,
        sims: np.ndarray,
        det_idx: np.ndarray,
        keep: np.ndarray,
        positives: tuple[np.ndarray, np.ndarray],
    ) -> tuple[float, np.ndarray, int, int]:
        """AP, top-k hits (len(TOPK),), count_gt, count_tp of one query.

        Args:
            sims: (M,) similarity of the query to every detection (entries outside ``det_idx``
                are ignored).
            det_idx: (n,) searched detections; keep: (G,) searched images.
            positives: (image_indices (k,), boxes (k, 4)) of the query person.
        """
        pos_images, pos_boxes = positives
        in_gallery = keep[pos_images]
        count_gt = int(in_gallery.sum())
        hits = np.zeros(len(TOPK), dtype=bool)
        if count_gt == 0:
            return float("nan"), hits, 0, 0
        pos_images = pos_images[in_gallery]
        pos_boxes = pos_boxes[in_gallery]
        # The first box listed for an image is its ground truth (a duplicate entry counts in
        # count_gt only).
        images, first = np.unique(pos_images, return_index=True)
        gt_boxes = pos_boxes[first]
        starts, ends = self.dets.offsets[images], self.dets.offsets[images + 1]
        counts = ends - starts
        cand = expand_ranges(starts, ends)  # detections in images holding the person
        if len(cand) == 0:
            return 0.0, hits, count_gt, 0
        group = np.repeat(np.arange(len(images)), counts)
        iou = paired_iou(self.dets.boxes[cand], gt_boxes[group])
        ok = iou >= search_iou_thresholds(gt_boxes)[group]
        cand_sims = np.where(ok, sims[cand], -np.inf)
        nonempty = counts > 0
        best = np.maximum.reduceat(cand_sims, (np.cumsum(counts) - counts)[nonempty])
        tp_sims = np.sort(best[np.isfinite(best)])  # the true positives' similarities
        count_tp = len(tp_sims)
        if count_tp == 0:
            return 0.0, hits, count_gt, 0
        searched_sims = sims[det_idx]
        if count_tp <= _MAX_TP_COUNTED_BY_COMPARISON:  # count_tp * n comparisons
            num_ge = np.count_nonzero(searched_sims[None, :] >= tp_sims[:, None], axis=1)
        else:  # n log n
            all_sorted = np.sort(searched_sims)
            num_ge = len(all_sorted) - np.searchsorted(all_sorted, tp_sims, side="left")
        tp_ge = count_tp - np.searchsorted(tp_sims, tp_sims, side="left")  # TPs >= each TP
        ap = float(np.sum(tp_ge / num_ge) / count_gt)
        negatives_ge_best = num_ge[-1] - tp_ge[-1]
        hits[:] = negatives_ge_best < np.asarray(TOPK)
        return ap, hits, count_gt, count_tp


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


def evaluate_search(
    protocol: SearchProtocol,
    detections: GalleryDetections,
    query_embeddings: np.ndarray,
    *,
    det_thresh: float,
    variants: Sequence[str] | Sequence[QueryGalleries] | None = None,
    cbgm: CBGMParams | None = None,
    chunk_size: int = DEFAULT_QUERY_CHUNK,
) -> OrderedDict[str, VariantResult]:
    """Evaluate person search for the given variants of a protocol.

    Args:
        protocol: the test protocol; ``detections`` follow its ``gallery_image_ids`` order.
        detections: every gallery detection (any score; the threshold is applied here).
        query_embeddings: (len(protocol.queries), D) query embeddings.
        det_thresh: detections with ``score >= det_thresh`` are searched.
        variants: variant names (or already built variants); ``None`` = all of the protocol.
        cbgm: context bipartite graph matching parameters, or ``None`` to disable it.
        chunk_size: queries per similarity matmul.
    Returns:
        variant name -> :class:`VariantResult`, in the order requested.
    """
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
    if variants is None:
        variants = list(protocol.variant_loaders)
    built = [v if isinstance(v, QueryGalleries) else protocol.variant(v) for v in variants]
    for v in built:
        _check_variant(v, num_queries, detections.num_images)

    dets = detections.above(det_thresh)
    gallery_emb = l2_normalize(dets.embeddings)
    query_emb = l2_normalize(query_embeddings)
    scorer = _QueryScorer(protocol, dets)
    index_of_image = {name: i for i, name in enumerate(protocol.gallery_image_ids)}
    query_image = np.array([index_of_image.get(q.image_id, -1) for q in protocol.queries])
    query_camera = np.array([q.camera_id for q in protocol.queries], dtype=np.int64)

    position = np.full((len(built), num_queries), -1, dtype=np.int64)
    results = OrderedDict()
    for i, v in enumerate(built):
        q = len(v.query_indices)
        position[i, v.query_indices] = np.arange(q)
        results[v.name] = VariantResult(
            name=v.name,
            query_indices=np.asarray(v.query_indices, dtype=np.int64),
            average_precision=np.full(q, np.nan),
            topk_hits=np.zeros((q, len(TOPK)), dtype=bool),
            count_gt=np.zeros(q, dtype=np.int64),
            count_tp=np.zeros(q, dtype=np.int64),
        )
    sparse = np.array(
        [
            v.galleries is not None
            and np.mean([len(g) for g in v.galleries] or [0])
            < SPARSE_GALLERY_FRACTION * dets.num_images
            for v in built
        ]
    )
    sims_buffer = np.zeros(len(dets.scores), dtype=np.float32)  # sparse path, read at det_idx only
    needed = np.flatnonzero((position >= 0).any(axis=0))
    for start in range(0, len(needed), chunk_size):
        chunk = needed[start : start + chunk_size]
        chunk_sims = None
        if (position[~sparse][:, chunk] >= 0).any():
            chunk_sims = query_emb[chunk] @ gallery_emb.T  # (c, M)
        for row, qi in enumerate(chunk):
            context = None
            if cbgm is not None:
                query = protocol.queries[qi]
                context = query_context(
                    query_emb[qi], query.box, dets, gallery_emb, int(query_image[qi]), cbgm.k2
                )
            for i, v in enumerate(built):
                pos = position[i, qi]
                if pos < 0:
                    continue
                gallery = None if v.galleries is None else np.asarray(v.galleries[pos])
                keep, det_idx = scorer.searched(
                    gallery,
                    int(query_image[qi]),
                    int(query_camera[qi]),
                    v.cross_camera,
                    bool(sparse[i]),
                )
                if sparse[i]:
                    sims = sims_buffer
                    sims[det_idx] = gallery_emb[det_idx] @ query_emb[qi]
                else:
                    sims = chunk_sims[row]
                if context is not None:
                    sims = sims.copy()
                    sims[det_idx] = cbgm_rescore(
                        sims[det_idx],
                        scorer.det_image[det_idx],
                        det_idx,
                        gallery_emb,
                        context,
                        cbgm.k1,
                    )
                pos_images, pos_boxes = v.positives[pos]
                ap, hits, count_gt, count_tp = scorer.score(
                    sims,
                    det_idx,
                    keep,
                    (np.asarray(pos_images, dtype=np.int64), np.asarray(pos_boxes).reshape(-1, 4)),
                )
                res = results[v.name]
                res.average_precision[pos] = ap
                res.topk_hits[pos] = hits
                res.count_gt[pos] = count_gt
                res.count_tp[pos] = count_tp
    return results


def summarize_search(
    results: OrderedDict[str, VariantResult], default_variant: str
) -> OrderedDict[str, float]:
    """Flatten variant results to Detectron2-style metrics, in percent.

    Keys: ``mAP``, ``top1``, ``top5``, ``top10`` of ``default_variant`` (when evaluated), then
    ``<variant>/mAP``, ``<variant>/top<k>`` for every variant.
    """
    out: OrderedDict[str, float] = OrderedDict()
    pct = ["mAP"] + [f"top{k}" for k in TOPK]
    if default_variant in results:
        summary = results[default_variant].summary()
        for key in pct:
            out[key] = 100.0 * summary[key]
    for name, res in results.items():
        summary = res.summary()
        for key in pct:
            out[f"{name}/{key}"] = 100.0 * summary[key]
    return out
