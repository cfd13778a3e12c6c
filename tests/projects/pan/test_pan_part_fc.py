"""The local FC shared by all parts (one parameter set) vs one per part, and gamma."""

import pytest
import torch
from detectron2.modeling import build_model
from pan_testutils import tiny_pan_cfg

from pan import PartFC, global_local_ratio


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_shared_fc_is_one_parameter_set_for_all_parts():
    c, n_l = 10, 4
    for p in (1, 3, 14):
        assert _count(PartFC(c, n_l, p, shared=True)) == c * n_l + n_l
        assert _count(PartFC(c, n_l, p, shared=False)) == p * (c * n_l + n_l)
    shared = PartFC(c, n_l, 3, shared=True)
    assert len(list(shared.parameters())) == 2  # one weight, one bias
    same_input = torch.randn(2, 1, c).expand(2, 3, c)
    out = shared(same_input)
    assert out.shape == (2, 3, n_l)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 1], out[:, 2])
    per_part = PartFC(c, n_l, 3, shared=False)(same_input)
    assert not torch.allclose(per_part[:, 0], per_part[:, 1])


def test_per_part_fc_applies_each_part_its_own_linear_map():
    torch.manual_seed(0)
    fc = PartFC(5, 2, 3, shared=False)
    x = torch.randn(4, 3, 5)
    expected = torch.stack([x[:, i] @ fc.weight[i].T + fc.bias[i] for i in range(3)], dim=1)
    torch.testing.assert_close(fc(x), expected)
    with pytest.raises(ValueError, match=r"\(N, 3, C\)"):
        fc(torch.randn(4, 2, 5))


def test_model_parameter_count_shared_vs_per_part():
    cfg = tiny_pan_cfg(num_masks=4)
    shared = build_model(cfg)
    cfg.MODEL.PAN.SHARED_LOCAL_FC = False
    per_part = build_model(cfg)
    c2, n_l, p = 64, cfg.MODEL.PAN.LOCAL_DIM, 4  # res5 of the tiny ResNet-18: 64 channels
    assert _count(shared.head.local_fc) == c2 * n_l + n_l
    assert _count(per_part) - _count(shared) == (p - 1) * (c2 * n_l + n_l)


def test_gamma_from_p_local_and_global_dims():
    assert global_local_ratio(14, 256, 512) == 7.0  # the paper's choice
    assert global_local_ratio(16, 256, 512) == 8.0
    assert global_local_ratio(14, 32, 512) == 0.875  # Fig. 2's smallest
    cfg = tiny_pan_cfg(num_masks=14)
    cfg.MODEL.PAN.LOCAL_DIM, cfg.MODEL.PAN.GLOBAL_DIM = 256, 512
    head = build_model(cfg).head
    assert head.gamma == 7.0
    out = head.eval()({"res4": torch.randn(2, 32, 4, 2), "res5": torch.randn(2, 64, 4, 2)})
    assert out["features"].shape == (2, 512 + 14 * 256)  # N_g + gamma * N_g
    with pytest.raises(ValueError, match="gamma"):
        global_local_ratio(0, 256, 512)
