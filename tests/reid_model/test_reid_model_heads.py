"""Pluggable re-id heads: a head registered by a test and chosen by config replaces only the
head of ReIDBaseline (backbone, normalisation, evaluator API unchanged)."""

import pytest
import torch
from detectron2.config import configurable
from detectron2.modeling import build_model
from reid_model_testutils import tiny_reid_cfg
from torch import nn

from person_search.evaluation import ReIDEvaluator
from person_search.modeling.meta_arch.reid import ReIDBaseline
from person_search.modeling.reid_heads import REID_HEAD_REGISTRY, BNNeckHead

_NUM_PARTS = 3


@REID_HEAD_REGISTRY.register()
class ReIDModelTestPartHead(nn.Module):
    """Horizontal stripes as parts; visibility = mean of the stripe's part mask (if given)."""

    @configurable
    def __init__(self, *, in_feature: str, in_channels: int, num_classes: int):
        super().__init__()
        self.in_feature = in_feature
        self.classifier = nn.Linear(in_channels, num_classes)
        self.seen_targets: list[set[str]] = []

    @classmethod
    def from_config(cls, cfg, input_shape, backbone=None):
        name = cfg.MODEL.REID.HEAD.IN_FEATURE
        return {
            "in_feature": name,
            "in_channels": input_shape[name].channels,
            "num_classes": cfg.MODEL.REID.HEAD.NUM_CLASSES,
        }

    def forward(self, features, targets=None):
        fmap = features[self.in_feature]  # (N, C, H, W)
        stripes = nn.functional.adaptive_avg_pool2d(fmap, (_NUM_PARTS, 1)).flatten(2)  # (N, C, P)
        stripes = stripes.transpose(1, 2)  # (N, P, C)
        if self.training:
            self.seen_targets.append(set(targets))
            logits = self.classifier(stripes.mean(1))
            return {"loss_dummy": nn.functional.cross_entropy(logits, targets["person_id"])}
        n = fmap.shape[0]
        visibility = torch.ones(n, _NUM_PARTS)
        visibility[0, 0] = 0.0  # the first image hides its top stripe
        return {
            "features": stripes.mean(1),
            "part_features": stripes,
            "part_visibility": visibility,
        }


def test_registry_documents_the_call_contract():
    doc = REID_HEAD_REGISTRY.__doc__
    assert "obj(cfg, input_shape, backbone=backbone)" in doc and "part_visibility" in doc


def test_head_chosen_by_config_trains_and_feeds_the_evaluator():
    torch.manual_seed(0)
    cfg = tiny_reid_cfg(num_classes=3)
    cfg.MODEL.REID.HEAD.NAME = "ReIDModelTestPartHead"
    model = build_model(cfg)
    assert isinstance(model, ReIDBaseline) and isinstance(model.head, ReIDModelTestPartHead)
    # only the head differs from the baseline built by the same config
    baseline_cfg = tiny_reid_cfg(num_classes=3)
    baseline = build_model(baseline_cfg)
    assert isinstance(baseline.head, BNNeckHead)
    assert {k: v.shape for k, v in model.backbone.state_dict().items()} == {
        k: v.shape for k, v in baseline.backbone.state_dict().items()
    }

    gen = torch.Generator().manual_seed(0)
    batch = [
        {
            "image": torch.randint(0, 256, (3, 64, 32), dtype=torch.uint8, generator=gen),
            "person_id": i % 3,
            "camera_id": i % 2,
            "part_masks": torch.zeros(5, 64, 32),
        }
        for i in range(6)
    ]
    model.train()
    losses = model(batch)
    assert set(losses) == {"loss_dummy"} and torch.isfinite(losses["loss_dummy"])
    losses["loss_dummy"].backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    # the meta architecture forwards the extra per-image targets every input carries
    assert model.head.seen_targets[-1] == {"person_id", "part_masks"}

    model.eval()
    with torch.no_grad():
        outputs = model(batch)
    assert outputs[0]["part_features"].shape == (_NUM_PARTS, 8 * 8)
    assert outputs[0]["part_visibility"].tolist() == [0.0, 1.0, 1.0]
    evaluator = ReIDEvaluator("x", feature="parts", distributed=False)
    evaluator.reset()
    splits = ["query"] * 2 + ["gallery"] * 4
    inputs = [dict(b, split=s, image_id=str(i)) for i, (b, s) in enumerate(zip(batch, splits))]
    evaluator.process(inputs, outputs)
    res = evaluator.evaluate()["reid"]
    # Both queries have their one true match in the gallery, from another camera.
    assert res["num_valid_queries"] == 2 and res["num_skipped_queries"] == 0
    # mAP and rank-1 recomputed by hand from the part features: cosine distance per part,
    # averaged over the parts visible (> 0.5) in both images; AP = 1 / rank of the one match.
    parts = torch.stack([o["part_features"] for o in outputs])
    visible = torch.stack([o["part_visibility"] for o in outputs]) > 0.5
    ranks = []
    for q in range(2):
        gallery = range(2, 6)
        cosine = nn.functional.cosine_similarity(parts[q][None], parts[2:], dim=2)  # (4, P)
        shared = visible[q][None] & visible[2:]
        dist = ((1 - cosine) * shared).sum(1) / shared.sum(1)
        match = next(i for i, g in enumerate(gallery) if batch[g]["person_id"] == q % 3)
        ranks.append(1 + int((dist < dist[match]).sum()))
    assert res["mAP"] == pytest.approx(100.0 * sum(1.0 / r for r in ranks) / 2, rel=1e-5)
    assert res["Rank-1"] == pytest.approx(100.0 * sum(r == 1 for r in ranks) / 2)


def test_unknown_head_name_is_an_error():
    cfg = tiny_reid_cfg()
    cfg.MODEL.REID.HEAD.NAME = "NoSuchHead"
    with pytest.raises(KeyError, match="NoSuchHead"):
        build_model(cfg)
