"""Extension hooks of the re-id model for projects: heads built with the backbone (stages
reachable by name, ImageNet weights loaded before the head is built, a copied stage restored by
a whole-model load) and configurable extra targets."""

import pytest
import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from reid_model_testutils import tiny_reid_cfg
from torch import nn

from person_search.engine import PersonSearchCheckpointer
from person_search.modeling.backbone.reid_backbones import OSNet, ReIDResNet
from person_search.modeling.reid_heads import REID_HEAD_REGISTRY, build_reid_head


@REID_HEAD_REGISTRY.register()
class ReIDModelTestCopyHead(nn.Module):
    """Pools a deep copy of the backbone's last stage run on the stage before it."""

    @configurable
    def __init__(self, *, copied: nn.Module, in_feature: str, channels: int, num_classes: int):
        super().__init__()
        self.copied = copied
        self.in_feature = in_feature
        self.classifier = nn.Linear(channels, num_classes)
        self.seen_targets: list[set[str]] = []

    @classmethod
    def from_config(cls, cfg, input_shape, backbone=None):
        import copy

        last = backbone.stage_names[-1]
        return {
            "copied": copy.deepcopy(backbone.stage(last)),
            "in_feature": backbone.stage_input(last),
            "channels": backbone.stage_output_shape(last).channels,
            "num_classes": cfg.MODEL.REID.HEAD.NUM_CLASSES,
        }

    def forward(self, features, targets=None):
        pooled = self.copied(features[self.in_feature]).mean(dim=(2, 3))
        if not self.training:
            return {"features": pooled}
        self.seen_targets.append(set(targets))
        logits = self.classifier(pooled)
        return {"loss_cls": nn.functional.cross_entropy(logits, targets["person_id"])}


def _copy_head_cfg():
    cfg = tiny_reid_cfg(num_classes=3)
    cfg.MODEL.REID.HEAD.NAME = "ReIDModelTestCopyHead"
    cfg.MODEL.REID.BACKBONE_OUT_FEATURES = ["res4", "res5"]
    return cfg


def _batch(n: int = 6, **extra) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randint(0, 256, (3, 64, 32), dtype=torch.uint8, generator=gen),
            "person_id": i % 3,
            **{k: v.clone() for k, v in extra.items()},
        }
        for i in range(n)
    ]


def test_resnet_stages_by_name_compose_the_forward():
    torch.manual_seed(0)
    backbone = ReIDResNet(depth=18, stem_width=8, out_features=("res2", "res3", "res4", "res5"))
    backbone.eval()
    assert backbone.stage_names == ("res2", "res3", "res4", "res5")
    assert backbone.stage("res5") is backbone.layer4  # torchvision naming
    assert backbone.stage_input("res2") is None and backbone.stage_input("res5") == "res4"
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, 64, 32))
        for name in ("res3", "res4", "res5"):
            prev = backbone.stage_input(name)
            torch.testing.assert_close(backbone.stage(name)(out[prev]), out[name])
    only_res5 = ReIDResNet(depth=18, stem_width=8, out_features=("res5",))
    # every stage's shape is known, not only the returned ones
    assert only_res5.stage_output_shape("res3") == ShapeSpec(channels=16, stride=8)
    with pytest.raises(KeyError, match="conv5"):
        only_res5.stage("conv5")


def test_osnet_stages_by_name_include_their_transitions():
    torch.manual_seed(0)
    backbone = OSNet(width=0.25, out_features=("conv2", "conv3", "conv4", "conv5")).eval()
    assert backbone.stage_names == ("conv2", "conv3", "conv4", "conv5")
    assert backbone.stage("conv5") is backbone.conv5
    conv4 = backbone.stage("conv4")
    assert conv4[0] is backbone.transition3 and conv4[1] is backbone.conv4
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, 64, 32))
        for name in ("conv3", "conv4", "conv5"):
            torch.testing.assert_close(
                backbone.stage(name)(out[backbone.stage_input(name)]), out[name]
            )
    for name, value in out.items():
        spec = backbone.stage_output_shape(name)
        assert (spec.channels, 64 // spec.stride) == tuple(value.shape[1:3])


def test_head_copies_a_stage_with_the_loaded_imagenet_weights(tmp_path):
    torch.manual_seed(0)
    # an "ImageNet" file in torchvision's naming, with a classifier the loader drops
    reference = ReIDResNet(depth=18, stem_width=8)
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in reference.state_dict().items()
    }
    state["fc.weight"] = torch.zeros(10, 64)
    path = tmp_path / "imagenet.pth"
    torch.save(state, path)
    cfg = _copy_head_cfg()
    cfg.MODEL.REID.BACKBONE_WEIGHTS = str(path)
    model = build_model(cfg)
    copied = model.head.copied.state_dict()
    assert copied.keys() == model.backbone.layer4.state_dict().keys()
    for key, value in copied.items():
        torch.testing.assert_close(value, state[f"layer4.{key}"])  # the file's, not random
    assert all(
        a.data_ptr() != b.data_ptr()
        for a, b in zip(model.head.copied.parameters(), model.backbone.layer4.parameters())
    )


def test_build_reid_head_passes_the_backbone():
    cfg = _copy_head_cfg()
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    head = build_reid_head(cfg, backbone.output_shape(), backbone)
    assert head.in_feature == "res4"
    with pytest.raises(AttributeError):  # the head needs it: None is not silently accepted
        build_reid_head(cfg, backbone.output_shape())


def test_whole_model_weights_restore_the_copied_stage(tmp_path):
    torch.manual_seed(0)
    cfg = _copy_head_cfg()
    trained = build_model(cfg)
    with torch.no_grad():
        for p in trained.head.copied.parameters():
            p.add_(1.0)  # the copy trained apart from the trunk
    PersonSearchCheckpointer(trained, str(tmp_path)).save("model_final")
    torch.manual_seed(1)
    fresh = build_model(cfg)
    PersonSearchCheckpointer(fresh).load(str(tmp_path / "model_final.pth"), checkpointables=[])
    for (name, a), b in zip(
        trained.head.copied.state_dict().items(), fresh.head.copied.state_dict().values()
    ):
        assert torch.equal(a, b), name
    layer4 = fresh.backbone.layer4.state_dict()
    assert not torch.equal(
        fresh.head.copied.state_dict()["0.conv1.weight"], layer4["0.conv1.weight"]
    )


def test_extra_targets_follow_the_config():
    masks = torch.zeros(5, 64, 32)
    parsing = torch.zeros(64, 32, dtype=torch.int64)
    keypoints = torch.zeros(17, 3)
    cfg = _copy_head_cfg()
    assert list(cfg.MODEL.REID.EXTRA_TARGETS) == ["parsing", "part_masks"]
    model = build_model(cfg).train()
    model(_batch(part_masks=masks, parsing=parsing, keypoints=keypoints))
    assert model.head.seen_targets[-1] == {"person_id", "parsing", "part_masks"}

    cfg.MODEL.REID.EXTRA_TARGETS = ["keypoints"]
    model = build_model(cfg).train()
    model(_batch(part_masks=masks, keypoints=keypoints))
    assert model.head.seen_targets[-1] == {"person_id", "keypoints"}
    batch = _batch(keypoints=keypoints)
    del batch[2]["keypoints"]  # not every input has it: not forwarded
    model(batch)
    assert model.head.seen_targets[-1] == {"person_id"}

    cfg.MODEL.REID.EXTRA_TARGETS = ["person_id"]
    with pytest.raises(ValueError, match="MODEL.REID.EXTRA_TARGETS"):
        build_model(cfg)
