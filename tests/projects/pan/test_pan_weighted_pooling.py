"""PAN's weighted pooling f_i = sum(F2 * m_i) / sum(|m_i|), checked by hand."""

import pytest
import torch

from pan import WeightedPartPooling, weighted_part_pooling


def test_hand_computed_on_a_2x2_map_with_negative_mask_values():
    # F2: 2 channels on a 2x2 grid
    features = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.0], [2.0, 1.0]]])[None]
    masks = torch.tensor(
        [
            [[1.0, -1.0], [0.5, 0.0]],  # sum |m| = 2.5
            [[-2.0, 0.0], [0.0, 2.0]],  # sums to 0, sum |m| = 4
            [[0.25, 0.25], [0.25, 0.25]],  # a quarter everywhere: the mean
        ]
    )[None]
    pooled = weighted_part_pooling(features, masks)
    assert pooled.shape == (1, 3, 2)
    expected = torch.tensor(
        [
            # channel 0: 1*1 + 2*(-1) + 3*0.5 + 4*0 = 0.5; channel 1: -1 + 0 + 1 + 0 = 0
            [0.5 / 2.5, 0.0 / 2.5],
            # channel 0: 1*(-2) + 4*2 = 6; channel 1: -1*(-2) + 1*2 = 4
            [6.0 / 4.0, 4.0 / 4.0],
            # the spatial means
            [2.5, 0.5],
        ]
    )
    torch.testing.assert_close(pooled[0], expected)


def test_zero_mask_is_guarded_and_pools_to_zero():
    features = torch.randn(2, 3, 2, 2, requires_grad=True)
    masks = torch.zeros(2, 1, 2, 2, requires_grad=True)
    pooled = weighted_part_pooling(features, masks, eps=1e-6)
    assert torch.equal(pooled, torch.zeros(2, 1, 3))
    pooled.sum().backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(masks.grad).all()


def test_non_negative_masks_give_the_usual_weighted_average():
    torch.manual_seed(0)
    features, masks = torch.randn(2, 5, 3, 4), torch.rand(2, 4, 3, 4)
    weights = masks / masks.sum(dim=(2, 3), keepdim=True)
    expected = (features[:, None] * weights[:, :, None]).sum(dim=(3, 4))
    torch.testing.assert_close(WeightedPartPooling()(features, masks), expected)


def test_half_precision_is_pooled_in_float32():
    features = torch.full((1, 1, 2, 2), 300.0, dtype=torch.float16)
    masks = torch.full((1, 1, 2, 2), 300.0, dtype=torch.float16)  # products overflow fp16
    pooled = weighted_part_pooling(features, masks)
    assert pooled.dtype == torch.float16 and pooled.item() == 300.0


def test_bad_shapes_and_eps():
    with pytest.raises(ValueError, match="spatial size"):
        weighted_part_pooling(torch.zeros(1, 2, 4, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        weighted_part_pooling(torch.zeros(2, 4, 2), torch.zeros(1, 3, 4, 2))
    with pytest.raises(ValueError, match="MODEL.PAN.POOLING_EPS"):
        WeightedPartPooling(eps=0.0)
