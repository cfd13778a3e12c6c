"""HOIM: loss values and memory updates by hand, HOIM RoI heads with a tiny Res2Net."""

from __future__ import annotations

import person_search  # noqa: F401  (compat layer + registration, before detectron2 imports)

# isort: split
import math

import pytest
import torch
from detectron2.modeling import build_model
from ps_baselines_testutils import (
    NUM_IDS,
    check_inference_contract,
    params_without_grad,
    single_thread,  # noqa: F401  (fixture)
    toy_cfg,
    train_step,
    training_inputs,
)

from person_search.modeling.losses.hoim import HOIMLoss
from person_search.modeling.losses.oim import BACKGROUND_PID, UNLABELED_PID
from person_search.modeling.roi_heads.hoim_roi_heads import HOIMROIHeads

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = "hoim/hoim_toy_cuhk_sysu.yaml"


def _tiny_loss(**overrides) -> HOIMLoss:
    """N = 2 ids, queue M = 2, buffer B = 2, D = 2, scalar 1 (tau = 1), momentum 0.5."""
    kwargs = {
        "num_person_ids": 2,
        "embedding_dim": 2,
        "queue_size": 2,
        "momentum": 0.5,
        "scalar": 1.0,
        "bg_buffer_size": 2,
        "bg_per_update": 1,
    }
    kwargs.update(overrides)
    loss = HOIMLoss(**kwargs)
    loss.lut.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    loss.queue.copy_(torch.tensor([[-1.0, 0.0], [0.0, 0.0]]))
    loss.bg_buffer.copy_(torch.tensor([[0.0, -1.0], [0.0, 0.0]]))
    return loss


def _memory_dots(x):
    """Similarities of a 2-d feature to [lut0, lut1, q0, q1, g0, g1] of _tiny_loss."""
    return [x[0], x[1], -x[0], 0.0, -x[1], 0.0]


def _expected(x, pid):
    """(L_cls, lambda * L_OIM or None) of one feature, from the paper's formulas."""
    s = _memory_dots(x)
    e = [math.exp(v) for v in s]
    z = sum(e)
    p_f = sum(e[:4]) / z
    if pid == BACKGROUND_PID:
        return -math.log(1.0 - p_f), None
    if pid == UNLABELED_PID:
        return -math.log(p_f), None
    oim = -math.log(e[pid] / sum(e[:4]))
    return -math.log(p_f), 2.0 * p_f**2 * oim


def test_loss_values_by_hand():
    loss = _tiny_loss()
    feats = [(0.6, 0.8), (0.0, 1.0), (0.0, -1.0), (0.8, -0.6)]
    pids = [0, BACKGROUND_PID, UNLABELED_PID, 1]
    out = loss(torch.tensor(feats), torch.tensor(pids))
    expected = [_expected(x, p) for x, p in zip(feats, pids)]
    cls = sum(c for c, _ in expected) / len(feats)
    reid = sum(r for _, r in expected if r is not None) / 2  # two labelled RoIs
    assert set(out) == {"loss_hoim_cls", "loss_hoim_reid"}
    assert out["loss_hoim_cls"].item() == pytest.approx(cls, rel=1e-5)
    assert out["loss_hoim_reid"].item() == pytest.approx(reid, rel=1e-5)


def test_person_scores_are_p_f():
    loss = _tiny_loss().eval()
    x = (0.6, 0.8)
    e = [math.exp(v) for v in _memory_dots(x)]
    assert loss.person_scores(torch.tensor([x])).item() == pytest.approx(sum(e[:4]) / sum(e))


def test_lambda_is_a_detached_weight():
    loss = _tiny_loss().eval()  # eval: no memory update
    x = torch.tensor([[0.6, 0.8]], requires_grad=True)
    loss(x, torch.tensor([0]))["loss_hoim_reid"].backward()
    # d(lambda * L_OIM)/dx with lambda constant = lambda * d L_OIM / dx.
    s = torch.tensor(_memory_dots((0.6, 0.8)))
    p_f = s.exp()[:4].sum() / s.exp().sum()
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    softmax = s[:4].softmax(0)
    grad_oim = softmax @ memory - memory[0]
    torch.testing.assert_close(x.grad[0], 2 * p_f**2 * grad_oim)


class _MarginHOIM(HOIMLoss):
    """HOIM whose identity cross-entropy sees every target logit lowered by 1 (the hook)."""

    def identity_logits(self, logits, targets):
        labelled = (targets >= 0).nonzero().squeeze(1)
        margin = torch.zeros_like(logits)
        margin[labelled, targets[labelled]] = 1.0
        return logits - margin


def test_identity_logits_hook_changes_only_the_second_level():
    kwargs = {"num_person_ids": 2, "embedding_dim": 2, "queue_size": 2, "momentum": 0.5}
    kwargs.update({"scalar": 1.0, "bg_buffer_size": 2, "bg_per_update": 1})
    plain, margin = _tiny_loss().eval(), _MarginHOIM(**kwargs).eval()
    margin.load_state_dict(plain.state_dict())
    x = (0.6, 0.8)
    out, reference = (
        margin(torch.tensor([x]), torch.tensor([0])),
        plain(torch.tensor([x]), torch.tensor([0])),
    )
    # First level and lambda from the unmodified logits; the identity softmax over the N + M
    # person slots sees the target logit 0.6 - 1.
    assert out["loss_hoim_cls"].item() == pytest.approx(reference["loss_hoim_cls"].item())
    e = [math.exp(v) for v in _memory_dots(x)]
    p_f = sum(e[:4]) / sum(e)
    oim = -math.log(e[0] / math.e / (e[0] / math.e + sum(e[1:4])))
    assert out["loss_hoim_reid"].item() == pytest.approx(2 * p_f**2 * oim, rel=1e-5)


def test_memory_updates():
    loss = _tiny_loss()
    feats = torch.tensor([[0.6, 0.8], [0.0, 1.0], [0.0, -1.0], [1.0, 0.0]])
    pids = torch.tensor([0, BACKGROUND_PID, UNLABELED_PID, BACKGROUND_PID])
    loss(feats, pids)
    # LUT row 0: normalize(0.5 * (1, 0) + 0.5 * (0.6, 0.8)) = (0.8, 0.4) / |(0.8, 0.4)|.
    torch.testing.assert_close(loss.lut[0], torch.tensor([0.8, 0.4]) / math.sqrt(0.8))
    torch.testing.assert_close(loss.lut[1], torch.tensor([0.0, 1.0]))
    # The unlabelled feature went to queue slot 0.
    torch.testing.assert_close(loss.queue[0], torch.tensor([0.0, -1.0]))
    assert int(loss.queue_ptr) == 1
    # One background feature per update, the one of higher p_f: (0, 1) has similarities
    # [0, 1, 0, 0, -1, 0] -> p_f = (3 + e) / (4 + e + 1/e) = 0.807; (1, 0) has
    # [1, 0, -1, 0, 0, 0] -> p_f = (2 + e + 1/e) / (4 + e + 1/e) = 0.718.
    harder = (0.0, 1.0)
    torch.testing.assert_close(loss.bg_buffer[0], torch.tensor(harder))
    torch.testing.assert_close(loss.bg_buffer[1], torch.tensor([0.0, 0.0]))
    assert int(loss.bg_ptr) == 1


def test_background_buffer_is_fifo_and_wraps():
    loss = _tiny_loss(bg_per_update=2)
    bg = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ids = torch.full((2,), BACKGROUND_PID)
    loss(bg, ids)
    assert int(loss.bg_ptr) == 0  # 2 pushed into 2 slots: wrapped
    assert {tuple(r.tolist()) for r in loss.bg_buffer} == {(1.0, 0.0), (0.0, 1.0)}
    loss(torch.tensor([[-1.0, 0.0]]), torch.tensor([BACKGROUND_PID]))
    torch.testing.assert_close(loss.bg_buffer[0], torch.tensor([-1.0, 0.0]))  # oldest replaced
    assert int(loss.bg_ptr) == 1


def test_eval_mode_does_not_update_memory():
    loss = _tiny_loss().eval()
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    loss(torch.tensor([[0.6, 0.8], [0.0, 1.0]]), torch.tensor([0, BACKGROUND_PID]))
    for k, v in loss.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bad_inputs():
    loss = _tiny_loss()
    with pytest.raises(ValueError, match="person ids must be in"):
        loss(torch.tensor([[1.0, 0.0]]), torch.tensor([2]))
    with pytest.raises(ValueError, match="shape"):
        loss(torch.zeros(1, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="bg_buffer_size"):
        _tiny_loss(bg_buffer_size=0)


def test_hoim_model_train_steps_and_inference():
    torch.manual_seed(0)
    cfg = toy_cfg(CONFIG)
    model = build_model(cfg)
    heads = model.roi_heads
    assert isinstance(heads, HOIMROIHeads)
    assert heads.reid_loss.num_person_ids == NUM_IDS
    losses = train_step(model, training_inputs(0))
    assert set(losses) == {
        "loss_rpn_cls",
        "loss_rpn_loc",
        "loss_box_reg",
        "loss_hoim_cls",
        "loss_hoim_reid",
    }
    assert all(torch.isfinite(v) for v in losses.values())
    assert params_without_grad(model) == []
    assert int(heads.reid_loss.bg_ptr) == cfg.MODEL.HOIM.BG_PER_UPDATE
    # Second step: the memory is filled, so the embedding head gets a non-zero gradient.
    model.zero_grad()
    train_step(model, training_inputs(1))
    assert params_without_grad(heads.embedding_head, nonzero=True) == []
    check_inference_contract(model, cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM)


def test_hoim_heads_need_a_loss_with_person_scores():
    cfg = toy_cfg(CONFIG)
    assert cfg.MODEL.PERSON_SEARCH.REID_LOSS == "HOIMLoss"
    cfg.MODEL.PERSON_SEARCH.REID_LOSS = "OIMLoss"
    with pytest.raises(TypeError, match='MODEL.PERSON_SEARCH.REID_LOSS to "HOIMLoss"'):
        build_model(cfg)
    # The HOIM loss' logits are the scaled similarities to [LUT; queue; buffer].
    logits = _tiny_loss().logits(torch.tensor([[0.6, 0.8]]))
    torch.testing.assert_close(logits, torch.tensor([_memory_dots((0.6, 0.8))]))
