"""A plain per-query, per-image loop implementation of the person-search protocol.

An executable specification, written the way the reference code reads (SeqNet's
``eval_search_*``, CBGM included): the tests check :func:`~.search_metrics.evaluate_search`
against it on random inputs, and ``benchmarks/bench_eval.py`` measures the speed-up. Slow
(Python loops over detections, CBGM's matching by enumerating every assignment); never used for
real evaluation.
"""

from __future__ import annotations

import itertools

import numpy as np

from person_search.data.search_protocol import QueryGalleries, SearchProtocol

from .array_ops import paired_iou
from .cbgm import CBGMParams
from .search_metrics import (
    TOPK,
    GalleryDetections,
    VariantResult,
    average_precision,
    search_iou_thresholds,
)

__all__ = ["evaluate_variant_loop"]


def evaluate_variant_loop(
    protocol: SearchProtocol,
    detections: GalleryDetections,
    query_embeddings: np.ndarray,
    variant: QueryGalleries,
    *,
    det_thresh: float,
    max_queries: int | None = None,
    cbgm: CBGMParams | None = None,
    contexts: GalleryDetections | None = None,
) -> VariantResult:
    """Same result as ``evaluate_search(...)[variant.name]`` (first ``max_queries`` queries)."""
    index_of_image = {name: i for i, name in enumerate(protocol.gallery_image_ids)}
    num = len(variant.query_indices) if max_queries is None else max_queries
    aps, hits, count_gts, count_tps = [], [], [], []
    for pos in range(num):
        qi = int(variant.query_indices[pos])
        query = protocol.queries[qi]
        q = query_embeddings[qi] / max(np.linalg.norm(query_embeddings[qi]), 1e-12)
        q = q.astype(np.float32)
        if variant.galleries is None:  # all but the query's own image
            own = index_of_image.get(query.image_id, -1)
            images = [g for g in range(detections.num_images) if g != own]
        else:  # an explicit list is searched as listed
            images = [int(g) for g in variant.galleries[pos]]
        if variant.cross_camera:
            images = [g for g in images if protocol.gallery_camera_ids[g] != query.camera_id]
        pos_images, pos_boxes = variant.positives[pos]
        gt_of_image: dict[int, np.ndarray] = {}
        count_gt = 0
        for g, box in zip(pos_images, np.asarray(pos_boxes).reshape(-1, 4)):
            if int(g) in images:
                count_gt += 1
                gt_of_image.setdefault(int(g), box)
        searched: dict[int, tuple[list[float], list[np.ndarray]]] = {}  # image -> sims, boxes
        for g in sorted(set(images)):  # an image listed twice is scored once
            start, end = detections.offsets[g], detections.offsets[g + 1]
            sims, boxes = [], []
            for j in range(start, end):
                if detections.scores[j] >= det_thresh:
                    e = detections.embeddings[j]
                    e = (e / max(np.linalg.norm(e), 1e-12)).astype(np.float32)
                    sims.append(float(e @ q))
                    boxes.append(detections.boxes[j])
            searched[g] = (sims, boxes)
        if cbgm is not None:
            _cbgm_loop(searched, detections, det_thresh, contexts, qi, cbgm)
        scores: list[float] = []
        labels: list[bool] = []
        count_tp = 0
        for g, (sims, boxes) in searched.items():
            label = [False] * len(sims)
            if g in gt_of_image and sims:
                gt = gt_of_image[g][None]
                thresh = search_iou_thresholds(gt)[0]
                for j in sorted(range(len(sims)), key=lambda j: -sims[j]):
                    if paired_iou(np.asarray(boxes[j])[None], gt)[0] >= thresh:
                        label[j] = True
                        count_tp += 1
                        break
            scores += sims
            labels += label
        if count_gt == 0:
            aps.append(np.nan)
            hits.append([False] * len(TOPK))
        else:
            ap = average_precision(scores, labels) * count_tp / count_gt if count_tp else 0.0
            aps.append(ap)
            best_tp = max((s for s, lab in zip(scores, labels) if lab), default=None)
            neg_ge = (
                0
                if best_tp is None
                else sum(1 for s, lab in zip(scores, labels) if not lab and s >= best_tp)
            )
            hits.append([best_tp is not None and neg_ge < k for k in TOPK])
        count_gts.append(count_gt)
        count_tps.append(count_tp)
    return VariantResult(
        name=variant.name,
        query_indices=np.asarray(variant.query_indices[:num], dtype=np.int64),
        average_precision=np.asarray(aps, dtype=np.float64),
        topk_hits=np.asarray(hits, dtype=bool).reshape(-1, len(TOPK)),
        count_gt=np.asarray(count_gts, dtype=np.int64),
        count_tp=np.asarray(count_tps, dtype=np.int64),
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / max(np.linalg.norm(x), 1e-12)).astype(np.float32)


def _cbgm_loop(
    searched: dict[int, tuple[list[float], list[np.ndarray]]],
    detections: GalleryDetections,
    det_thresh: float,
    contexts: GalleryDetections,
    query: int,
    cbgm: CBGMParams,
) -> None:
    """SeqNet's CBGM on one query's ``searched`` similarities, in place."""
    start, end = contexts.offsets[query], contexts.offsets[query + 1]
    nodes = [_unit(contexts.embeddings[start])]  # the query box
    for j in range(start + 1, end):
        if contexts.scores[j] >= det_thresh and len(nodes) < cbgm.k2:
            nodes.append(_unit(contexts.embeddings[j]))
    if len(nodes) < 2:
        return
    everything = [(sim, g) for g, (sims, _) in searched.items() for sim in sims]
    top = sorted(range(len(everything)), key=lambda i: -everything[i][0])[: cbgm.k1]
    for g in sorted({everything[i][1] for i in top}):
        sims = searched[g][0]
        kept = [
            j
            for j in range(detections.offsets[g], detections.offsets[g + 1])
            if detections.scores[j] >= det_thresh
        ]
        weights = [[float(n @ _unit(detections.embeddings[j])) for j in kept] for n in nodes]
        pairs = _best_matching(weights)
        partner = dict(pairs).get(0)
        if partner is not None:
            sims[partner] = max(weights[r][c] for r, c in pairs)


def _best_matching(weights: list[list[float]]) -> list[tuple[int, int]]:
    """A maximum-total matching of rows to columns covering the smaller side, by enumeration."""
    rows, cols = len(weights), len(weights[0])
    if rows <= cols:
        candidates = (list(enumerate(p)) for p in itertools.permutations(range(cols), rows))
    else:
        candidates = (
            [(r, c) for c, r in enumerate(p)] for p in itertools.permutations(range(rows), cols)
        )
    return max(candidates, key=lambda pairs: sum(weights[r][c] for r, c in pairs))
