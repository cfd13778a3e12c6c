"""ReIDBaseline contract: losses, gradients, inference outputs, a few training steps."""

import pytest
import torch
from detectron2.modeling import build_model
from reid_model_testutils import tiny_reid_cfg

from person_search.modeling.meta_arch.reid import ReIDBaseline
from person_search.modeling.reid_heads import BNNeckHead

_H, _W = 64, 32


def _synthetic_batch(num_ids: int = 4, per_id: int = 4, seed: int = 0) -> list[dict]:
    """Images of ``num_ids`` identities: a per-id random colour layout plus per-image noise."""
    gen = torch.Generator().manual_seed(seed)
    batch = []
    for pid in range(num_ids):
        layout = torch.rand(3, 4, 2, generator=gen) * 255
        base = torch.nn.functional.interpolate(layout[None], size=(_H, _W), mode="nearest")[0]
        for _ in range(per_id):
            noise = torch.randn(3, _H, _W, generator=gen) * 20
            image = (base + noise).clamp(0, 255).to(torch.uint8)
            batch.append({"image": image, "person_id": pid, "camera_id": 0, "image_id": "x"})
    return batch


@pytest.mark.parametrize(
    "backbone", ["build_reid_resnet_backbone", "build_osnet_backbone"], ids=["resnet", "osnet"]
)
def test_training_losses_and_gradients(backbone):
    torch.manual_seed(0)
    cfg = tiny_reid_cfg()
    cfg.MODEL.BACKBONE.NAME = backbone
    if backbone == "build_osnet_backbone":
        cfg.MODEL.REID.OSNET.WIDTH = 0.25
        cfg.MODEL.REID.BACKBONE_OUT_FEATURES = ["conv5"]
        cfg.MODEL.REID.HEAD.IN_FEATURE = "conv5"
    cfg.MODEL.REID.HEAD.POOLING = "gem"
    model = build_model(cfg)
    assert isinstance(model, ReIDBaseline) and isinstance(model.head, BNNeckHead)
    model.train()
    losses = model(_synthetic_batch())
    assert set(losses) == {"loss_cls", "loss_triplet"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    no_grad = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert no_grad == []
    assert not model.head.bottleneck.bias.requires_grad  # BNNeck: frozen BN bias


@pytest.mark.parametrize("neck_feat", ["after", "before"])
def test_inference_outputs_and_inputs_untouched(neck_feat):
    cfg = tiny_reid_cfg()
    cfg.MODEL.REID.HEAD.NECK_FEAT = neck_feat
    model = build_model(cfg).eval()
    batch = _synthetic_batch(num_ids=2, per_id=1)
    copies = [x["image"].clone() for x in batch]
    with torch.no_grad():
        outputs = model(batch)
        feats = model.backbone(model.preprocess_image(batch))["res5"]
    assert len(outputs) == 2
    assert all(set(o) == {"features"} and o["features"].shape == (64,) for o in outputs)
    pooled = feats.mean(dim=(2, 3))
    expected = model.head.bottleneck(pooled) if neck_feat == "after" else pooled
    torch.testing.assert_close(torch.stack([o["features"] for o in outputs]), expected)
    for x, original in zip(batch, copies):
        assert torch.equal(x["image"], original)


def test_pixel_normalisation():
    cfg = tiny_reid_cfg()
    model = build_model(cfg)
    image = torch.full((3, 8, 4), 100, dtype=torch.uint8)
    normalised = model.preprocess_image([{"image": image}])
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(3, 1, 1)
    torch.testing.assert_close(normalised[0], (100 - mean) / std * torch.ones(3, 8, 4))


def test_bad_inputs_raise_clear_errors():
    model = build_model(tiny_reid_cfg(num_classes=4)).train()
    batch = _synthetic_batch(num_ids=2, per_id=2)
    batch[0] = {"image": batch[0]["image"]}
    with pytest.raises(ValueError, match="person_id"):
        model(batch)
    batch = _synthetic_batch(num_ids=2, per_id=2)
    batch[1]["person_id"] = 9
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model(batch)
    batch = _synthetic_batch(num_ids=2, per_id=1)
    batch[1]["image"] = batch[1]["image"][:, :32]
    with pytest.raises(ValueError, match="one size"):
        model(batch)


def test_bad_config_values_raise():
    cfg = tiny_reid_cfg()
    cfg.MODEL.REID.HEAD.IN_FEATURE = "res4"
    with pytest.raises(ValueError, match="IN_FEATURE"):
        build_model(cfg)
    cfg = tiny_reid_cfg()
    cfg.MODEL.REID.HEAD.NECK_FEAT = "middle"
    with pytest.raises(ValueError, match="middle"):
        build_model(cfg)
    cfg = tiny_reid_cfg(num_classes=0)
    cfg.DATASETS.TRAIN = ("reid_model_test_unregistered",)
    with pytest.raises(ValueError, match="reid_model_test_unregistered"):
        build_model(cfg)


def test_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = build_model(tiny_reid_cfg())
    model.train()
    batch = _synthetic_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def total_loss() -> torch.Tensor:
        return sum(model(batch).values())

    history = []
    for _ in range(15):
        loss = total_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.5 * history[0], history
