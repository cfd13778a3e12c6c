"""Matching (eqs. 4-7): distance summed over the parts visible in both images, through
ReIDEvaluator's part mode with SGSFA's settings, on hand values."""

import math

import pytest
import torch

from person_search.evaluation import ReIDEvaluator
from person_search.evaluation.reid_metrics import part_distance

# 3 parts of 2-d features; euclidean part distances are 3-4-5 triangles.
QUERY_PARTS = torch.zeros(2, 3, 2)
QUERY_VIS = torch.tensor([[0.5, 0.25, 0.0], [0.0, 0.0, 0.0]])  # q1: nothing visible
GALLERY_PARTS = torch.tensor(
    [
        [[3.0, 4.0], [0.0, 0.0], [100.0, 100.0]],  # g0: d = 5, 0, (far)
        [[0.0, 4.0], [30.0, 40.0], [0.0, 0.0]],  # g1: d = 4, 50, 0
        [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]],  # g2: d = 1, 1, 1
    ]
)
GALLERY_VIS = torch.tensor([[0.5, 0.5, 0.5], [0.1, 0.0, 0.9], [0.0, 0.0, 1.0]])


def test_visibility_weighted_distance_on_hand_values():
    # threshold 0 (SGSFA's configs): q0 shows parts 0, 1; g0 all, g1 parts 0, 2, g2 part 2
    dist = part_distance(
        QUERY_PARTS,
        QUERY_VIS,
        GALLERY_PARTS,
        GALLERY_VIS,
        metric="euclidean",
        threshold=0.0,
        normalize=False,
    )
    inf = math.inf
    # q0-g0 shares parts 0, 1: 5 + 0; q0-g1 shares part 0: 4; q0-g2 shares nothing
    assert dist.tolist() == [[5.0, 4.0, inf], [inf, inf, inf]]
    mean = part_distance(
        QUERY_PARTS, QUERY_VIS, GALLERY_PARTS, GALLERY_VIS, metric="euclidean", threshold=0.0
    )
    assert mean.tolist() == [[2.5, 4.0, inf], [inf, inf, inf]]
    # a higher threshold hides q0's part 1 (0.25) and g1's part 0 (0.1)
    strict = part_distance(
        QUERY_PARTS,
        QUERY_VIS,
        GALLERY_PARTS,
        GALLERY_VIS,
        metric="euclidean",
        threshold=0.3,
        normalize=False,
    )
    assert strict.tolist() == [[5.0, inf, inf], [inf, inf, inf]]


@pytest.mark.parametrize(
    "part_distance_mode, rank1, mAP", [("sum", 0.0, 50.0), ("mean", 50.0, 75.0)]
)
def test_evaluator_part_mode_ranks_by_shared_parts(part_distance_mode, rank1, mAP):
    evaluator = ReIDEvaluator(
        "sgsfa_hand",
        metric="euclidean",
        feature="parts",
        part_threshold=0.0,
        part_distance=part_distance_mode,
        distributed=False,
    )
    inputs = [
        {"split": "query", "person_id": 1, "camera_id": 0, "image_id": "q0"},
        {"split": "query", "person_id": 2, "camera_id": 0, "image_id": "q1"},
        {"split": "gallery", "person_id": 1, "camera_id": 1, "image_id": "g0"},
        {"split": "gallery", "person_id": 2, "camera_id": 1, "image_id": "g1"},
        {"split": "gallery", "person_id": 3, "camera_id": 1, "image_id": "g2"},
    ]
    parts = torch.cat([QUERY_PARTS, GALLERY_PARTS])
    vis = torch.cat([QUERY_VIS, GALLERY_VIS])
    outputs = [{"part_features": p, "part_visibility": v} for p, v in zip(parts, vis)]
    evaluator.process(inputs, outputs)
    res = evaluator.evaluate()["reid"]
    # q0 (id 1): "sum" ranks g1 (4) before its match g0 (5): AP 1/2; "mean" ranks g0 (2.5)
    # first. q1 shares no visible part with anyone: every distance +inf, gallery order, its
    # match g1 second: AP 1/2, kept (not skipped).
    assert res["num_valid_queries"] == 2 and res["num_skipped_queries"] == 0
    assert res["Rank-1"] == pytest.approx(rank1)
    assert res["mAP"] == pytest.approx(mAP)
