"""Builders for hand-made person-search protocols and detections (tests of ps_eval).

Embeddings are 16-d vectors of +-0.25: their norm is exactly 1 and every dot product is a
multiple of 1/16, computed exactly in float32 in any summation order, so similarities (and
their ties) are exactly the values the tests write down.
"""

from __future__ import annotations

import numpy as np

from person_search.data.search_protocol import QueryGalleries, SearchProtocol, SearchQuery
from person_search.evaluation.search_metrics import GalleryDetections

DIM = 16
QUERY_EMB = np.full(DIM, 0.25, dtype=np.float32)  # the default query embedding


def emb(sim: float, flip_from: int = 0) -> np.ndarray:
    """A unit embedding whose similarity with ``QUERY_EMB`` is ``sim`` (a multiple of 1/8).

    ``flip_from`` chooses which entries are negated (to make embeddings that differ elsewhere).
    """
    m = round((1.0 - sim) * 8)
    assert abs((1.0 - sim) * 8 - m) < 1e-9 and 0 <= m <= DIM, sim
    v = QUERY_EMB.copy()
    v[(np.arange(m) + flip_from) % DIM] = -0.25
    return v


def detections(per_image: list[list[tuple[list[float], float, np.ndarray]]]) -> GalleryDetections:
    """``per_image[g]`` = list of (box XYXY, score, embedding) of gallery image g."""
    return GalleryDetections.from_per_image(
        [
            (
                np.array([d[0] for d in dets], dtype=np.float32).reshape(-1, 4),
                np.array([d[1] for d in dets], dtype=np.float32),
                np.array([d[2] for d in dets], dtype=np.float32).reshape(-1, DIM),
            )
            for dets in per_image
        ],
        embedding_dim=DIM,
    )


def variant(
    name: str,
    query_indices: list[int],
    galleries: list[list[int]] | None,
    positives: list[list[tuple[int, list[float]]]],
    cross_camera: bool = False,
) -> QueryGalleries:
    """A variant from plain lists; ``positives[q]`` = [(image index, box), ...]."""
    return QueryGalleries(
        name=name,
        query_indices=np.array(query_indices, dtype=np.int64),
        galleries=None if galleries is None else [np.array(g, dtype=np.int64) for g in galleries],
        positives=[
            (
                np.array([i for i, _ in pos], dtype=np.int64),
                np.array([b for _, b in pos], dtype=np.float64).reshape(-1, 4),
            )
            for pos in positives
        ],
        cross_camera=cross_camera,
    )


def protocol(
    gallery_ids: list[str],
    queries: list[tuple[str, list[float], int, int]],
    variants: list[QueryGalleries],
    cameras: list[int] | None = None,
    default: str | None = None,
) -> SearchProtocol:
    """``queries`` = [(image_id, box, person_id, camera_id)]."""
    return SearchProtocol(
        name="toy",
        gallery_image_ids=list(gallery_ids),
        gallery_camera_ids=np.array(cameras or [-1] * len(gallery_ids), dtype=np.int64),
        queries=[
            SearchQuery(image_id=i, box=np.array(b, dtype=np.float64), person_id=p, camera_id=c)
            for i, b, p, c in queries
        ],
        variant_loaders={v.name: (lambda v=v: v) for v in variants},
        default_variant=default or variants[0].name,
    )
