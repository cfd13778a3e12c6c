"""SGA modules: attention shapes and effect, and the mask loss on hand values."""

import math

import pytest
import torch

from sgsfa.sga import BranchEmbedding, PartAttention, WholeBodyAttention, mask_loss


def test_whole_body_attention_multiplies_by_its_maps():
    torch.manual_seed(0)
    att = WholeBodyAttention(16, reduction=8).eval()
    x = torch.randn(2, 16, 8, 4)
    out, logits = att(x)
    assert out.shape == x.shape and logits.shape == (2, 1, 8, 4)
    expected = x * torch.sigmoid(logits) * att.channel(x)
    torch.testing.assert_close(out, expected)
    # a spatial map of zeros (-inf logits) removes the features everywhere
    with torch.no_grad():
        att.spatial[-1].bias.fill_(-1e4)
    assert att(x)[0].abs().max() == 0
    with pytest.raises(ValueError, match="WHOLE_REDUCTION"):
        WholeBodyAttention(16, reduction=0)


def test_part_attention_and_branch_shapes():
    att = PartAttention(32, num_parts=4, reduction=2)
    assert att.shared[0].out_channels == 16
    assert att(torch.randn(3, 32, 8, 4)).shape == (3, 4, 8, 4)
    assert BranchEmbedding(32, 8)(torch.randn(3, 32, 8, 4)).shape == (3, 8)
    with pytest.raises(ValueError, match="PART_REDUCTION"):
        PartAttention(32, num_parts=4, reduction=0)


def _bce(z: float, t: float) -> float:
    p = 1 / (1 + math.exp(-z))
    return -t * math.log(p) - (1 - t) * math.log(1 - p)


def test_mask_loss_cell_targets_and_skipped_images():
    # 2 parts on a 1 x 2 logit map; masks 2 x 4: each logit cell covers a 2 x 2 block
    logits = torch.tensor([[[[math.log(3), 0.0]], [[-1.0, 2.0]]]])  # (1, 2, 1, 2)
    masks = torch.zeros(1, 2, 2, 4)
    masks[0, 0, 0, 0] = 1  # part 0: a quarter of the left block -> target 1 (max pooling)
    masks[0, 1, :, 2:] = 1  # part 1: the whole right block
    part0 = (_bce(math.log(3), 1.0) + _bce(0.0, 0.0)) / 2
    part1 = (_bce(-1.0, 0.0) + _bce(2.0, 1.0)) / 2
    loss = mask_loss(logits, masks, torch.tensor([True]))
    assert loss.item() == pytest.approx(part0 + part1, rel=1e-6)  # summed over parts (eq. 9)
    # an image whose map is unknown (-1) is left out: same loss as without it
    both = mask_loss(
        torch.cat([logits, torch.randn(1, 2, 1, 2)]),
        torch.cat([masks, -torch.ones(1, 2, 2, 4)]),
        torch.tensor([True, False]),
    )
    assert both.item() == pytest.approx(loss.item(), rel=1e-6)
    none = mask_loss(logits.requires_grad_(), masks, torch.tensor([False]))
    assert none.item() == 0.0
    none.backward()  # connected, zero gradient
    assert torch.equal(logits.grad, torch.zeros_like(logits))
