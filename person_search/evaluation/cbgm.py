"""Context bipartite graph matching (CBGM): the optional re-ranking of SeqNet (AAAI 2021), as
published (SeqNet's evaluation code; ``person-search-protocol.md``).

For one query:

1. **Context.** The query image is run through the model with the query box forced in as a
   detection of score 1: it survives the final NMS, which removes the other detections
   overlapping it (:meth:`PersonSearchRCNN.query_context
   <person_search.modeling.meta_arch.person_search_rcnn.PersonSearchRCNN.query_context>`).
   The context nodes are the first ``k2`` rows of that output: the query box first, then the
   other detections by decreasing score. Rows other than the query box's with a score under the
   evaluation's ``det_thresh`` are left out: SeqNet's model drops them itself (its test score
   threshold, 0.5, is its ``det_thresh``), ours keeps every score for re-evaluation at other
   thresholds.
2. **Images re-scored.** The query's searched detections are ranked by similarity; the images
   owning the ``k1`` most similar *detections* are re-scored (fewer than ``k1`` images when an
   image owns several of them).
3. **Matching.** In each such image the context nodes are matched to the image's detections by
   the Hungarian algorithm on embedding similarities (maximum total similarity). If the query
   node is matched, its partner's similarity becomes the largest similarity among the matched
   pairs; the image's other detections keep theirs.

SeqNet's values: ``k1=10, k2=3`` on CUHK-SYSU, ``k1=30, k2=4`` on PRW. Exact ties are resolved
deterministically where SeqNet's code leaves them to an unstable sort: among detections of equal
similarity, the earlier one in gallery order enters the ``k1``; the Hungarian solver is SciPy's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from .array_ops import l2_normalize

if TYPE_CHECKING:
    from .search_ranking import GalleryDetections

__all__ = ["CBGMParams", "cbgm_rescore", "check_query_contexts", "context_nodes"]


@dataclass(frozen=True)
class CBGMParams:
    """k1: most similar detections whose images are re-scored; k2: context nodes per query (the
    query box included)."""

    k1: int = 10
    k2: int = 3

    def __post_init__(self) -> None:
        if self.k1 < 1 or self.k2 < 1:
            raise ValueError(f"CBGM needs k1 >= 1 and k2 >= 1 (got k1={self.k1}, k2={self.k2})")


def check_query_contexts(contexts: GalleryDetections | None, num_queries: int, dim: int) -> None:
    """Raise ``ValueError`` unless ``contexts`` holds one context per query, each with its query
    box (at least one row), embeddings of size ``dim``."""
    if contexts is None:
        raise ValueError(
            "CBGM needs each query's context (the model's detections in the query image with the "
            "query box forced in): run inference with TEST.PERSON_SEARCH.CBGM.ENABLED True, which "
            "makes PersonSearchRCNN return 'query_context' for every query"
        )
    if contexts.num_images != num_queries:
        raise ValueError(f"query contexts cover {contexts.num_images} of {num_queries} queries")
    empty = np.flatnonzero(np.diff(contexts.offsets) == 0)
    if len(empty):
        raise ValueError(
            f"query contexts of queries {empty[:5].tolist()} are empty (row 0 must be the query "
            "box)"
        )
    if contexts.embeddings.shape[1] != dim:
        raise ValueError(
            f"query context embeddings have size {contexts.embeddings.shape[1]}, the query "
            f"embeddings {dim}"
        )


def context_nodes(
    contexts: GalleryDetections, query: int, *, det_thresh: float, k2: int
) -> np.ndarray:
    """The context nodes of one query: (c, D) L2-normalised, c <= k2, row 0 the query box.

    Args:
        contexts: per query (as "images", in query order), the model's query-image output with
            the query box first (:func:`check_query_contexts`).
        query: index into the protocol's queries.
        det_thresh: rows after the first need ``score >= det_thresh``.
        k2: number of nodes at most.
    """
    start, end = contexts.offsets[query], contexts.offsets[query + 1]
    keep = np.flatnonzero(contexts.scores[start + 1 : end] >= det_thresh)[: k2 - 1] + start + 1
    return l2_normalize(contexts.embeddings[np.r_[start, keep]])


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
        embeddings: (M, D) normalised embeddings of all detections (only the rows of the
            re-scored images are read).
        context: (c, D) from :func:`context_nodes`.
        k1: number of most similar detections whose images are re-scored.
    Returns:
        (n,) float32, a new array.
    """
    out = np.array(sims, dtype=np.float32, copy=True)
    if len(out) == 0 or len(context) < 2:
        return out  # no context: matching the query alone changes nothing
    starts = np.flatnonzero(np.r_[True, np.diff(det_image) != 0])
    ends = np.r_[starts[1:], len(out)]
    top = _most_similar(out, k1)
    for g in np.unique(np.searchsorted(starts, top, side="right") - 1):  # their images
        s, e = starts[g], ends[g]
        weights = context @ embeddings[det_index[s:e]].T  # (c, n_g)
        rows, cols = linear_sum_assignment(weights, maximize=True)
        if rows.size and rows[0] == 0:  # rows come sorted: row 0 is the query box
            out[s + cols[0]] = weights[rows, cols].max()
    return out


def _most_similar(sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``sims`` (among equal values the lower indices), in O(n)."""
    if len(sims) <= k:
        return np.arange(len(sims))
    kth = np.partition(sims, len(sims) - k)[len(sims) - k]  # the k-th largest value
    above = np.flatnonzero(sims > kth)
    return np.r_[above, np.flatnonzero(sims == kth)[: k - len(above)]]
