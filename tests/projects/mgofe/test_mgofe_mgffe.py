"""MGFFE: p' = p + sum_j softmax_j(q k_j / sqrt(d)) v_j against a hand computation (d = 2, two
virtual features); an untrained MGFFE is the identity; shapes are checked."""

import math

import pytest
import torch

from mgofe import MGFFE


def _mgffe() -> MGFFE:
    m = MGFFE(in_dim=2, attn_dim=2)
    with torch.no_grad():
        m.query.weight.copy_(torch.eye(2))  # q = p
        m.key.weight.copy_(torch.eye(2))  # k_j = g_j
        m.value.weight.copy_(torch.tensor([[2.0, 1.0], [0.0, 1.0]]))  # v_j = g_j W^T
    return m


def test_mgffe_equals_the_hand_computation():
    p = torch.tensor([[1.0, 0.0]])
    g = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])  # g_1, g_2
    # q = (1, 0); k_1 = (0, 1), k_2 = (1, 1): logits 0 and 1 / sqrt(2)
    w2 = math.exp(1 / math.sqrt(2)) / (1 + math.exp(1 / math.sqrt(2)))
    w1 = 1 - w2  # 0.330239..
    # v_1 = (2*0 + 1*1, 0*0 + 1*1) = (1, 1); v_2 = (2 + 1, 1) = (3, 1)
    expected = torch.tensor([[1.0 + w1 * 1 + w2 * 3, 0.0 + w1 * 1 + w2 * 1]])
    assert expected[0, 0].item() == pytest.approx(3.339523, abs=1e-6)
    m = _mgffe()
    torch.testing.assert_close(m.attention(p, g), torch.tensor([[w1, w2]]))
    torch.testing.assert_close(m(p, g), expected)


def test_rows_are_independent_and_order_of_virtual_features_does_not_matter():
    m = _mgffe()
    p = torch.tensor([[1.0, 0.0], [0.5, -2.0]])
    g = torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[3.0, 0.0], [-1.0, 2.0]]])
    out = m(p, g)
    torch.testing.assert_close(out[1:], m(p[1:], g[1:]))
    torch.testing.assert_close(out, m(p, g.flip(1)))


def test_untrained_mgffe_is_the_identity_and_gets_gradients():
    torch.manual_seed(0)
    m = MGFFE(in_dim=6, attn_dim=3)
    p, g = torch.randn(4, 6), torch.randn(4, 2, 6)
    torch.testing.assert_close(m(p, g), p)  # W_v starts at zero
    m(p, g).pow(2).sum().backward()
    assert m.value.weight.grad.abs().sum() > 0


def test_bad_shapes_and_sizes_are_refused():
    m = MGFFE(in_dim=2)
    with pytest.raises(ValueError, match="real \\(M, C\\) and virtual \\(M, m, C\\)"):
        m(torch.zeros(3, 2), torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="in_dim >= 1"):
        MGFFE(in_dim=0)
