"""OIM: loss values, gradients, LUT and queue updates by hand; the OIM model (PersonSearchRCNN +
OIMROIHeads) on tiny CPU inputs."""

from __future__ import annotations

import person_search  # noqa: F401  (compat layer + registration, before detectron2 imports)

# isort: split
import math

import pytest
import torch
from detectron2.config import configurable
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from ps_baselines_testutils import (
    check_inference_contract,
    params_without_grad,
    single_thread,  # noqa: F401  (fixture)
    toy_cfg,
    train_step,
    training_inputs,
)
from torch import nn

from person_search.config import get_cfg
from person_search.modeling.losses import REID_LOSS_REGISTRY, build_reid_loss
from person_search.modeling.losses.oim import BACKGROUND_PID, UNLABELED_PID, OIMLoss, push_circular
from person_search.modeling.meta_arch.person_search_rcnn import PersonSearchRCNN
from person_search.modeling.roi_heads.oim_roi_heads import OIMROIHeads

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = "oim/oim_toy_cuhk_sysu.yaml"
U = UNLABELED_PID
E = math.exp


def _tiny_oim(**overrides) -> OIMLoss:
    """L = 2 ids, queue Q = 2, D = 2, scalar 1, momentum 0.5; LUT rows (1, 0) and (0, 1),
    queue rows (-1, 0) and (0, 0) (an empty slot)."""
    kwargs = {"num_person_ids": 2, "embedding_dim": 2, "queue_size": 2}
    kwargs.update({"momentum": 0.5, "scalar": 1.0})
    kwargs.update(overrides)
    loss = OIMLoss(**kwargs)
    loss.lut.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    if loss.queue_size == 2:
        loss.queue.copy_(torch.tensor([[-1.0, 0.0], [0.0, 0.0]]))
    return loss


def _unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


# ------------------------------------------------------------------------------ loss values
def test_loss_value_by_hand():
    loss = _tiny_oim().eval()  # eval: the tables stay as set
    feats = torch.tensor([[0.6, 0.8], [0.8, -0.6], [0.0, 1.0]])
    out = loss(feats, torch.tensor([0, 1, U]))["loss_oim"]
    # Feature (0.6, 0.8), id 0: similarities to [lut0, lut1, q0, q1] = [0.6, 0.8, -0.6, 0]:
    # -log(e^0.6 / (e^0.6 + e^0.8 + e^-0.6 + e^0)) = -log(1.82212 / 5.59647) = 1.1221363.
    first = -math.log(E(0.6) / (E(0.6) + E(0.8) + E(-0.6) + 1.0))
    assert first == pytest.approx(1.1221363, abs=1e-7)
    # Feature (0.8, -0.6), id 1: similarities [0.8, -0.6, -0.8, 0].
    second = -math.log(E(-0.6) / (E(0.8) + E(-0.6) + E(-0.8) + 1.0))
    # The unlabelled feature is no target: the mean runs over the two labelled ones.
    assert out.item() == pytest.approx((first + second) / 2, rel=1e-6)
    weighted = _tiny_oim(loss_weight=0.25).eval()(feats, torch.tensor([0, 1, U]))["loss_oim"]
    assert weighted.item() == pytest.approx(0.25 * (first + second) / 2, rel=1e-6)


def test_scalar_is_the_inverse_temperature():
    # tau = 1/30: scalar 30. Feature (1, 0) against LUT (1, 0), (0, 1), no queue:
    # id 1 -> -log(e^0 / (e^30 + e^0)) = log(1 + e^30) = 30.0000000000001.
    loss = _tiny_oim(scalar=30.0, queue_size=0).eval()
    x = torch.tensor([[1.0, 0.0]])
    assert loss(x, torch.tensor([1]))["loss_oim"].item() == pytest.approx(30.0, rel=1e-6)
    # id 0 -> log(1 + e^-30) = 9.4e-14.
    assert loss(x, torch.tensor([0]))["loss_oim"].item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_by_hand():
    # d(-log softmax(s T x)_y) / dx = s * (softmax(s T x)^T T - T_y), T = [LUT; queue];
    # unlabelled features get no gradient.
    loss = _tiny_oim(scalar=2.0).eval()
    x = torch.tensor([[0.6, 0.8], [0.0, 1.0]], requires_grad=True)
    loss(x, torch.tensor([1, U]))["loss_oim"].backward()
    tables = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    p = (2.0 * tables @ torch.tensor([0.6, 0.8])).softmax(0)
    expected = 2.0 * (p @ tables - tables[1])
    torch.testing.assert_close(x.grad[0], expected)
    torch.testing.assert_close(x.grad[1], torch.zeros(2))
    assert loss.lut.grad is None and not loss.lut.requires_grad  # tables are not learned


# ------------------------------------------------------------------------------ LUT updates
def test_lut_momentum_update_and_renormalisation():
    loss = _tiny_oim()
    loss(torch.tensor([[0.6, 0.8]]), torch.tensor([0]))
    # normalize(0.5 * (1, 0) + 0.5 * (0.6, 0.8)) = (0.8, 0.4) / |(0.8, 0.4)| = (2, 1) / sqrt(5).
    torch.testing.assert_close(loss.lut[0], torch.tensor([2.0, 1.0]) / math.sqrt(5.0))
    torch.testing.assert_close(loss.lut[1], torch.tensor([0.0, 1.0]))  # untouched
    # momentum 0.9: normalize(0.9 * (0, 1) + 0.1 * (1, 0)) = (0.1, 0.9) / sqrt(0.82).
    slow = _tiny_oim(momentum=0.9)
    slow(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    torch.testing.assert_close(slow.lut[1], torch.tensor([0.1, 0.9]) / math.sqrt(0.82))


def test_empty_lut_row_takes_the_first_feature():
    loss = OIMLoss(num_person_ids=3, embedding_dim=2, queue_size=0, momentum=0.5, scalar=30.0)
    loss(torch.tensor([[0.6, 0.8]]), torch.tensor([2]))
    # normalize(0.5 * 0 + 0.5 * x) = x; the other rows stay empty.
    torch.testing.assert_close(loss.lut, torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.6, 0.8]]))


def test_id_twice_in_a_batch_is_applied_in_input_order():
    loss = _tiny_oim()
    feats = torch.tensor([[0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    out = loss(feats, torch.tensor([0, 1, 0]))["loss_oim"]
    # Row 0 first takes (0, 1): normalize((0.5, 0.5)) = (1, 1) / sqrt(2); then (-1, 0):
    # 0.5 * (0.7071, 0.7071) + 0.5 * (-1, 0) = (-0.1464, 0.3536) -> (-sin 22.5deg, cos 22.5deg).
    expected0 = torch.tensor([-math.sin(math.pi / 8), math.cos(math.pi / 8)])
    torch.testing.assert_close(loss.lut[0], expected0)
    # Row 1: normalize(0.5 * (0, 1) + 0.5 * (0.6, 0.8)) = (0.3, 0.9) / sqrt(0.9).
    torch.testing.assert_close(loss.lut[1], torch.tensor([0.3, 0.9]) / math.sqrt(0.9))
    # The loss was computed with the tables as they were before the update.
    tables = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, 0.0)]
    per_sample = []
    for x, y in zip(feats.tolist(), [0, 1, 0]):
        sims = [x[0] * t[0] + x[1] * t[1] for t in tables]
        per_sample.append(-math.log(E(sims[y]) / sum(E(s) for s in sims)))
    assert out.item() == pytest.approx(sum(per_sample) / 3, rel=1e-6)
    # Reversed order gives another row: (-1, 0) first cancels (1, 0) to the zero vector, then
    # (0, 1) gives normalize((0, 0.5)) = (0, 1).
    reverse = _tiny_oim()
    reverse(feats.flip(0), torch.tensor([0, 1, 0]))
    torch.testing.assert_close(reverse.lut[0], torch.tensor([0.0, 1.0]))


# ---------------------------------------------------------------------------- queue updates
def test_queue_is_circular_and_its_pointer_wraps():
    loss = OIMLoss(num_person_ids=1, embedding_dim=2, queue_size=3, momentum=0.5, scalar=1.0)
    a, b, c, d, e, f, g, h = (_unit(k * 40.0) for k in range(8))
    loss(torch.tensor([a, b]), torch.tensor([U, U]))
    torch.testing.assert_close(loss.queue, torch.tensor([a, b, [0.0, 0.0]]))
    assert int(loss.queue_ptr) == 2
    # c -> slot 2, d -> slot 0 (the oldest, a): the pointer wraps to 1.
    loss(torch.tensor([c, d]), torch.tensor([U, U]))
    torch.testing.assert_close(loss.queue, torch.tensor([d, b, c]))
    assert int(loss.queue_ptr) == 1
    # Four at once into three slots from slot 1, as one at a time: e -> 1, f -> 2, g -> 0,
    # h -> 1 (overwriting e); the pointer moves by 4: (1 + 4) % 3 = 2.
    loss(torch.tensor([e, f, g, h]), torch.tensor([U, U, U, U]))
    torch.testing.assert_close(loss.queue, torch.tensor([g, h, f]))
    assert int(loss.queue_ptr) == 2
    # Labelled features never enter the queue.
    loss(torch.tensor([a]), torch.tensor([0]))
    torch.testing.assert_close(loss.queue, torch.tensor([g, h, f]))
    assert int(loss.queue_ptr) == 2


def test_push_circular_matches_one_at_a_time():
    gen = torch.Generator().manual_seed(0)
    for size, start, n in [(5, 0, 3), (5, 4, 3), (5, 2, 5), (5, 3, 12), (1, 0, 4)]:
        items = torch.randn(n, 2, generator=gen)
        buffer, ptr = torch.zeros(size, 2), torch.tensor(start)
        push_circular(buffer, ptr, items)
        reference, slot = torch.zeros(size, 2), start
        for item in items:
            reference[slot] = item
            slot = (slot + 1) % size
        torch.testing.assert_close(buffer, reference)
        assert int(ptr) == slot


def test_unlabelled_features_are_no_target_but_fill_the_queue():
    loss = _tiny_oim()
    x_lab, x_unl = [0.6, 0.8], [0.0, -1.0]
    # Only unlabelled persons: the loss is exactly 0 (with a graph), the queue takes them.
    only_unl = torch.tensor([x_unl], requires_grad=True)
    out = loss(only_unl, torch.tensor([U]))["loss_oim"]
    assert out.item() == 0.0 and out.requires_grad
    torch.testing.assert_close(loss.queue[0], torch.tensor(x_unl))
    assert int(loss.queue_ptr) == 1
    # In one batch, the unlabelled feature changes neither the loss nor the labelled gradient.
    frozen = _tiny_oim().eval()
    alone = frozen(torch.tensor([x_lab]), torch.tensor([0]))["loss_oim"]
    mixed = frozen(torch.tensor([x_lab, x_unl]), torch.tensor([0, U]))["loss_oim"]
    assert mixed.item() == pytest.approx(alone.item(), rel=1e-7)
    # Once in the queue it is a negative of later steps: queue is now [(0, -1), (0, 0)] and the
    # similarities of x_lab to [lut0, lut1, q0, q1] are [0.6, 0.8, -0.8, 0].
    loss.eval()
    after = loss(torch.tensor([x_lab]), torch.tensor([0]))["loss_oim"]
    expected = -math.log(E(0.6) / (E(0.6) + E(0.8) + E(-0.8) + 1.0))
    assert after.item() == pytest.approx(expected, rel=1e-6)


def test_background_rows_are_ignored_entirely():
    # The registry contract: every sampled RoI is passed, background ones with BACKGROUND_PID;
    # OIM ignores them (no loss term, no gradient, no memory update).
    loss, reference = _tiny_oim(), _tiny_oim()
    x = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]], requires_grad=True)
    out = loss(x, torch.tensor([0, BACKGROUND_PID, U]))["loss_oim"]
    expected = reference(x[[0, 2]].detach(), torch.tensor([0, U]))["loss_oim"]
    assert out.item() == pytest.approx(expected.item(), rel=1e-7)
    out.backward()
    torch.testing.assert_close(x.grad[1], torch.zeros(2))
    for name, value in loss.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[name])


def test_logits_are_scaled_similarities_to_lut_then_queue():
    loss = _tiny_oim(scalar=2.0)
    logits = loss.logits(torch.tensor([[0.6, 0.8]]))
    # [lut0, lut1, q0, q1] = [(1, 0), (0, 1), (-1, 0), (0, 0)]: 2 * [0.6, 0.8, -0.6, 0].
    torch.testing.assert_close(logits, torch.tensor([[1.2, 1.6, -1.2, 0.0]]))


class _MarginOIM(OIMLoss):
    """OIM whose identity cross-entropy sees every target logit lowered by 1 (the hook)."""

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen_targets: list[torch.Tensor] = []

    def identity_logits(self, logits, targets):
        self.seen_targets.append(targets.clone())
        labelled = (targets >= 0).nonzero().squeeze(1)
        margin = torch.zeros_like(logits)
        margin[labelled, targets[labelled]] = 1.0
        return logits - margin


def test_identity_logits_hook_is_what_the_cross_entropy_reads():
    plain, margin = (
        _tiny_oim(),
        _MarginOIM(num_person_ids=2, embedding_dim=2, queue_size=2, momentum=0.5, scalar=1.0),
    )
    margin.load_state_dict(plain.state_dict())
    feats = torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])
    pids = torch.tensor([0, U, BACKGROUND_PID])
    out = margin(feats, pids)["loss_oim"]
    # Target logit 0.6 - 1 against [0.8, -0.6, 0] (the background row is dropped first).
    expected = -math.log(E(-0.4) / (E(-0.4) + E(0.8) + E(-0.6) + 1.0))
    assert out.item() == pytest.approx(expected, rel=1e-6)
    assert margin.seen_targets[0].tolist() == [0, U]
    plain(feats, pids)  # the memory updates are the plain loss'
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(margin.state_dict()[name], value)
    assert torch.equal(_tiny_oim().identity_logits(feats, pids), feats)  # default: identity


def test_registry_builds_the_configured_loss():
    cfg = get_cfg()
    assert cfg.MODEL.PERSON_SEARCH.REID_LOSS == "OIMLoss"
    assert {"OIMLoss", "HOIMLoss"} <= {name for name, _ in REID_LOSS_REGISTRY}
    doc = REID_LOSS_REGISTRY.__doc__
    assert "obj(cfg, num_person_ids=L)" in doc and "logits(embeddings)" in doc
    cfg.MODEL.OIM.QUEUE_SIZE = 3
    built = build_reid_loss(cfg, num_person_ids=7)
    assert type(built) is OIMLoss and built.lut.shape == (7, 256) and built.queue_size == 3
    cfg.MODEL.PERSON_SEARCH.REID_LOSS = "NoSuchLoss"
    with pytest.raises(KeyError, match="MODEL.PERSON_SEARCH.REID_LOSS='NoSuchLoss'"):
        build_reid_loss(cfg, num_person_ids=7)


def test_queue_size_zero():
    loss = _tiny_oim(queue_size=0)
    assert loss.queue.shape == (0, 2)
    out = loss(torch.tensor([[0.6, 0.8], [0.0, 1.0]]), torch.tensor([0, U]))["loss_oim"]
    # The softmax runs over the LUT only: -log(e^0.6 / (e^0.6 + e^0.8)).
    assert out.item() == pytest.approx(-math.log(E(0.6) / (E(0.6) + E(0.8))), rel=1e-6)
    assert int(loss.queue_ptr) == 0  # unlabelled features were dropped without error


def test_eval_mode_does_not_update_and_tables_are_checkpointed():
    loss = _tiny_oim().eval()
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    assert set(before) == {"lut", "queue", "queue_ptr"}
    loss(torch.tensor([[0.6, 0.8], [0.0, 1.0]]), torch.tensor([0, U]))
    for k, v in loss.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bad_inputs_and_arguments():
    loss = _tiny_oim()
    with pytest.raises(ValueError, match="MODEL.OIM.NUM_PERSON_IDS"):
        loss(torch.tensor([[1.0, 0.0]]), torch.tensor([2]))
    with pytest.raises(ValueError, match=r"person ids must be in .* got \[-3\]"):
        loss(torch.tensor([[1.0, 0.0]]), torch.tensor([-3]))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        loss(torch.zeros(1, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="do not match"):
        loss(torch.zeros(2, 2), torch.tensor([0]))
    for bad, match in [
        ({"num_person_ids": 0}, "num_person_ids > 0"),
        ({"queue_size": -1}, "queue_size >= 0"),
        ({"momentum": 1.0}, r"momentum in \[0, 1\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            _tiny_oim(**bad)


# ------------------------------------------------------------------------------- OIM model
def _oim_model():
    torch.manual_seed(0)
    cfg = toy_cfg(CONFIG)
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 64
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 16
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM = 16
    cfg.MODEL.OIM.QUEUE_SIZE = 8
    # OIM's values (the toy config softens them for training from scratch on CPU).
    cfg.MODEL.OIM.SCALAR = 30.0
    cfg.MODEL.OIM.LOSS_WEIGHT = 1.0
    return cfg, build_model(cfg)


def test_oim_model_train_steps_losses_and_gradients():
    cfg, model = _oim_model()
    assert isinstance(model, PersonSearchRCNN) and isinstance(model.roi_heads, OIMROIHeads)
    heads = model.roi_heads
    assert heads.reid_loss.scalar == 30.0 and heads.reid_loss.lut.shape == (4, 16)
    losses = train_step(model, training_inputs(0))
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_oim"}
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    assert params_without_grad(model) == []
    # Empty LUT and queue: all similarities are 0, so the OIM gradient s (p^T T - T_y) is exactly
    # 0 and the log(L + Q) of a uniform softmax is the loss.
    assert losses["loss_oim"].item() == pytest.approx(math.log(4 + 8), rel=1e-6)
    assert not heads.embedding_head.projection.weight.grad.any()
    # The labelled ids 0, 1, 3 of the inputs set their LUT rows; unlabelled persons the queue.
    assert (heads.reid_loss.lut.norm(dim=1) > 0).tolist() == [True, True, False, True]
    torch.testing.assert_close(heads.reid_loss.lut[[0, 1, 3]].norm(dim=1), torch.ones(3))
    assert int(heads.reid_loss.queue_ptr) > 0
    # Second step: the tables are filled, every parameter gets a non-zero gradient.
    model.zero_grad()
    losses = train_step(model, training_inputs(1))
    assert all(torch.isfinite(v) for v in losses.values())
    assert params_without_grad(model, nonzero=True) == []


def test_oim_model_inference_contract():
    cfg, model = _oim_model()
    train_step(model, training_inputs())  # BatchNorm running statistics are no longer 0/1
    check_inference_contract(model, cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM)


class _NoProposals(nn.Module):
    def forward(self, *args, **kwargs):
        raise AssertionError("the query path ran the proposal generator")


def test_query_path_embeds_given_boxes_without_detection():
    cfg, model = _oim_model()
    train_step(model, training_inputs())
    model.eval()
    model.proposal_generator = _NoProposals()
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 10.0, 40.0, 80.0]])
    query = {"image": image, "height": 96, "width": 128, "query_boxes": Boxes(boxes)}
    with torch.no_grad():
        (out,) = model([query])
        # The same embedding, computed step by step: backbone -> RoIAlign on res4 -> res5 ->
        # average pooling -> Linear + BN -> L2 normalisation.
        x = ((image.float() - model.pixel_mean) / model.pixel_std)[None]
        pad = model.backbone.size_divisibility
        if pad > 1:  # the padded batch of preprocess_image
            x = nn.functional.pad(x, (0, (-x.shape[-1]) % pad, 0, (-x.shape[-2]) % pad))
        res4 = model.backbone(x)["res4"]
        heads = model.roi_heads
        pooled = heads.res5(heads.pooler([res4], [Boxes(boxes)])).mean(dim=(2, 3))
        head = heads.embedding_head
        expected = nn.functional.normalize(head.norm(head.projection(pooled)), dim=1)
    assert set(out) == {"query_embeddings"}
    torch.testing.assert_close(out["query_embeddings"], expected)
    torch.testing.assert_close(out["query_embeddings"].norm(dim=1), torch.ones(1))
    # Two boxes in one query image: two embeddings, in box order.
    two = dict(query, query_boxes=Boxes(torch.cat([boxes, boxes + 20.0])))
    with torch.no_grad():
        (out2,) = model([two])
    assert out2["query_embeddings"].shape == (2, cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM)
    torch.testing.assert_close(out2["query_embeddings"][:1], expected)


def test_roi_pooler_impl_selects_the_heads_pooler():
    from detectron2.modeling.poolers import ROIPooler

    from person_search.layers import MultiLevelROIPooler

    cfg, model = _oim_model()
    assert cfg.MODEL.ROI_POOLER_IMPL == "person_search"  # the compiled RoIAlign by default
    assert isinstance(model.roi_heads.pooler, MultiLevelROIPooler)
    cfg.MODEL.ROI_POOLER_IMPL = "detectron2"
    torch.manual_seed(0)
    d2_pooler = build_model(cfg).roi_heads.pooler
    assert type(d2_pooler) is ROIPooler
    features = [torch.randn(2, 8, 12, 16)]
    boxes = [Boxes(torch.tensor([[1.0, 2.0, 60.0, 40.0]])), Boxes(torch.tensor([[5.0, 5, 9, 30]]))]
    torch.testing.assert_close(model.roi_heads.pooler(features, boxes), d2_pooler(features, boxes))
    cfg.MODEL.ROI_POOLER_IMPL = "torchvision"
    with pytest.raises(ValueError, match="ROI_POOLER_IMPL"):
        build_model(cfg)
