"""evaluate_reid ranks float64 distances in float64 (no cast to float32 that would tie them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from person_search.evaluation.reid_metrics import evaluate_reid

# Gallery 0: another person, gallery 1: the query's person, 2e-10 closer: equal in float32.
DIST = np.asarray([[0.3 + 2e-10, 0.3, 0.9]])
Q_PIDS, G_PIDS = np.asarray([1]), np.asarray([2, 1, 3])
Q_CAMS, G_CAMS = np.asarray([1]), np.asarray([2, 2, 2])


@pytest.mark.parametrize("as_tensor", [False, True])
def test_float64_distances_keep_their_order(as_tensor):
    dist = torch.from_numpy(DIST) if as_tensor else DIST
    assert np.float32(DIST[0, 0]) == np.float32(DIST[0, 1])  # a tie once cast
    res = evaluate_reid(dist, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=3)
    assert res["mAP"] == 1.0 and res["cmc"].tolist() == [1.0, 1.0, 1.0]


def test_float32_ties_keep_gallery_order():
    res = evaluate_reid(DIST.astype(np.float32), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=3)
    assert res["mAP"] == 0.5 and res["cmc"].tolist() == [0.0, 1.0, 1.0]


def test_float64_ties_and_removals_match_float32():
    """On values float32 holds exactly, both paths give the same numbers (ties in gallery
    order, same-camera matches and junk removed, +inf last)."""
    rng = np.random.default_rng(0)
    dist = rng.integers(0, 6, (20, 40)).astype(np.float64) / 4
    dist[:, ::7] = np.inf
    q_pids, g_pids = rng.integers(0, 5, 20), rng.integers(-1, 5, 40)
    q_cams, g_cams = rng.integers(0, 3, 20), rng.integers(0, 3, 40)
    a = evaluate_reid(dist, q_pids, g_pids, q_cams, g_cams)
    b = evaluate_reid(dist.astype(np.float32), q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_array_equal(a["cmc"], b["cmc"])
    np.testing.assert_array_equal(a["AP"], b["AP"])
    assert a["mINP"] == b["mINP"] and a["num_valid_queries"] == b["num_valid_queries"]
