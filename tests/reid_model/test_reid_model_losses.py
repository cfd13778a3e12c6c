"""Re-id losses against hand-computed values on tiny batches."""

import math

import pytest
import torch
import torch.nn.functional as F

from person_search.modeling.losses.reid_losses import (
    batch_hard_triplet_loss,
    cross_entropy_label_smooth,
    pairwise_distance,
)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_label_smoothing_ce_by_hand():
    # softmax of log([1, 2, 1]) = [1/4, 1/2, 1/4]; target 1; eps 0.1, K = 3:
    # 0.9 * ln 2 + 0.1 * (ln 4 + ln 2 + ln 4) / 3 = (0.9 + 0.5 / 3) ln 2
    logits = torch.log(torch.tensor([[1.0, 2.0, 1.0]]))
    loss = cross_entropy_label_smooth(logits, torch.tensor([1]), 0.1)
    assert loss.item() == pytest.approx((0.9 + 0.5 / 3) * math.log(2), rel=1e-6)
    plain = cross_entropy_label_smooth(logits, torch.tensor([1]), 0.0)
    assert plain.item() == pytest.approx(math.log(2), rel=1e-6)


def test_label_smoothing_ce_matches_torch():
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 5), torch.tensor([0, 1, 4, 4, 2, 3])
    ours = cross_entropy_label_smooth(logits, targets, 0.1)
    ref = F.cross_entropy(logits, targets, label_smoothing=0.1)
    torch.testing.assert_close(ours, ref)


def test_label_smoothing_ce_rejects_bad_input():
    with pytest.raises(ValueError, match="epsilon"):
        cross_entropy_label_smooth(torch.zeros(2, 3), torch.tensor([0, 1]), 1.0)
    with pytest.raises(ValueError, match="logits"):
        cross_entropy_label_smooth(torch.zeros(2, 3), torch.tensor([0, 1, 2]), 0.1)


# 1-D features 0, 2, 2.5, 10 with ids 0, 0, 1, 2 (ids 1 and 2 have a single sample, whose
# hardest positive is the anchor itself at distance 0):
#   anchor 0: d_ap = 2, d_an = 2.5      anchor 1: d_ap = 2, d_an = 0.5
#   anchor 2: d_ap = 0, d_an = 0.5      anchor 3: d_ap = 0, d_an = 7.5
_FEATS_1D = torch.tensor([[0.0], [2.0], [2.5], [10.0]])
_IDS_1D = torch.tensor([0, 0, 1, 2])


def test_batch_hard_triplet_hinge_by_hand():
    loss = batch_hard_triplet_loss(_FEATS_1D, _IDS_1D, margin=0.3)
    # max(0, gap + 0.3) for gaps -0.5, 1.5, -0.5, -7.5 -> 0, 1.8, 0, 0
    assert loss.item() == pytest.approx(1.8 / 4, abs=1e-5)


def test_batch_hard_triplet_soft_margin_by_hand():
    loss = batch_hard_triplet_loss(_FEATS_1D, _IDS_1D, soft_margin=True)
    expected = (_softplus(-0.5) + _softplus(1.5) + _softplus(-0.5) + _softplus(-7.5)) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_single_sample_id_uses_itself_as_positive():
    # ids 0 and 1 single: d_ap = 0 for both, d_an = 0.1 -> max(0, -0.1 + 0.3) = 0.2 each
    feats = torch.tensor([[0.0], [0.1]])
    loss = batch_hard_triplet_loss(feats, torch.tensor([0, 1]), margin=0.3)
    assert loss.item() == pytest.approx(0.2, abs=1e-5)


def test_batch_hard_triplet_cosine_by_hand():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ids = torch.tensor([0, 0, 1])
    d_diag = 1.0 - 1.0 / math.sqrt(2.0)  # cosine distance to [1, 1]
    # anchors 0 and 1: d_ap = 1, d_an = d_diag; anchor 2: d_ap = 0, d_an = d_diag
    expected = (2 * max(0.0, 1.0 - d_diag + 0.3) + max(0.0, -d_diag + 0.3)) / 3
    loss = batch_hard_triplet_loss(feats, ids, margin=0.3, metric="cosine")
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_triplet_without_negatives_is_zero_and_differentiable():
    feats = torch.randn(3, 4, requires_grad=True)
    loss = batch_hard_triplet_loss(feats, torch.tensor([5, 5, 5]))
    assert loss.item() == 0.0
    loss.backward()
    assert feats.grad is not None and torch.all(feats.grad == 0)


def test_triplet_fp16_safe_and_finite_gradients_for_duplicates():
    torch.manual_seed(0)
    feats = torch.randn(8, 16)
    feats[1] = feats[0]  # identical vectors: the distance floor keeps sqrt's gradient finite
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    ref = batch_hard_triplet_loss(feats, ids)
    half = feats.half().requires_grad_(True)
    loss = batch_hard_triplet_loss(half, ids)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), rel=1e-2)
    loss.backward()
    assert torch.isfinite(half.grad).all()
    for metric in ("euclidean", "cosine"):
        soft = batch_hard_triplet_loss(half, ids, soft_margin=True, metric=metric)
        assert torch.isfinite(soft)


def test_pairwise_distance_matches_cdist_and_cosine():
    torch.manual_seed(0)
    x, y = torch.randn(5, 7), torch.randn(3, 7)
    torch.testing.assert_close(pairwise_distance(x, y), torch.cdist(x, y), atol=1e-4, rtol=1e-4)
    cos = F.cosine_similarity(x.unsqueeze(1), y.unsqueeze(0), dim=2)
    torch.testing.assert_close(pairwise_distance(x, y, "cosine"), 1 - cos, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="manhattan"):
        pairwise_distance(x, y, "manhattan")
