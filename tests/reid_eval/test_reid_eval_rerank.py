"""k-reciprocal re-ranking: shapes, limiting cases, and a toy case where it helps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from person_search.evaluation.reid_metrics import evaluate_reid, feature_distance
from person_search.evaluation.rerank import k_reciprocal_rerank


def _clusters(seed: int, ids: int = 12, per: int = 8):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(ids, 16, generator=g)
    gallery = centres.repeat_interleave(per, 0) + 0.6 * torch.randn(ids * per, 16, generator=g)
    query = centres + 0.9 * torch.randn(ids, 16, generator=g)
    return query, gallery, torch.arange(ids), torch.arange(ids).repeat_interleave(per)


def _dists(q, g, metric="euclidean"):
    return (
        feature_distance(q, g, metric),
        feature_distance(q, q, metric),
        feature_distance(g, g, metric),
    )


def naive_rerank(q_g, q_q, g_g, k1, k2, lam):
    """Reference written set by set from the paper (loops; tiny inputs only)."""
    full = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64)
    finite = np.isfinite(full)
    d = np.where(finite, full / full[finite].max(), 1.0)
    n, num_q = len(d), len(q_q)
    order = [np.argsort(d[i], kind="stable") for i in range(n)]

    def neighbours(i, k):
        return set(order[i][: k + 1].tolist())

    def reciprocal(i, k):
        return {j for j in neighbours(i, k) if i in neighbours(j, k)}

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = set(r)
        for c in r:
            rc = reciprocal(c, round(k1 / 2))
            if len(rc & r) > 2 / 3 * len(rc):
                expanded |= rc
        for j in expanded:
            v[i, j] = math.exp(-d[i, j])
        v[i] /= v[i].sum()
    if k2 > 1:
        v = np.stack([v[order[i][:k2]].mean(0) for i in range(n)])
    out = np.zeros((num_q, n - num_q))
    for i in range(num_q):
        for j in range(n - num_q):
            vi, vj = v[i], v[num_q + j]
            jaccard = 1 - np.minimum(vi, vj).sum() / np.maximum(vi, vj).sum()
            out[i, j] = (1 - lam) * jaccard + lam * d[i, num_q + j]
    return out


@pytest.mark.parametrize(("k1", "k2", "lam"), [(4, 3, 0.3), (5, 1, 0.0), (3, 2, 0.6)])
def test_matches_naive_reference(k1, k2, lam):
    q, g, _, _ = _clusters(5, ids=5, per=4)
    q_g, q_q, g_g = _dists(q, g)
    q_g[1, 3:6] = float("inf")  # pairs without a shared visible part
    q_g[2, 7] = q_g[2, 8]  # an exact tie
    out = k_reciprocal_rerank(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    ref = naive_rerank(q_g.numpy(), q_q.numpy(), g_g.numpy(), k1, k2, lam)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_shapes_and_range():
    q, g, _, _ = _clusters(0, ids=5, per=3)
    out = k_reciprocal_rerank(*_dists(q, g), k1=4, k2=2)
    assert out.shape == (5, 15) and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1 + 1e-6


def test_lambda_one_is_the_scaled_original():
    q, g, _, _ = _clusters(1, ids=4, per=3)
    q_g, q_q, g_g = _dists(q, g)
    out = k_reciprocal_rerank(q_g, q_q, g_g, k1=4, k2=2, lambda_value=1.0)
    scale = torch.cat([q_g.flatten(), q_q.flatten(), g_g.flatten()]).max()
    torch.testing.assert_close(out, q_g / scale)


def test_exact_copy_ranks_first():
    q, g, _, _ = _clusters(2, ids=6, per=4)
    g = torch.cat([g, q])  # every query has an identical copy in the gallery
    out = k_reciprocal_rerank(*_dists(q, g, "cosine"), k1=5, k2=3)
    assert torch.equal(out.argmin(1), torch.arange(len(q)) + len(g) - len(q))


def test_symmetric_inputs_give_consistent_ranking():
    # query set == gallery set: re-ranked distance of an item to itself is the smallest
    _, g, _, _ = _clusters(3, ids=5, per=3)
    d = feature_distance(g, g, "euclidean")
    out = k_reciprocal_rerank(d, d, d, k1=4, k2=2)
    assert torch.equal(out.argmin(1), torch.arange(len(g)))


@pytest.mark.parametrize("seed", range(4))
def test_improves_map_on_toy_clusters(seed):
    q, g, qp, gp = _clusters(seed)
    q_g, q_q, g_g = _dists(q, g)
    cams_q, cams_g = torch.zeros(len(q)), torch.ones(len(g))
    before = evaluate_reid(q_g, qp, gp, cams_q, cams_g)["mAP"]
    after = evaluate_reid(k_reciprocal_rerank(q_g, q_q, g_g, k1=6, k2=3), qp, gp, cams_q, cams_g)
    assert after["mAP"] >= before


def test_infinite_distances_and_errors():
    q, g, _, _ = _clusters(4, ids=3, per=2)
    q_g, q_q, g_g = _dists(q, g)
    q_g[0, :2] = float("inf")  # e.g. no shared visible part
    out = k_reciprocal_rerank(q_g, q_q, g_g, k1=3, k2=2)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="disagree"):
        k_reciprocal_rerank(q_g, q_q[:2, :2], g_g)
    with pytest.raises(ValueError, match="k1"):
        k_reciprocal_rerank(q_g, q_q, g_g, k1=0)
