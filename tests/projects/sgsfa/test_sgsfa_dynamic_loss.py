"""The dynamic classification loss (eq. 3) on hand-computed examples."""

import math

import pytest
import torch

from sgsfa.dynamic_loss import choose_regions, dynamic_classification_loss, sample_regions


def test_choice_of_regions_follows_eq_3():
    # columns: top, middle, bottom, top+middle, middle+bottom
    cases = {
        (1, 1, 1): [1, 1, 1, 1, 1],  # FR
        (1, 1, 0): [1, 1, 0, 1, 0],  # {top, middle, top+middle}
        (1, 0, 1): [1, 0, 0, 0, 0],  # {top}: a bottom counts only below a visible middle
        (1, 0, 0): [1, 0, 0, 0, 0],  # {top}
        (0, 1, 1): [0, 0, 0, 0, 0],  # no top: nothing
        (0, 1, 0): [0, 0, 0, 0, 0],
        (0, 0, 1): [0, 0, 0, 0, 0],
        (0, 0, 0): [0, 0, 0, 0, 0],
    }
    visible = torch.tensor(list(cases), dtype=torch.bool)
    assert choose_regions(visible).int().tolist() == list(cases.values())
    with pytest.raises(ValueError, match="top, middle, bottom"):
        choose_regions(torch.ones(2, 5, dtype=torch.bool))


def _two_class_logits(z: list[float]) -> list[list[float]]:
    return [[v, 0.0] for v in z]


def test_dynamic_loss_hand_computed_with_invisible_regions():
    # 4 images, 2 classes; region logits [z, 0]: CE(target 0) = log(1 + e^-z),
    # CE(target 1) = log(1 + e^z)
    big = 50.0  # a region wrongly included would add ~50 (target 1) or shift the mean
    logits = torch.tensor(
        [
            _two_class_logits([0, 1, 2, 3, 4]),  # all visible, target 0
            _two_class_logits([0, math.log(3), big, -math.log(3), big]),  # t, m visible; 1
            _two_class_logits([big] * 5),  # t invisible: none chosen, target 0
            _two_class_logits([math.log(3), big, big, big, big]),  # t, b visible: top; 1
        ]
    )
    targets = torch.tensor([0, 1, 0, 1])
    visible = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=torch.bool)
    chosen = choose_regions(visible)
    terms = [math.log1p(math.exp(-z)) for z in range(5)]  # image 0
    terms += [math.log(2), math.log(4), math.log(4 / 3)]  # image 1: top, middle, top+middle
    terms += [math.log(4)]  # image 3: top
    expected = sum(terms) / 9
    loss = dynamic_classification_loss(logits, targets, chosen, epsilon=0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)

    # label smoothing (eq. 10): (1 - eps) * nll + eps * mean over the K classes of -log p_k
    eps = 0.1

    def smoothed(z: float, target: int) -> float:
        log_p = [-math.log1p(math.exp(-z)), -math.log1p(math.exp(z))]  # log p_0, log p_1
        return -(1 - eps) * log_p[target] - eps * sum(log_p) / 2

    pairs = [(z, 0) for z in range(5)]
    pairs += [(0.0, 1), (math.log(3), 1), (-math.log(3), 1), (math.log(3), 1)]
    expected_ls = sum(smoothed(z, t) for z, t in pairs) / 9
    loss_ls = dynamic_classification_loss(logits, targets, chosen, epsilon=eps)
    assert loss_ls.item() == pytest.approx(expected_ls, rel=1e-6)


def test_nothing_chosen_gives_a_connected_zero():
    logits = torch.randn(2, 5, 3, requires_grad=True)
    chosen = choose_regions(torch.tensor([[0, 1, 1], [0, 0, 0]], dtype=torch.bool))
    loss = dynamic_classification_loss(logits, torch.tensor([0, 1]), chosen)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_sampling_keeps_k_chosen_regions_per_image():
    chosen = choose_regions(torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0]]).bool())
    assert torch.equal(sample_regions(chosen, 0), chosen)
    seen = torch.zeros(5)
    for seed in range(40):
        kept = sample_regions(chosen, 2, torch.Generator().manual_seed(seed))
        assert not (kept & ~chosen).any()
        assert kept.sum(1).tolist() == [2, 2, 1, 0]  # at most k, all when fewer
        seen += kept[0].float()
    assert (seen > 0).all()  # every region of the first image is drawn at some point
    with pytest.raises(ValueError, match="DCLS_SAMPLES"):
        sample_regions(chosen, -1)
