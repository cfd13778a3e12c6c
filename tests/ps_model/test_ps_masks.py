"""MODEL.MASK_ON in the person-search RoI heads (OIM on Detectron2's Res5ROIHeads): the mask head
is built and trained; persons without a mask (gt_has_mask False) and background proposals
contribute exactly nothing to the mask loss; inference gives pred_masks."""

from __future__ import annotations

import person_search  # noqa: F401  (compat layer + registration, before detectron2 imports)

# isort: split
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads.mask_head import mask_rcnn_loss
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage
from ps_baselines_testutils import (
    single_thread,  # noqa: F401  (fixture)
    toy_cfg,
    train_step,
    training_inputs,
)

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = "oim/oim_toy_cuhk_sysu.yaml"


def _mask_model():
    torch.manual_seed(0)
    cfg = toy_cfg(CONFIG)
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 64
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 16
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM = 16
    return build_model(cfg)


def _with_masks(inputs: list[dict], has_mask: list[list[bool]]) -> list[dict]:
    """Give each person a box-shaped polygon mask where ``has_mask`` says so, else the mapper's
    empty placeholder."""
    for x, flags in zip(inputs, has_mask):
        inst = x["instances"]
        polygons = []
        for (x1, y1, x2, y2), flag in zip(inst.gt_boxes.tensor.tolist(), flags):
            polygons.append([[x1, y1, x2, y1, x2, y2, x1, y2]] if flag else [])
        inst.gt_masks = PolygonMasks(polygons)
        inst.gt_has_mask = torch.tensor(flags)
    return inputs


def _proposal(box, gt_box, has_mask: bool, gt_class: int = 0) -> Instances:
    inst = Instances((64, 64))
    inst.proposal_boxes = Boxes(torch.tensor([box]))
    inst.gt_classes = torch.tensor([gt_class])
    inst.gt_boxes = Boxes(torch.tensor([gt_box]))
    x1, y1, x2, y2 = gt_box
    inst.gt_masks = PolygonMasks([[[x1, y1, x2, y1, x2, y2, x1, y2]] if has_mask else []])
    inst.gt_has_mask = torch.tensor([has_mask])
    return inst


def test_mask_loss_reads_only_persons_with_masks():
    heads = _mask_model().roi_heads.train()
    assert heads.mask_on and heads.mask_head is not None
    # Image 0: a person with a mask, a person without, a background proposal; image 1: a
    # person with a mask.
    image0 = Instances.cat(
        [
            _proposal([4.0, 4, 30, 60], [5.0, 5, 30, 60], True),
            _proposal([34.0, 4, 60, 60], [35.0, 5, 60, 60], False),
            _proposal([0.0, 0, 10, 10], [5.0, 5, 30, 60], False, gt_class=1),
        ]
    )
    image1 = _proposal([10.0, 2, 40, 50], [10.0, 0, 40, 50], True)
    channels = heads.res5.out_channels
    x = torch.randn(4, channels, 7, 7, requires_grad=True)
    with EventStorage():
        loss = heads.forward_mask(x, [image0, image1])["loss_mask"]
        # Detectron2's mask loss on the two persons with masks only.
        expected = mask_rcnn_loss(heads.mask_head.layers(x[[0, 3]]), [image0[[0]], image1])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert x.grad[[0, 3]].abs().sum() > 0
    assert torch.equal(x.grad[[1, 2]], torch.zeros_like(x.grad[[1, 2]]))  # no contribution
    # No person with a mask at all: the loss is exactly 0, still connected to the graph.
    with EventStorage():
        none = heads.forward_mask(x[[1, 2]], [image0[[1, 2]]])["loss_mask"]
    assert none.item() == 0.0 and none.requires_grad


def test_mask_model_trains_and_predicts_masks():
    model = _mask_model()
    losses = train_step(model, _with_masks(training_inputs(0), [[True, False, True], [False] * 2]))
    assert "loss_mask" in losses and torch.isfinite(losses["loss_mask"])
    assert losses["loss_mask"] > 0
    assert model.roi_heads.mask_head.predictor.weight.grad.abs().sum() > 0
    # A batch without any mask trains the rest, its mask loss is exactly 0.
    model.zero_grad()
    losses = train_step(model, _with_masks(training_inputs(1), [[False] * 3, [False] * 2]))
    assert losses["loss_mask"].item() == 0.0
    assert not model.roi_heads.mask_head.predictor.weight.grad.any()
    model.eval()
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 192, "width": 256}])
    inst = out["instances"]
    assert inst.has("pred_masks") and inst.pred_masks.shape[-2:] == (192, 256)
    assert inst.embeddings.shape == (len(inst), 16)


def test_heads_without_a_mask_branch_refuse_mask_on():
    cfg = toy_cfg("seqnet/seqnet_toy_cuhk_sysu.yaml")
    cfg.MODEL.MASK_ON = True
    with pytest.raises(ValueError, match="MODEL.MASK_ON"):
        build_model(cfg)
