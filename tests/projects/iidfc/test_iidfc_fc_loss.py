"""The FC loss and its SphereFace / ArcFace alternatives: a 3-identity example by hand (logits,
loss, gradient and its direction), m1 = 1, m2 = 0 equal to the library's OIM and HOIM losses,
the HOIM two-level weighting, the monotonic margin target, and config errors naming the key."""

from __future__ import annotations

import math

import pytest
import torch
from iidfc_testutils import TOY_CONFIG, iidfc_cfg

from iidfc import ArcFaceLoss, FCLoss, OIMFCLoss, SphereFaceLoss, angular_margin_target
from person_search.modeling.losses import (
    BACKGROUND_PID,
    UNLABELED_PID,
    HOIMLoss,
    OIMLoss,
    build_reid_loss,
)

S = 4.0  # 1/tau of the hand example (the configs use 30: the same formulas)
THIRTY = math.radians(30.0)


def _unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def _three_ids(cls=OIMFCLoss, **overrides):
    """Three identities on the unit circle at 0, 120 and 240 degrees, no queue, D = 2."""
    kwargs = {"num_person_ids": 3, "embedding_dim": 2, "queue_size": 0, "momentum": 0.5}
    kwargs.update({"scalar": S, "m1": 0.9, "m2": 0.1})
    kwargs.update(overrides)
    loss = cls(**kwargs).eval()  # eval: the LUT stays as set
    loss.lut.copy_(torch.tensor([_unit(0.0), _unit(120.0), _unit(240.0)]))
    return loss


def test_three_identity_logits_and_loss_by_hand():
    loss = _three_ids()
    x = torch.tensor([_unit(30.0)])  # 30 degrees from identity 0, 90 from 1, 150 from 2
    cosines = [math.cos(THIRTY), 0.0, -math.cos(THIRTY)]
    torch.testing.assert_close(loss.logits(x), S * torch.tensor([cosines]))
    # Target identity 0: theta = pi/6 -> cos(0.9 pi/6 + 0.1) = cos(0.571239) = 0.841232.
    target = math.cos(0.9 * THIRTY + 0.1)
    assert target == pytest.approx(0.8412318, abs=1e-7)
    margined = loss.identity_logits(loss.logits(x), torch.tensor([0]))
    torch.testing.assert_close(margined, S * torch.tensor([[target, 0.0, -math.cos(THIRTY)]]))
    # -log(e^{4 * 0.841232} / (e^{4 * 0.841232} + e^0 + e^{-4 * 0.866025})) = 0.0350258.
    logits = [S * target, 0.0, -S * math.cos(THIRTY)]
    expected = -logits[0] + math.log(sum(math.exp(v) for v in logits))
    assert expected == pytest.approx(0.0350258, abs=1e-7)
    out = loss(x, torch.tensor([0]))
    assert set(out) == {"loss_oim"}
    assert out["loss_oim"].item() == pytest.approx(expected, rel=1e-6)
    # Plain OIM (target cos 30 deg = 0.866) is easier: 0.0317708.
    oim = OIMLoss(num_person_ids=3, embedding_dim=2, queue_size=0, momentum=0.5, scalar=S)
    oim.load_state_dict(loss.state_dict())
    assert oim.eval()(x, torch.tensor([0]))["loss_oim"].item() == pytest.approx(0.0317708, abs=1e-6)


def test_three_identity_gradient_by_hand_and_its_direction():
    loss = _three_ids()
    w = loss.lut.clone()
    x = torch.tensor([_unit(30.0)], requires_grad=True)
    loss(x, torch.tensor([0]))["loss_oim"].backward()
    # dL/dx = S * sum_j (p_j - [j = y]) c_j w_j with c_j = 1 for j != y and, for the target,
    # c_y = d cos(m1 theta + m2) / d cos(theta) = m1 sin(m1 theta + m2) / sin(theta) = 0.973214.
    c_y = 0.9 * math.sin(0.9 * THIRTY + 0.1) / math.sin(THIRTY)
    assert c_y == pytest.approx(0.9732144, abs=1e-7)
    logits = torch.tensor([S * math.cos(0.9 * THIRTY + 0.1), 0.0, -S * math.cos(THIRTY)])
    p = logits.softmax(0)
    coeff = p.clone()
    coeff[0] = (p[0] - 1.0) * c_y
    torch.testing.assert_close(x.grad[0], S * coeff @ w)
    # A descent step turns x towards its identity's centre (0 deg): the tangent at x pointing
    # to w_0 has a positive component along -grad, and the loss falls.
    tangent = w[0] - (x.detach()[0] @ w[0]) * x.detach()[0]
    pull_fc = float(-x.grad[0] @ tangent)
    assert pull_fc > 0
    stepped = torch.nn.functional.normalize(x.detach() - 0.5 * x.grad, dim=1)
    assert stepped[0, 1] / stepped[0, 0] < math.tan(THIRTY)  # angle to identity 0 < 30 deg
    assert (
        loss(stepped, torch.tensor([0]))["loss_oim"]
        < loss(x.detach(), torch.tensor([0]))["loss_oim"]
    )
    # At 30 deg (theta < 1 rad, where cos(0.9 theta + 0.1) < cos theta) FC pulls harder than
    # OIM: the compactness the margin buys. Past 1 rad m1 = 0.9 < 1 makes it pull less.
    for degrees, fc_pulls_harder in ((30.0, True), (100.0, False)):
        pulls = []
        for m1, m2 in ((0.9, 0.1), (1.0, 0.0)):
            xi = torch.tensor([_unit(degrees)], requires_grad=True)
            _three_ids(m1=m1, m2=m2)(xi, torch.tensor([0]))["loss_oim"].backward()
            t = w[0] - (xi.detach()[0] @ w[0]) * xi.detach()[0]
            pulls.append(float(-xi.grad[0] @ t))
        assert (pulls[0] > pulls[1]) == fc_pulls_harder, degrees


def _random_memory(loss, gen: torch.Generator) -> None:
    for buf in loss.buffers():
        if buf.dtype == torch.float32:
            buf.copy_(torch.nn.functional.normalize(torch.randn(buf.shape, generator=gen), dim=1))


@pytest.mark.parametrize(
    "margin_cls, plain_cls, extra",
    [
        (OIMFCLoss, OIMLoss, {}),
        (FCLoss, HOIMLoss, {"bg_buffer_size": 5, "bg_per_update": 2}),
    ],
)
def test_m1_one_m2_zero_is_the_library_loss(margin_cls, plain_cls, extra):
    kwargs = {"num_person_ids": 4, "embedding_dim": 8, "queue_size": 5, "momentum": 0.5}
    kwargs.update(scalar=30.0, **extra)
    gen = torch.Generator().manual_seed(0)
    plain = plain_cls(**kwargs)
    _random_memory(plain, gen)
    margin = margin_cls(m1=1.0, m2=0.0, **kwargs)
    margin.load_state_dict(plain.state_dict())
    features = torch.nn.functional.normalize(torch.randn(9, 8, generator=gen), dim=1)
    pids = torch.tensor([0, 1, 3, 2, 0, UNLABELED_PID, UNLABELED_PID, BACKGROUND_PID, 1])
    outs, grads = [], []
    for loss in (plain, margin):  # training mode: the memory updates too
        x = features.clone().requires_grad_(True)
        out = loss(x, pids)
        sum(out.values()).backward()
        outs.append(out)
        grads.append(x.grad)
    assert set(outs[0]) == set(outs[1])
    for name in outs[0]:  # equal up to float32 rounding of cos(arccos(c))
        torch.testing.assert_close(outs[1][name], outs[0][name], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(margin.state_dict()[name], value)


def test_fc_inside_hoim_two_level_weighting_by_hand():
    # Three identities as above, one queue slot (0, 0) and one background slot (0, -1).
    kwargs = {"num_person_ids": 3, "embedding_dim": 2, "queue_size": 1, "momentum": 0.5}
    kwargs.update(scalar=S, bg_buffer_size=1, bg_per_update=1)
    loss, plain = FCLoss(m1=0.9, m2=0.1, **kwargs).eval(), HOIMLoss(**kwargs).eval()
    loss.lut.copy_(torch.tensor([_unit(0.0), _unit(120.0), _unit(240.0)]))
    loss.bg_buffer.copy_(torch.tensor([[0.0, -1.0]]))
    plain.load_state_dict(loss.state_dict())
    x = torch.tensor([_unit(30.0)])
    out, ref = loss(x, torch.tensor([0])), plain(x, torch.tensor([0]))
    # First level: p_f from the plain cosines [cos 30, 0, -cos 30, 0 | -sin 30].
    e = [math.exp(S * c) for c in (math.cos(THIRTY), 0.0, -math.cos(THIRTY), 0.0, -0.5)]
    p_f = sum(e[:4]) / sum(e)
    # (float32 log-sum-exps of values near 3.5: absolute error ~1e-7)
    assert out["loss_hoim_cls"].item() == pytest.approx(-math.log(p_f), abs=1e-6)
    assert out["loss_hoim_cls"].item() == pytest.approx(ref["loss_hoim_cls"].item())
    # Second level: lambda = 2 p_f^2 (plain cosines) times the FC term over the N + M slots.
    t = math.exp(S * math.cos(0.9 * THIRTY + 0.1))
    fc = -math.log(t / (t + sum(e[1:4])))
    assert out["loss_hoim_reid"].item() == pytest.approx(2 * p_f**2 * fc, abs=1e-6)
    assert out["loss_hoim_reid"] > ref["loss_hoim_reid"]  # theta < 1 rad: the margin bites
    torch.testing.assert_close(loss.person_scores(x), plain.person_scores(x))


def test_margin_targets_of_the_three_losses():
    theta = torch.tensor([0.0, 0.3, 1.0, 2.0, 3.0], dtype=torch.float64)
    cos = torch.cos(theta)
    clamped = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    # FC: cos(0.9 theta + 0.1); unchanged at theta = 1 rad (0.9 + 0.1 = 1).
    fc = angular_margin_target(cos, 0.9, 0.1)
    torch.testing.assert_close(fc, torch.cos(0.9 * clamped + 0.1))
    assert fc[2].item() == pytest.approx(math.cos(1.0), abs=1e-9)
    # ArcFace: cos(theta + 0.5) until pi; past it -cos(theta + 0.5) - 2 (monotonic).
    arc = angular_margin_target(cos, 1.0, 0.5)
    torch.testing.assert_close(arc[:4], torch.cos(clamped[:4] + 0.5))
    assert arc[4].item() == pytest.approx(-math.cos(3.0 + 0.5) - 2.0, abs=1e-6)
    # SphereFace m = 4 at 60 deg: phi = 240 deg, k = 1 -> -cos(240 deg) - 2 = -1.5; softened
    # with lambda = 5: (5 cos 60 deg - 1.5) / 6 = 1/6.
    c60 = torch.tensor([0.5], dtype=torch.float64)
    assert angular_margin_target(c60, 4.0, 0.0).item() == pytest.approx(-1.5, abs=1e-6)
    assert angular_margin_target(c60, 4.0, 0.0, 5.0).item() == pytest.approx(1 / 6, abs=1e-6)
    # Every target decreases monotonically with theta over [0, pi].
    grid = torch.cos(torch.linspace(0.0, math.pi, 200, dtype=torch.float64))
    for m1, m2, soft in ((0.9, 0.1, 0.0), (1.0, 0.5, 0.0), (4.0, 0.0, 0.0), (4.0, 0.0, 5.0)):
        values = angular_margin_target(grid, m1, m2, soft)
        assert (values[1:] <= values[:-1] + 1e-9).all(), (m1, m2, soft)
    assert angular_margin_target(cos.float(), 0.9, 0.1).dtype == torch.float32


def test_registered_losses_read_their_keys():
    cfg = iidfc_cfg(TOY_CONFIG, "MODEL.IIDFC.FC_LOSS.M1", "0.8", "MODEL.IIDFC.FC_LOSS.M2", "0.2")
    built = build_reid_loss(cfg, num_person_ids=4)
    assert type(built) is FCLoss and (built.m1, built.m2) == (0.8, 0.2) and built.scalar == 30.0
    for name, cls, expected in (
        ("OIMFCLoss", OIMFCLoss, (0.8, 0.2, 0.0)),
        ("SphereFaceLoss", SphereFaceLoss, (4.0, 0.0, 5.0)),
        ("ArcFaceLoss", ArcFaceLoss, (1.0, 0.5, 0.0)),
    ):
        cfg.MODEL.PERSON_SEARCH.REID_LOSS = name
        built = build_reid_loss(cfg, num_person_ids=4)
        assert type(built) is cls and (built.m1, built.m2, built.softening) == expected


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("MODEL.IIDFC.FC_LOSS.M1", "0.0", "MODEL.IIDFC.FC_LOSS.M1 must be > 0, got 0.0"),
        ("MODEL.IIDFC.FC_LOSS.M1", "-0.9", "MODEL.IIDFC.FC_LOSS.M1 must be > 0, got -0.9"),
        ("MODEL.IIDFC.FC_LOSS.M2", "3.5", r"MODEL.IIDFC.FC_LOSS.M2 must be in \[0, pi\)"),
    ],
)
def test_bad_fc_margins_name_the_key(key, value, message):
    cfg = iidfc_cfg(TOY_CONFIG, key, value)
    with pytest.raises(ValueError, match=message):
        build_reid_loss(cfg, num_person_ids=4)


def test_bad_alternative_margins_name_the_key():
    cfg = iidfc_cfg(TOY_CONFIG, "MODEL.PERSON_SEARCH.REID_LOSS", "SphereFaceLoss")
    cfg.MODEL.IIDFC.SPHEREFACE.M = 0.5
    with pytest.raises(ValueError, match="MODEL.IIDFC.SPHEREFACE.M must be >= 1, got 0.5"):
        build_reid_loss(cfg, num_person_ids=4)
    cfg.MODEL.IIDFC.SPHEREFACE.M = 4.0
    cfg.MODEL.IIDFC.SPHEREFACE.LAMBDA = -1.0
    with pytest.raises(ValueError, match="MODEL.IIDFC.SPHEREFACE.LAMBDA must be >= 0"):
        build_reid_loss(cfg, num_person_ids=4)
    cfg.MODEL.PERSON_SEARCH.REID_LOSS = "ArcFaceLoss"
    cfg.MODEL.IIDFC.ARCFACE.M = -0.1
    with pytest.raises(ValueError, match=r"MODEL.IIDFC.ARCFACE.M must be in \[0, pi\)"):
        build_reid_loss(cfg, num_person_ids=4)
