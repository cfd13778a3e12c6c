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


def random_case(seed: int) -> tuple[SearchProtocol, GalleryDetections, np.ndarray]:
    """A random protocol (listed galleries with duplicates and the query image, all images,
    cross-camera), detections around its persons and query embeddings (many exact ties)."""
    rng = np.random.default_rng(seed)
    num_images, num_queries = 25, 12
    cams = rng.integers(1, 4, num_images)
    gt_boxes, per_image = [], []
    for _ in range(num_images):
        x, y = rng.uniform(0, 200, 2)
        w, h = rng.choice([8.0, 15.0, 60.0]), rng.choice([12.0, 30.0, 120.0])
        gt_boxes.append([x, y, x + w, y + h])
        n = int(rng.integers(0, 6))
        jitter = rng.uniform(-0.3, 0.3, (n, 4)) * np.array([w, h, w, h])
        boxes = np.tile(gt_boxes[-1], (n, 1)) + jitter
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        scores = rng.choice([0.3, 0.5, 0.7, 0.9], n)
        embs = rng.choice([-0.25, 0.25], (n, DIM))  # exact similarities, many ties
        per_image.append((boxes, scores, embs))
    dets = GalleryDetections.from_per_image(per_image, DIM)
    gt_boxes = np.array(gt_boxes)
    query_images = rng.integers(0, num_images, num_queries)
    queries = [
        SearchQuery(f"{int(g)}.jpg", gt_boxes[g], person_id=i, camera_id=int(cams[g]))
        for i, g in enumerate(query_images)
    ]
    qidx = np.arange(num_queries)
    galleries, positives, all_pos = [], [], []
    for i in range(num_queries):
        gal = rng.choice(num_images, 8, replace=False)
        gal = np.r_[gal, gal[:1]] if i % 3 == 0 else gal  # some images listed twice
        if i % 4 == 1:  # some lists name the query's own image (searched as listed)
            gal[0] = query_images[i]
        holds = gal[: int(rng.integers(0, 4))]
        galleries.append(gal)
        positives.append((holds, gt_boxes[holds]))
        everywhere = rng.choice(num_images, int(rng.integers(1, 6)), replace=False)
        all_pos.append((everywhere, gt_boxes[everywhere]))
    variants = [
        QueryGalleries("listed", qidx, galleries, positives),
        QueryGalleries("all", qidx, None, all_pos),
        QueryGalleries("cross", qidx, None, all_pos, cross_camera=True),
    ]
    protocol = SearchProtocol(
        name="random",
        gallery_image_ids=[f"{g}.jpg" for g in range(num_images)],
        gallery_camera_ids=cams,
        queries=queries,
        variant_loaders={v.name: (lambda v=v: v) for v in variants},
    )
    query_emb = rng.choice([-0.25, 0.25], (num_queries, DIM))
    for i, (holds, _) in enumerate(positives):  # make true matches likely to rank high
        start, end = dets.offsets[holds[:1]], dets.offsets[holds[:1] + 1]
        if len(holds) and end[0] > start[0]:
            query_emb[i] = dets.embeddings[int(rng.integers(start[0], end[0]))]
            query_emb[i, int(rng.integers(DIM))] *= -1
    return protocol, dets, query_emb


def random_contexts(rng, query_emb: np.ndarray, dets: GalleryDetections) -> GalleryDetections:
    """Per query: its box (score 1, its embedding) then 0-4 detections copied from the gallery
    (scores on both sides of the thresholds), as the model's query pass returns them."""
    per_query = []
    for emb in query_emb:
        n = int(rng.integers(0, 5))
        rows = rng.choice(len(dets.scores), n, replace=False)
        scores = np.sort(rng.uniform(0.3, 0.95, n))[::-1]
        per_query.append(
            (
                np.r_[np.zeros((1, 4)), dets.boxes[rows]],
                np.r_[1.0, scores],
                np.r_[emb[None], dets.embeddings[rows] + rng.normal(0, 0.05, (n, DIM))],
            )
        )
    return GalleryDetections.from_per_image(per_query, DIM)
