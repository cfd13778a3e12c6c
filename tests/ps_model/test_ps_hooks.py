"""The person-search extension hooks MGOFE-like projects use: ``PersonSearchRCNN.
extract_features`` (extra features beside the backbone maps) reaching the SeqNet second head's
``transform_roi_features`` step, in training (auxiliary loss), in gallery inference and for
queries, also in a batch mixing scene images and queries."""

from __future__ import annotations

import person_search  # noqa: F401  (compat layer + registration, before detectron2 imports)

# isort: split
import pytest
import torch
from detectron2.modeling import META_ARCH_REGISTRY, ROI_HEADS_REGISTRY, build_model
from detectron2.structures import Boxes
from ps_baselines_testutils import (
    single_thread,  # noqa: F401  (fixture)
    toy_cfg,
    train_step,
    training_inputs,
)

from person_search.modeling.meta_arch.person_search_rcnn import PersonSearchRCNN
from person_search.modeling.roi_heads import SeqNetROIHeads

pytestmark = pytest.mark.usefixtures("single_thread")


@META_ARCH_REGISTRY.register()
class PsHooksTestRCNN(PersonSearchRCNN):
    """Extra features: one scale per image, from the input dict."""

    def extract_features(self, images, batched_inputs):
        features, extra = super().extract_features(images, batched_inputs)
        extra["scale"] = torch.tensor([float(x["scale"]) for x in batched_inputs])
        return features, extra


@ROI_HEADS_REGISTRY.register()
class PsHooksTestHeads(SeqNetROIHeads):
    """Multiplies the second head's res5 vectors by their image's scale; an auxiliary loss."""

    def transform_roi_features(self, roi_features, boxes, extra_features):
        v4, v5 = roi_features
        per_box = torch.repeat_interleave(
            extra_features["scale"], torch.tensor([len(b) for b in boxes])
        )
        v5 = v5 * per_box[:, None].to(v5)
        return [v4, v5], {"loss_hook": v5.pow(2).mean()}


def _model(hooked: bool):
    torch.manual_seed(0)
    cfg = toy_cfg("seqnet/seqnet_toy_cuhk_sysu.yaml")
    cfg.MODEL.SEQNET.FIRST_SCORE_THRESH_TEST = 0.0  # detections from an untrained model
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    if hooked:
        cfg.MODEL.META_ARCHITECTURE = "PsHooksTestRCNN"
        cfg.MODEL.ROI_HEADS.NAME = "PsHooksTestHeads"
    return build_model(cfg)


def test_extra_features_reach_the_transform_step():
    model, plain = _model(True), _model(False)
    inputs = [dict(x, scale=2.0) for x in training_inputs(0)]
    losses = train_step(model, inputs)
    assert torch.isfinite(losses["loss_hook"]) and losses["loss_hook"] > 0
    assert set(losses) - {"loss_hook"} == set(train_step(plain, training_inputs(0)))
    # Same weights and statistics in both models from here on.
    plain.load_state_dict(model.state_dict())
    model.eval()
    plain.eval()
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    box = Boxes(torch.tensor([[10.0, 10.0, 40.0, 80.0]]))
    scene = {"image": image, "height": 96, "width": 128, "scale": 1.0}
    query = {"image": image, "height": 96, "width": 128, "query_boxes": box, "scale": 3.0}
    with torch.no_grad():
        mixed = model([scene, query])
        alone = model([query])[0]["query_embeddings"]
        unscaled = plain([query])[0]["query_embeddings"]
        direct = model.embed_boxes([query], [box])[0]
    # The query's extra feature is its own (scale 3) also in a batch with a scene image.
    torch.testing.assert_close(mixed[1]["query_embeddings"], alone)
    torch.testing.assert_close(direct, alone)
    assert not torch.allclose(alone, unscaled, atol=1e-4)
    # Scale 1 is the identity: gallery detections equal the plain model's.
    with torch.no_grad():
        expected = plain([{k: v for k, v in scene.items() if k != "scale"}])[0]["instances"]
    assert len(expected) > 0
    torch.testing.assert_close(mixed[0]["instances"].embeddings, expected.embeddings)


@META_ARCH_REGISTRY.register()
class PsHooksExtraLossRCNN(PsHooksTestRCNN):
    """A training loss of the extra features (``extra_losses``)."""

    loss_name = "loss_extra"

    def extra_losses(self, images, extra_features, gt_instances):
        assert len(gt_instances) == len(extra_features["scale"]) == len(images)
        weight = next(self.parameters())
        return {self.loss_name: extra_features["scale"].sum() * weight.sum() * 0 + 1.5}


def test_extra_losses_join_the_model_losses_and_may_not_clash():
    torch.manual_seed(0)
    cfg = toy_cfg("seqnet/seqnet_toy_cuhk_sysu.yaml")
    cfg.MODEL.META_ARCHITECTURE = "PsHooksExtraLossRCNN"
    model = build_model(cfg)
    inputs = [dict(x, scale=1.0) for x in training_inputs(0)]
    losses = train_step(model, inputs)
    assert losses["loss_extra"].item() == 1.5
    assert "loss_oim" in losses
    model.loss_name = "loss_oim"
    with pytest.raises(KeyError, match=r"already has: \['loss_oim'\]"):
        train_step(model, inputs)
    # the base class adds none
    assert set(train_step(_model(False), training_inputs(0))) == set(losses) - {"loss_extra"}


def test_occluded_query_copies_are_embedded_as_queries():
    model = _model(False)
    train_step(model, training_inputs(0))
    model.eval()
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    box = Boxes(torch.tensor([[10.0, 10.0, 40.0, 80.0]]))
    covered = image.clone()
    covered[:, 10:45, 10:40] = 0
    query = {"image": image, "height": 96, "width": 128, "query_boxes": box}
    query["occluded_query_images"] = torch.stack([image, covered])
    query["occluded_query_coverage"] = torch.tensor([0.0, 0.5])
    scene = {"image": covered, "height": 96, "width": 128}
    with torch.no_grad():
        out = model([scene, query])
        as_queries = [model([{"image": x, "query_boxes": box}])[0] for x in (image, covered)]
    assert "occluded_query_embeddings" not in out[0]
    emb = out[1]["occluded_query_embeddings"]
    assert emb.shape == (2, out[1]["query_embeddings"].shape[1])
    torch.testing.assert_close(emb[0], out[1]["query_embeddings"][0])  # unchanged copy
    torch.testing.assert_close(emb[1], as_queries[1]["query_embeddings"][0])
    assert not torch.allclose(emb[0], emb[1], atol=1e-4)


def test_first_detections_are_the_boxes_the_second_head_refines():
    model = _model(False)
    train_step(model, training_inputs(0))  # BatchNorm statistics of real inputs
    model.eval()
    heads = model.roi_heads
    image = training_inputs(1)[0]["image"]
    seen = {}
    original_first, original_second = heads.first_detections, heads.second_head

    def first(features, proposals):
        seen["first"] = original_first(features, proposals)
        return seen["first"]

    def second(features, boxes, *args):
        seen["second"] = boxes
        return original_second(features, boxes, *args)

    heads.first_detections, heads.second_head = first, second
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 96, "width": 128}])
    (detections,) = seen["first"]
    assert 0 < len(detections) <= heads.first_topk
    assert (detections.scores >= heads.first_score_thresh).all()
    torch.testing.assert_close(seen["second"][0].tensor, detections.pred_boxes.tensor)
    assert len(out["instances"]) <= len(detections)
