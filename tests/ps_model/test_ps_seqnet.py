"""SeqNet / SeqNeXt: training losses and gradients, inference contract, second-head sampling,
Norm-Aware Embedding by hand."""

from __future__ import annotations

import person_search  # noqa: F401  (compat layer + registration, before detectron2 imports)

# isort: split
import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, Instances
from ps_baselines_testutils import (
    check_inference_contract,
    params_without_grad,
    single_thread,  # noqa: F401  (fixture)
    toy_cfg,
    train_step,
    training_inputs,
)

from person_search.modeling.losses.oim import BACKGROUND_PID
from person_search.modeling.roi_heads.box_utils import (
    label_and_sample_boxes,
    proposal_person_ids,
)
from person_search.modeling.roi_heads.norm_aware_embedding import (
    NormAwareEmbedding,
    split_embedding_dim,
)
from person_search.modeling.roi_heads.seqnet_roi_heads import SeqNetROIHeads

pytestmark = pytest.mark.usefixtures("single_thread")

SEQNET_LOSSES = {
    "loss_rpn_cls",
    "loss_rpn_loc",
    "loss_cls",
    "loss_box_reg",
    "loss_cls_2nd",
    "loss_box_reg_2nd",
    "loss_oim",
}
CONFIGS = ["seqnet/seqnet_toy_cuhk_sysu.yaml", "seqnext/seqnext_toy_cuhk_sysu.yaml"]


@pytest.mark.parametrize("config", CONFIGS)
def test_train_step_losses_and_gradients(config):
    torch.manual_seed(0)
    model = build_model(toy_cfg(config))
    assert isinstance(model.roi_heads, SeqNetROIHeads)
    losses = train_step(model, training_inputs())
    assert set(losses) == SEQNET_LOSSES
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    assert losses["loss_oim"] > 0  # labelled persons were sampled by the second head
    assert params_without_grad(model) == []
    if config.startswith("seqnet/"):  # D2 ResNet: no zero-initialised branch
        assert params_without_grad(model, nonzero=True) == []
    # The OIM lookup table was updated with the labelled identities 0, 1, 3 only.
    lut_rows_set = model.roi_heads.reid_loss.lut.norm(dim=1) > 0
    assert lut_rows_set.tolist() == [True, True, False, True]


@pytest.mark.parametrize("config", CONFIGS)
def test_inference_contract_and_query_path(config):
    torch.manual_seed(0)
    cfg = toy_cfg(config)
    model = build_model(cfg)
    train_step(model, training_inputs())  # BatchNorm running statistics are no longer 0/1
    check_inference_contract(model, cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM)


def test_heads_own_separate_stage_copies():
    torch.manual_seed(0)
    heads = build_model(toy_cfg(CONFIGS[0])).roi_heads
    assert heads.reid_res5 is not heads.res5
    first = dict(heads.res5.named_parameters())
    for name, p in heads.reid_res5.named_parameters():
        assert p is not first[name]
        assert torch.equal(p, first[name]), name  # same initial weights (SeqNet's deepcopy)


def test_final_score_second_uses_nae_scores():
    torch.manual_seed(0)
    cfg = toy_cfg(CONFIGS[0])
    cfg.MODEL.SEQNET.FINAL_SCORE = "second"
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.SEQNET.SECOND_NMS_THRESH_TEST = 1.0  # keep every box: compare one to one
    model = build_model(cfg)
    train_step(model, training_inputs())
    model.eval()
    heads = model.roi_heads
    features = {"res4": torch.randn(1, heads.res5[0].conv1.in_channels, 6, 8)}
    proposals = Instances((96, 128))
    proposals.proposal_boxes = Boxes(torch.tensor([[10.0, 10.0, 40.0, 80.0], [50, 5, 80, 90]]))
    proposals.objectness_logits = torch.zeros(2)
    heads.first_score_thresh = 0.0
    heads.first_nms_thresh = 1.0
    with torch.no_grad():
        (result,), _ = heads(None, features, [proposals])
        predictions, refined = heads.first_head(features, [proposals])
        boxes = Boxes(refined[0])
        boxes.clip((96, 128))
        _, logits, _, _ = heads.second_head(features, [boxes])
    expected = torch.sigmoid(logits).sort(descending=True).values
    torch.testing.assert_close(result.scores, expected)


def test_second_head_sampling_matches_refined_boxes_to_gt():
    target = Instances((100, 100))
    target.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 70.0, 70.0]]))
    target.gt_classes = torch.zeros(2, dtype=torch.long)
    target.gt_pids = torch.tensor([2, -1])
    boxes = Boxes(
        torch.tensor(
            [
                [0.0, 0.0, 10.0, 8.0],  # IoU 0.8 with gt 0 -> person, pid 2
                [50.0, 50.0, 70.0, 62.0],  # IoU 0.6 with gt 1 -> unlabelled person
                [0.0, 0.0, 10.0, 4.0],  # IoU 0.4 -> background
                [80.0, 80.0, 90.0, 90.0],  # IoU 0 -> background
            ]
        )
    )
    (sampled,) = label_and_sample_boxes(
        [boxes],
        [target],
        matcher=Matcher([0.5], [0, 1]),
        batch_size_per_image=16,
        positive_fraction=0.5,
        num_classes=1,
        append_gt=False,
    )
    order = {tuple(b.tolist()): i for i, b in enumerate(sampled.proposal_boxes.tensor)}
    pids = proposal_person_ids([sampled], num_classes=1)
    got = {tuple(b.tolist()): int(pids[order[tuple(b.tolist())]]) for b in boxes.tensor}
    assert got == {
        (0.0, 0.0, 10.0, 8.0): 2,
        (50.0, 50.0, 70.0, 62.0): -1,
        (0.0, 0.0, 10.0, 4.0): BACKGROUND_PID,
        (80.0, 80.0, 90.0, 90.0): BACKGROUND_PID,
    }
    # With gt appended, the gt boxes themselves are sampled as persons.
    (with_gt,) = label_and_sample_boxes(
        [boxes],
        [target],
        matcher=Matcher([0.5], [0, 1]),
        batch_size_per_image=16,
        positive_fraction=0.5,
        num_classes=1,
        append_gt=True,
    )
    assert len(with_gt) == 6 and int((with_gt.gt_classes == 0).sum()) == 4


def test_nae_norm_to_score_by_hand():
    nae = NormAwareEmbedding(in_channels=[2, 3], embedding_dim=4)
    with torch.no_grad():
        for proj in nae.projectors:
            proj[0].weight.zero_()
            proj[0].bias.zero_()
            proj[1].weight.fill_(1.0)
            proj[1].bias.zero_()
            proj[1].running_mean.zero_()
            proj[1].running_var.fill_(1.0 - proj[1].eps)  # BN is the identity
        nae.projectors[0][0].weight.copy_(torch.eye(2))  # first 2 dims copy input 0
        nae.projectors[1][0].weight.copy_(torch.eye(2, 3))  # last 2 dims copy input 1[:2]
        nae.rescaler.running_mean.fill_(2.0)
        nae.rescaler.running_var.fill_(4.0 - nae.rescaler.eps)  # std 2
        nae.rescaler.weight.fill_(3.0)
        nae.rescaler.bias.fill_(0.5)
    nae.eval()
    a = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 4.0, 9.0], [1.0, 0.0, 0.0]])
    embeddings, logits = nae([a, b])
    # Row 0: vector (3, 0, 0, 4), norm 5 -> logit (5 - 2) / 2 * 3 + 0.5 = 5.
    # Row 1: vector (0, 0, 1, 0), norm 1 -> logit (1 - 2) / 2 * 3 + 0.5 = -1.
    torch.testing.assert_close(embeddings, torch.tensor([[0.6, 0, 0, 0.8], [0, 0, 1.0, 0]]))
    torch.testing.assert_close(logits, torch.tensor([5.0, -1.0]))
    torch.testing.assert_close(
        NormAwareEmbedding.scores(logits), torch.tensor([1 / (1 + math.exp(-5)), 1 / (1 + math.e)])
    )
    loss = NormAwareEmbedding.classification_loss(logits, torch.tensor([True, False]))
    expected = (math.log1p(math.exp(-5.0)) + math.log1p(math.exp(-1.0))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_nae_empty_input_and_dim_split():
    nae = NormAwareEmbedding(in_channels=[8, 16], embedding_dim=7).eval()
    embeddings, logits = nae([torch.zeros(0, 8), torch.zeros(0, 16)])
    assert embeddings.shape == (0, 7) and logits.shape == (0,)
    assert split_embedding_dim(256, 2) == [128, 128]
    assert split_embedding_dim(7, 3) == [2, 2, 3]
    with pytest.raises(ValueError):
        split_embedding_dim(1, 2)
    with pytest.raises(ValueError, match="expected 2 inputs"):
        nae([torch.zeros(1, 8)])


def test_bad_seqnet_options_are_rejected():
    cfg = toy_cfg(CONFIGS[0])
    cfg.MODEL.SEQNET.POOLING = "median"
    with pytest.raises(ValueError, match="MODEL.SEQNET.POOLING='median'"):
        build_model(cfg)
    cfg = toy_cfg(CONFIGS[0])
    cfg.MODEL.SEQNET.FINAL_SCORE = "mean"
    with pytest.raises(ValueError, match="FINAL_SCORE='mean'"):
        build_model(cfg)
