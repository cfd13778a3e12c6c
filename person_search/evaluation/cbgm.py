"""Context bipartite graph matching (CBGM): the optional re-ranking of SeqNet (AAAI 2021).

For one query: take the ``k1`` searched gallery images whose best detection is most similar to
the query. In each, match the query image's context persons (the query box first, then the
query image's most confident detections, ``k2`` nodes in all) to the image's detections with
the Hungarian algorithm on embedding similarities (maximum total similarity). If the query box
is matched, its partner's similarity becomes the largest similarity among the matched pairs.

SeqNet's defaults: ``k1=10, k2=3`` on CUHK-SYSU, ``k1=30, k2=4`` on PRW.

Two documented differences with SeqNet's code:

* SeqNet selects the images of the ``k1`` most similar *detections*; the protocol description
  (and this code) takes the ``k1`` most similar *images* (by their best detection).
* SeqNet's context list holds the query box and, unchanged, the query image's detections, so the
  query person usually appears twice and competes with itself. Here detections of the query
  image overlapping the query box (IoU >= 0.5) are left out of the context. Context detections
  pass the same ``det_thresh`` as the gallery.

The query node's embedding is the query embedding (from the given box), not a re-pooled one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from .array_ops import paired_iou

if TYPE_CHECKING:
    from .search_metrics import GalleryDetections

__all__ = ["CBGMParams", "cbgm_rescore", "query_context"]

CONTEXT_OVERLAP_IOU = 0.5  # query-image detections overlapping the query box this much are dropped


@dataclass(frozen=True)
class CBGMParams:
    """k1: gallery images re-ranked per query; k2: context nodes (query box included)."""

    k1: int = 10
    k2: int = 3

    def __post_init__(self) -> None:
        if self.k1 < 1 or self.k2 < 1:
            raise ValueError(f"CBGM needs k1 >= 1 and k2 >= 1 (got k1={self.k1}, k2={self.k2})")


def query_context(
    query_embedding: np.ndarray,
    query_box: np.ndarray,
    dets: GalleryDetections,
    gallery_embeddings: np.ndarray,
    query_image: int,
    k2: int,
) -> np.ndarray:
    """The context nodes of one query: (c, D), c <= k2, row 0 the query embedding.

    Args:
        query_embedding: (D,) L2-normalised.
        query_box: (4,) XYXY_ABS of the query in its image.
        dets: thresholded gallery detections; gallery_embeddings: their (M, D) normalised
            embeddings.
        query_image: gallery index of the query's image, -1 if it is not a gallery image (then
            the context is the query alone and CBGM leaves the similarities unchanged).
    """
    nodes = [np.asarray(query_embedding, dtype=np.float32)[None]]
    if query_image >= 0 and k2 > 1:
        start, end = dets.offsets[query_image], dets.offsets[query_image + 1]
        boxes = dets.boxes[start:end]
        box = np.broadcast_to(np.asarray(query_box, dtype=np.float64), (len(boxes), 4))
        others = np.flatnonzero(paired_iou(boxes, box) < CONTEXT_OVERLAP_IOU)
        order = others[np.argsort(-dets.scores[start:end][others], kind="stable")][: k2 - 1]
        nodes.append(gallery_embeddings[start + order])
    return np.concatenate(nodes)


def cbgm_rescore(
    sims: np.ndarray,
    det_image: np.ndarray,
    det_index: np.ndarray,
    embeddings: np.ndarray,
    context: np.ndarray,
    k1: int,
) -> np.ndarray:
    """Re-scored similarities of one query's searched detections.

    Args:
        sims: (n,) query similarity of each searched detection.
        det_image: (n,) image of each detection, detections of one image contiguous.
        det_index: (n,) row of each detection in ``embeddings``.
        embeddings: (M, D) normalised embeddings of all detections (only the rows of the k1
            re-ranked images are read).
        context: (c, D) from :func:`query_context`.
        k1: number of images re-ranked.
    Returns:
        (n,) float32, a new array.
    """
    out = np.array(sims, dtype=np.float32, copy=True)
    if len(out) == 0 or len(context) < 2:
        return out  # no context: matching the query alone changes nothing
    starts = np.flatnonzero(np.r_[True, np.diff(det_image) != 0])
    ends = np.r_[starts[1:], len(out)]
    best = np.maximum.reduceat(out, starts)
    top = np.argsort(-best, kind="stable")[:k1]
    for g in top:  # at most k1 small assignment problems
        s, e = starts[g], ends[g]
        weights = context @ embeddings[det_index[s:e]].T  # (c, n_g)
        rows, cols = linear_sum_assignment(weights, maximize=True)
        if rows.size and rows[0] == 0:  # rows come sorted: row 0 is the query box
            out[s + cols[0]] = weights[rows, cols].max()
    return out
