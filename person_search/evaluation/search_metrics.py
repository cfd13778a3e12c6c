"""Person-search ranking metrics (CUHK-SYSU / PRW protocols), vectorised, pure numpy.

The ranking itself (searched detections, similarities, CBGM, true positives) is
:class:`~.search_ranking.SearchRanker`'s; the rules are stated there. The metrics follow
``person-search-protocol.md`` (the community's evaluation, as in SeqNet's
``eval_search_cuhk``/``eval_search_prw``):

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
* **CBGM** (optional, :mod:`person_search.evaluation.cbgm`): SeqNet's published procedure,
  applied to the similarities before the true positives are chosen, as SeqNet does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from person_search.data.search_protocol import QueryGalleries, SearchProtocol

from .array_ops import expand_ranges, l2_normalize, paired_iou
from .cbgm import CBGMParams
from .search_ranking import GalleryDetections, SearchRanker, search_iou_thresholds

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
DEFAULT_QUERY_CHUNK = 128  # queries per similarity matmul (memory: chunk x #detections float32)
# A variant whose galleries average fewer than this fraction of the gallery images gets its
# similarities by gathering the searched embeddings per query; larger ones (and "all but the
# query image") by one matmul of a chunk of queries against every detection.
SPARSE_GALLERY_FRACTION = 1 / 16
# Up to this many true positives, "detections at least as similar as each true positive" is
# counted by comparisons (count_tp x n) rather than by sorting the query's n similarities.
_MAX_TP_COUNTED_BY_COMPARISON = 32


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


def _score(
    sims: np.ndarray,
    det_idx: np.ndarray,
    candidates: tuple[int, np.ndarray, np.ndarray, np.ndarray],
) -> tuple[float, np.ndarray, int, int]:
    """AP, top-k hits (len(TOPK),), count_gt, count_tp of one query.

    Args:
        sims: (M,) similarity of the query to every detection (entries outside ``det_idx``
            are ignored).
        det_idx: (n,) searched detections.
        candidates: the query's ``(count_gt, candidates, iou_ok, image_starts)``
            (:meth:`~.search_ranking.QueryTables.candidates_of`).
    """
    hits = np.zeros(len(TOPK), dtype=bool)
    count_gt, cand, iou_ok, starts = candidates
    if count_gt == 0:
        return float("nan"), hits, 0, 0
    if len(cand) == 0:
        return 0.0, hits, count_gt, 0
    cand_sims = np.where(iou_ok, sims[cand], -np.inf)  # -inf: fails the IoU rule
    best = np.maximum.reduceat(cand_sims, starts)
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


def evaluate_search(
    protocol: SearchProtocol,
    detections: GalleryDetections,
    query_embeddings: np.ndarray,
    *,
    det_thresh: float,
    variants: Sequence[str] | Sequence[QueryGalleries] | None = None,
    cbgm: CBGMParams | None = None,
    contexts: GalleryDetections | None = None,
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
        contexts: with ``cbgm``, each query's context in query order (:mod:`.cbgm`).
        chunk_size: queries per similarity matmul.
    Returns:
        variant name -> :class:`VariantResult`, in the order requested.
    """
    ranker = SearchRanker(
        protocol, detections, query_embeddings, det_thresh=det_thresh, cbgm=cbgm, contexts=contexts
    )
    built = ranker.build_variants(variants)
    num_queries = len(protocol.queries)
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
    num_images = ranker.dets.num_images
    sparse = np.array(
        [
            v.galleries is not None
            and np.mean([len(g) for g in v.galleries] or [0]) < SPARSE_GALLERY_FRACTION * num_images
            for v in built
        ]
    )
    # What does not depend on the similarities, for all queries of a variant at once.
    tables = [ranker.query_tables(v, sparse=bool(sparse[i])) for i, v in enumerate(built)]
    sims_buffer = np.zeros(len(ranker.dets.scores), dtype=np.float32)  # read at det_idx only
    needed = np.flatnonzero((position >= 0).any(axis=0))
    for start in range(0, len(needed), chunk_size):
        chunk = needed[start : start + chunk_size]
        chunk_sims = None
        if (position[~sparse][:, chunk] >= 0).any():
            chunk_sims = ranker.query_emb[chunk] @ ranker.gallery_emb.T  # (c, M)
        for row, qi in enumerate(chunk):
            for i, v in enumerate(built):
                pos = position[i, qi]
                if pos < 0:
                    continue
                if sparse[i]:
                    det_idx = tables[i].searched_of(pos)
                else:
                    _, det_idx = ranker.searched(v, pos)
                sims = ranker.similarities(
                    qi,
                    det_idx,
                    dense=None if sparse[i] else chunk_sims[row],
                    buffer=sims_buffer,
                )
                res = results[v.name]
                (
                    res.average_precision[pos],
                    res.topk_hits[pos],
                    res.count_gt[pos],
                    res.count_tp[pos],
                ) = _score(sims, det_idx, tables[i].candidates_of(pos))
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
