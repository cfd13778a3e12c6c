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
