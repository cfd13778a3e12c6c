"""MaskGuidedROIHeads: the mask loss reads only proposals matched to labelled persons with a
mask (persons without masks, unlabelled persons and background proposals contribute exactly
nothing: hand-built batch); lambda scales it and is 0 for an image without masks; the model
trains and returns pred_masks."""

from __future__ import annotations

import pytest
import torch
from detectron2.modeling.roi_heads.mask_head import mask_rcnn_loss
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage
from maskguided_testutils import tiny_mask_model


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _proposal(box, gt_box, has_mask: bool, pid: int, gt_class: int = 0) -> Instances:
    inst = Instances((64, 64))
    inst.proposal_boxes = Boxes(torch.tensor([box]))
    inst.gt_classes = torch.tensor([gt_class])
    inst.gt_boxes = Boxes(torch.tensor([gt_box]))
    inst.gt_pids = torch.tensor([pid])
    x1, y1, x2, y2 = gt_box
    inst.gt_masks = PolygonMasks([[[x1, y1, x2, y1, x2, y2, x1, y2]] if has_mask else []])
    inst.gt_has_mask = torch.tensor([has_mask])
    return inst


def _batch() -> list[Instances]:
    """Image 0: a labelled person with a mask, a labelled person without, an unlabelled person
    with a mask, a background proposal (matched box has a mask); image 1: a labelled person
    with a mask."""
    image0 = Instances.cat(
        [
            _proposal([4.0, 4, 30, 60], [5.0, 5, 30, 60], True, pid=2),
            _proposal([34.0, 4, 60, 60], [35.0, 5, 60, 60], False, pid=3),
            _proposal([20.0, 10, 50, 40], [20.0, 10, 52, 40], True, pid=-1),
            _proposal([0.0, 0, 10, 10], [5.0, 5, 30, 60], True, pid=2, gt_class=1),
        ]
    )
    image1 = _proposal([10.0, 2, 40, 50], [10.0, 0, 40, 50], True, pid=0)
    return [image0, image1]


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_mask_loss_reads_only_labelled_persons_with_masks(weight):
    _, model = tiny_mask_model(**{"MODEL.MASKGUIDED.MASK_LOSS_WEIGHT": weight})
    heads = model.roi_heads.train()
    image0, image1 = _batch()
    channels = heads.res5.out_channels
    torch.manual_seed(1)
    x = torch.randn(5, channels, 7, 7, requires_grad=True)
    with EventStorage():
        loss = heads.forward_mask(x, [image0, image1])["loss_mask"]
        expected = mask_rcnn_loss(heads.mask_head.layers(x[[0, 4]]), [image0[[0]], image1])
    torch.testing.assert_close(loss, weight * expected)
    loss.backward()
    assert x.grad[[0, 4]].abs().sum() > 0
    assert torch.equal(x.grad[[1, 2, 3]], torch.zeros_like(x.grad[[1, 2, 3]]))
    # LABELLED_ONLY False: the unlabelled person's mask trains the branch too.
    heads.labelled_only = False
    with EventStorage():
        loss = heads.forward_mask(x, [image0, image1])["loss_mask"]
        expected = mask_rcnn_loss(heads.mask_head.layers(x[[0, 2, 4]]), [image0[[0, 2]], image1])
    torch.testing.assert_close(loss, weight * expected)


def test_image_without_masks_has_lambda_zero():
    _, model = tiny_mask_model()
    heads = model.roi_heads.train()
    image0, _ = _batch()
    x = torch.randn(2, heads.res5.out_channels, 7, 7, requires_grad=True)
    # Only the labelled person without a mask and the background proposal.
    with EventStorage():
        loss = heads.forward_mask(x, [image0[[1, 3]]])["loss_mask"]
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert not x.grad.any()


def _inputs(seed: int, with_masks: bool) -> list[dict]:
    """Two 96x128 images with labelled and unlabelled persons (box-shaped masks on the
    labelled ones when ``with_masks``)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for boxes, pids in (
        ([[8.0, 8, 40, 88], [60, 10, 90, 80]], [0, -1]),
        ([[30.0, 4, 70, 90]], [3]),
    ):
        inst = Instances((96, 128))
        inst.gt_boxes = Boxes(torch.tensor(boxes))
        inst.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
        inst.gt_pids = torch.tensor(pids)
        flags = [with_masks and p >= 0 for p in pids]
        inst.gt_masks = PolygonMasks(
            [
                [[x1, y1, x2, y1, x2, y2, x1, y2]] if f else []
                for (x1, y1, x2, y2), f in zip(boxes, flags)
            ]
        )
        inst.gt_has_mask = torch.tensor(flags)
        image = torch.randint(0, 256, (3, 96, 128), generator=g, dtype=torch.uint8)
        out.append({"image": image, "instances": inst, "height": 96, "width": 128})
    return out


def test_model_trains_the_mask_branch_and_predicts_masks():
    _, model = tiny_mask_model()
    model.train()
    with EventStorage():
        losses = model(_inputs(0, with_masks=True))
    assert losses["loss_mask"] > 0
    sum(losses.values()).backward()
    predictor = model.roi_heads.mask_head.predictor
    assert predictor.weight.grad.abs().sum() > 0
    model.zero_grad()
    with EventStorage():
        losses = model(_inputs(1, with_masks=False))
    assert losses["loss_mask"].item() == 0.0
    sum(losses.values()).backward()
    assert predictor.weight.grad is None or not predictor.weight.grad.any()
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": _inputs(2, False)[0]["image"], "height": 192, "width": 256}])
    inst = out["instances"]
    assert inst.has("pred_masks") and inst.pred_masks.shape[-2:] == (192, 256)
    assert inst.pred_masks.dtype == torch.bool and len(inst.pred_masks) == len(inst)
