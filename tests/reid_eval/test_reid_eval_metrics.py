"""evaluate_reid, feature_distance and part_distance against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from person_search.evaluation.reid_metrics import evaluate_reid, feature_distance, part_distance


def naive_evaluate(dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    """Per-query reference implementation (a loop per query, the textbook protocol)."""
    cmc_sum, aps, inps = np.zeros(max_rank), [], []
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        kept = [
            j
            for j in order
            if g_pids[j] != -1 and not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])
        ]
        matches = [g_pids[j] == q_pids[i] for j in kept]
        if not any(matches):
            continue
        ranks = [r + 1 for r, m in enumerate(matches) if m]
        cmc_sum[ranks[0] - 1 :] += 1
        aps.append(np.mean([(n + 1) / r for n, r in enumerate(ranks)]))
        inps.append(len(ranks) / ranks[-1])
    return cmc_sum / len(aps), float(np.mean(aps)), float(np.mean(inps)), len(aps)


def test_hand_computed_with_junk_and_same_camera():
    # query 0: id 1 cam 1. Sorted gallery: [id1 cam1 (removed), id2, junk, id1 cam2, id3, id1 cam3]
    # kept: [id2, id1, id3, id1] -> matches at ranks 2, 4 -> AP = (1/2 + 2/4) / 2 = 0.5, INP = 2/4
    # query 1: id 2 cam 2. Sorted: [id2 cam1, ...] -> first match rank 1, only match -> AP = INP = 1
    g_pids = [1, 2, -1, 1, 3, 1]
    g_cams = [1, 1, 2, 2, 2, 3]
    dist = np.array(
        [
            [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
            [0.9, 0.0, 0.1, 0.8, 0.7, 0.6],
        ]
    )
    r = evaluate_reid(dist, [1, 2], g_pids, [1, 2], g_cams, max_rank=5)
    np.testing.assert_allclose(r["cmc"], [0.5, 1.0, 1.0, 1.0, 1.0])
    assert r["mAP"] == pytest.approx((0.5 + 1.0) / 2)
    assert r["mINP"] == pytest.approx((0.5 + 1.0) / 2)
    assert r["num_valid_queries"] == 2 and r["num_skipped_queries"] == 0
    np.testing.assert_allclose(r["AP"], [0.5, 1.0])


def test_query_without_valid_match_is_skipped():
    # query 1 (id 4) only appears under its own camera in the gallery -> skipped
    dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    r = evaluate_reid(dist, [1, 4], [1, 4, 2], [1, 1], [2, 1, 2], max_rank=3)
    assert r["num_valid_queries"] == 1 and r["num_skipped_queries"] == 1
    assert math.isnan(r["AP"][1])
    assert r["mAP"] == 1.0 and r["cmc"][0] == 1.0
    with pytest.raises(ValueError, match="no query has a valid match"):
        evaluate_reid(dist[1:], [4], [1, 4, 2], [1], [2, 1, 2])


def test_ties_keep_gallery_order():
    dist = np.zeros((1, 3))
    r = evaluate_reid(dist, [1], [2, 1, 1], [0], [1, 1, 1], max_rank=2)
    np.testing.assert_allclose(r["cmc"], [0.0, 1.0])
    assert r["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_matches_naive_reference_on_random_data():
    rng = np.random.default_rng(0)
    nq, ng = 70, 300
    g_pids = rng.integers(-1, 30, size=ng)
    q_pids = rng.integers(0, 40, size=nq)  # ids >= 30 have no gallery match
    q_cams, g_cams = rng.integers(1, 4, size=nq), rng.integers(1, 4, size=ng)
    dist = rng.random((nq, ng)).astype(np.float32)
    dist[:, ::7] = dist[:, 1::7][:, : dist[:, ::7].shape[1]]  # some exact ties
    dist[:5] -= 0.5  # negative distances (e.g. negated similarities) order correctly
    dist[5:10, :40] = np.inf
    r = evaluate_reid(torch.from_numpy(dist), q_pids, g_pids, q_cams, g_cams, max_rank=10)
    cmc, m_ap, m_inp, n = naive_evaluate(dist, q_pids, g_pids, q_cams, g_cams, 10)
    np.testing.assert_allclose(r["cmc"], cmc)
    assert r["mAP"] == pytest.approx(m_ap) and r["mINP"] == pytest.approx(m_inp)
    assert r["num_valid_queries"] == n < nq


def test_query_chunks_agree_with_reference(monkeypatch):
    # Chunk boundaries (several chunks, a ragged last one, a chunk whose queries are all skipped)
    # must not change any value.
    import person_search.evaluation.reid_metrics as reid_metrics

    rng = np.random.default_rng(1)
    nq, ng = 45, 120
    g_pids = rng.integers(-1, 12, size=ng)
    q_pids = rng.integers(0, 14, size=nq)
    q_pids[16:32] = 99  # a whole chunk of queries without any gallery match
    q_cams, g_cams = rng.integers(1, 3, size=nq), rng.integers(1, 3, size=ng)
    dist = np.round(rng.random((nq, ng)), 1).astype(np.float32)  # many exact ties
    monkeypatch.setattr(reid_metrics, "_QUERY_CHUNK", 16)
    r = evaluate_reid(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    cmc, m_ap, m_inp, n = naive_evaluate(dist, q_pids, g_pids, q_cams, g_cams, 10)
    np.testing.assert_allclose(r["cmc"], cmc)
    assert r["mAP"] == pytest.approx(m_ap) and r["mINP"] == pytest.approx(m_inp)
    assert r["num_valid_queries"] == n and r["num_skipped_queries"] == nq - n >= 16
    assert np.isnan(r["AP"][16:32]).all()


def test_nan_distance_is_refused():
    dist = np.array([[0.1, np.nan]])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_reid(dist, [1], [1, 2], [1], [2, 2])


def test_shape_errors():
    with pytest.raises(ValueError, match="gallery ids"):
        evaluate_reid(np.zeros((1, 3)), [1], [1, 2], [1], [1, 2])
    with pytest.raises(ValueError, match="METRIC"):
        feature_distance(torch.zeros(1, 2), torch.zeros(1, 2), "manhattan")


def test_cosine_vs_euclidean():
    q = torch.tensor([[1.0, 0.0]])
    g = torch.tensor([[10.0, 1.0], [0.6, 0.6]])
    cos = feature_distance(q, g, "cosine")
    euc = feature_distance(q, g, "euclidean")
    np.testing.assert_allclose(cos, [[1 - 10 / math.sqrt(101), 1 - 1 / math.sqrt(2)]], rtol=1e-5)
    np.testing.assert_allclose(euc, [[math.sqrt(81 + 1), math.sqrt(0.16 + 0.36)]], rtol=1e-5)
    # the two metrics rank the gallery differently, so the metrics differ
    args = ([1], [1, 2], [0], [1, 1])
    assert evaluate_reid(cos, *args, max_rank=1)["cmc"][0] == 1.0
    assert evaluate_reid(euc, *args, max_rank=1)["cmc"][0] == 0.0


def test_part_distance_by_hand():
    # 3 parts of dim 2; query sees parts 0, 1; gallery 0 sees 1, 2; gallery 1 sees nothing shared.
    qp = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    qv = torch.tensor([[0.9, 0.8, 0.2]])
    gp = torch.tensor(
        [
            [[5.0, 5.0], [0.0, 3.0], [9.0, 9.0]],
            [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
        ]
    )
    gv = torch.tensor([[0.1, 0.7, 0.6], [0.0, 0.0, 1.0]])
    d_mean = part_distance(qp, qv, gp, gv, metric="euclidean")
    d_sum = part_distance(qp, qv, gp, gv, metric="euclidean", normalize=False)
    # gallery 0 shares only part 1: |(0,1) - (0,3)| = 2
    assert d_mean[0, 0].item() == pytest.approx(2.0) and d_sum[0, 0].item() == pytest.approx(2.0)
    assert math.isinf(d_mean[0, 1].item()) and math.isinf(d_sum[0, 1].item())
    gv2 = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    d_mean = part_distance(qp, qv, gp, gv2, metric="euclidean")
    d_sum = part_distance(qp, qv, gp, gv2, metric="euclidean", normalize=False)
    # gallery 0 shares parts 0 and 1: distances sqrt(16 + 25) and 2
    expected_sum = math.sqrt(41) + 2.0
    assert d_sum[0, 0].item() == pytest.approx(expected_sum, rel=1e-5)
    assert d_mean[0, 0].item() == pytest.approx(expected_sum / 2, rel=1e-5)
    assert d_mean[0, 1].item() == pytest.approx(0.0, abs=1e-3)
    # threshold: a part at exactly the threshold is not visible
    d = part_distance(qp, qv, gp, torch.tensor([[0.5, 0.5, 0.5]] * 2), metric="cosine")
    assert torch.isinf(d).all()
