"""The vectorised search evaluation equals the plain loop specification on random inputs."""

import numpy as np
import pytest
from ps_eval_helpers import DIM

from person_search.data.search_protocol import QueryGalleries, SearchProtocol, SearchQuery
from person_search.evaluation import search_metrics
from person_search.evaluation.search_metrics import GalleryDetections, evaluate_search
from person_search.evaluation.search_metrics_loop import evaluate_variant_loop


def _random_case(seed: int):
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


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("det_thresh", [0.5, 0.8])
@pytest.mark.parametrize("sparse_fraction", [0.0, 1.0])  # per-query gather or chunk matmul
@pytest.mark.parametrize("max_tp_compared", [0, 32])  # count ranks by sorting or by comparisons
def test_vectorised_equals_loop(seed, det_thresh, sparse_fraction, max_tp_compared, monkeypatch):
    monkeypatch.setattr(search_metrics, "SPARSE_GALLERY_FRACTION", sparse_fraction)
    monkeypatch.setattr(search_metrics, "_MAX_TP_COUNTED_BY_COMPARISON", max_tp_compared)
    protocol, dets, query_emb = _random_case(seed)
    fast = evaluate_search(protocol, dets, query_emb, det_thresh=det_thresh, chunk_size=5)
    for name, res in fast.items():
        ref = evaluate_variant_loop(
            protocol, dets, query_emb, protocol.variant(name), det_thresh=det_thresh
        )
        np.testing.assert_array_equal(res.count_gt, ref.count_gt)
        np.testing.assert_array_equal(res.count_tp, ref.count_tp)
        np.testing.assert_allclose(res.average_precision, ref.average_precision, atol=1e-12)
        np.testing.assert_array_equal(res.topk_hits, ref.topk_hits)
