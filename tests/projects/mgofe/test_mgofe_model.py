"""MGOFE's model on tiny inputs: MGRO's copies change pixels inside person boxes only and never
a whole box; a training step gives finite losses for every term and gradients to MGFFE and
MGFA; untrained, MGOFE (default test mode) equals SeqNeXt with the same weights; the test-time
copies mode embeds deterministically; missing copies are named."""

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage
from mgofe_testutils import toy_cfg, training_inputs

from mgofe import OCCLUDED_IMAGES, VIRTUAL_FEATURES
from person_search.data.occlusion import MGRO


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _train_step(model, inputs) -> dict:
    model.train()
    with EventStorage():
        losses = model(inputs)
        sum(losses.values()).backward()
    return losses


@pytest.mark.parametrize("cell_prob", [0.5, 1.0])
def test_copies_differ_only_inside_boxes_and_never_cover_a_whole_box(cell_prob):
    cfg = toy_cfg("INPUT.MGRO.CELL_PROB", str(cell_prob))
    mgro = MGRO.from_config(cfg)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 10.0, 40.0, 80.0], [50.0, 5.0, 80.0, 90.0], [90, 20, 120, 85]])
    inside = np.zeros((96, 128), dtype=bool)
    for x1, y1, x2, y2 in boxes.astype(int):
        inside[y1:y2, x1:x2] = True
    covered_any = False
    for iteration in range(20):
        copies = mgro.copies(image, boxes, iteration, "img")
        assert copies.shape == (len(cfg.INPUT.MGRO.GRIDS), 96, 128, 3)
        for copy in copies:
            changed = (copy != image).any(axis=2)
            assert not (changed & ~inside).any()  # nothing outside the person boxes
            for x1, y1, x2, y2 in boxes.astype(int):
                box = changed[y1:y2, x1:x2]
                assert not box.all()  # never the whole box
                covered_any |= bool(box.any())
    assert covered_any
    # seeded by (SEED, iteration, image id): the same copies again, others at another iteration
    np.testing.assert_array_equal(
        mgro.copies(image, boxes, 3, "img"), mgro.copies(image, boxes, 3, "img")
    )
    assert not np.array_equal(
        mgro.copies(image, boxes, 3, "img"), mgro.copies(image, boxes, 4, "img")
    )


def test_training_step_gives_finite_losses_for_every_term():
    torch.manual_seed(0)
    cfg = toy_cfg("MODEL.MGOFE.COPY_DETECTION_LOSS.ENABLED", "True")
    model = build_model(cfg)
    losses = _train_step(model, training_inputs(cfg))
    seqnext = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_oim"}
    seqnext |= {"loss_cls_2nd", "loss_box_reg_2nd"}
    occluded = {
        f"{n}_occluded" for n in ("loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg")
    }
    assert set(losses) == seqnext | occluded | {"loss_mgfa"}
    for name, value in losses.items():
        assert torch.isfinite(value), name
    heads = model.roi_heads
    assert heads.mgffe.value.weight.grad.abs().sum() > 0  # W_v starts at 0, learns at once
    for p in heads.mgfa.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    # the copies' maps come from the shared backbone, which they train
    copies_only = training_inputs(cfg)
    model.zero_grad()
    model.train()
    with EventStorage():
        images = model.preprocess_image(copies_only)
        _, extra = model.extract_features(images, copies_only)
        sum(t.sum() for t in extra[VIRTUAL_FEATURES].values()).backward()
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0


def test_without_copies_in_training_the_error_names_the_key():
    cfg = toy_cfg()
    model = build_model(cfg)
    inputs = training_inputs(cfg)
    del inputs[1][OCCLUDED_IMAGES]
    with pytest.raises(ValueError, match="has no 'occluded_images'.*INPUT.MGRO.ENABLED"):
        _train_step(model, inputs)


def _scene_and_query():
    image = torch.randint(0, 256, (3, 96, 128), generator=torch.Generator().manual_seed(1))
    image = image.to(torch.uint8)
    box = Boxes(torch.tensor([[10.0, 10.0, 40.0, 80.0]]))
    scene = {"image": image, "height": 96, "width": 128, "image_id": "s"}
    query = {"image": image, "height": 96, "width": 128, "query_boxes": box, "image_id": "q"}
    return scene, query


def test_untrained_mgofe_in_the_default_test_mode_is_seqnext():
    """From the same seed MGOFE's shared parts start as SeqNeXt's (MGFFE and MGFA are created
    last), and an untrained MGFFE (W_v = 0) changes nothing: the same detections and
    embeddings."""
    cfg = toy_cfg()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    base_cfg = cfg.clone()
    base_cfg.MODEL.META_ARCHITECTURE = "PersonSearchRCNN"
    base_cfg.MODEL.ROI_HEADS.NAME = "SeqNetROIHeads"
    torch.manual_seed(0)
    seqnext = build_model(base_cfg).eval()
    shared = seqnext.state_dict()
    own = model.state_dict()
    assert set(own) - set(shared) == {k for k in own if ".mgffe." in k or ".mgfa." in k}
    assert [k for k in shared if not torch.equal(shared[k], own[k])] == []
    scene, query = _scene_and_query()
    with torch.no_grad():
        a_scene, a_query = model([scene, query])
        b_scene, b_query = seqnext([scene, query])
    assert len(a_scene["instances"]) > 0
    torch.testing.assert_close(a_scene["instances"].embeddings, b_scene["instances"].embeddings)
    torch.testing.assert_close(a_query["query_embeddings"], b_query["query_embeddings"])


def test_test_time_copies_mode_feeds_mgffe_deterministically():
    torch.manual_seed(0)
    cfg = toy_cfg()
    model = build_model(cfg)
    _train_step(model, training_inputs(cfg))  # W_v no longer zero
    with torch.no_grad():
        for p in model.roi_heads.mgffe.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()
    scene, query = _scene_and_query()
    seen = {}
    original = model.copy_features

    def spy(copies, images):
        seen["copies"] = [c.clone() for c in copies]
        return original(copies, images)

    model.copy_features = spy
    with torch.no_grad():
        plain = model([query])[0]["query_embeddings"]
        assert "copies" not in seen  # default mode: no copies, one backbone pass
        model.test_copies = True
        first = model([scene, query])
        again = model([scene, query])
    (scene_copies, query_copies) = seen["copies"]
    assert query_copies.shape == (len(cfg.INPUT.MGRO.GRIDS), 3, 96, 128)
    changed = (query_copies != query["image"]).any(dim=1)
    assert changed.any() and not changed[:, :, 40:].any()  # only the query box (x < 40)
    torch.testing.assert_close(first[1]["query_embeddings"], again[1]["query_embeddings"])
    torch.testing.assert_close(first[0]["instances"].embeddings, again[0]["instances"].embeddings)
    assert not torch.allclose(first[1]["query_embeddings"], plain, atol=1e-5)
    assert torch.isfinite(first[1]["query_embeddings"]).all()


def test_virtual_features_have_one_row_per_box_and_copy():
    torch.manual_seed(0)
    cfg = toy_cfg()
    model = build_model(cfg).train()
    inputs = training_inputs(cfg)
    images = model.preprocess_image(inputs)
    _, extra = model.extract_features(images, inputs)
    maps = extra[VIRTUAL_FEATURES]
    assert all(t.shape[:2] == (2, 2) for t in maps.values())  # B = 2 images, m = 2 copies
    boxes = [x["instances"].gt_boxes for x in inputs]
    virtual = model.roi_heads.virtual_roi_features(boxes, extra)
    assert virtual.shape == (5, 2, 32 + 64)
    # row (box 3 = image 1's first box, copy 1) is that box in copy 1's own maps
    one = {n: t[1:2, 1] for n, t in maps.items()}
    v4, v5 = model.roi_heads.second_roi_features(one, [boxes[1][:1]])
    torch.testing.assert_close(virtual[3, 1], torch.cat([v4, v5], dim=1)[0])
