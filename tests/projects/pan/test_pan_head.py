"""The PAN head inside ReIDBaseline: outputs, losses, gradients, the buffer layer (a copy of
res5 with its ImageNet weights, trained apart) and the feature-source errors."""

import pytest
import torch
from detectron2.modeling import build_model
from pan_testutils import synthetic_batch, tiny_pan_cfg

from pan import PANHead
from person_search.engine import build_optimizer
from person_search.modeling.backbone.reid_backbones import ReIDResNet
from person_search.modeling.meta_arch.reid import ReIDBaseline


@pytest.mark.parametrize("backbone", ["resnet", "osnet"])
def test_losses_gradients_and_embedding(backbone):
    torch.manual_seed(0)
    cfg = tiny_pan_cfg(backbone=backbone)
    model = build_model(cfg)
    assert isinstance(model, ReIDBaseline) and isinstance(model.head, PANHead)
    stage = "res5" if backbone == "resnet" else "conv5"
    assert list(model.head.sources.buffer_layers) == [stage]
    model.train()
    losses = model(synthetic_batch())
    assert set(losses) == {"loss_cls_global", "loss_cls_local", "loss_triplet"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    frozen = {"head.global_neck.bias", "head.local_neck.bias"}  # BNNeck: frozen zero bias
    for name, p in model.named_parameters():
        if name in frozen:
            assert not p.requires_grad
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name

    model.eval()
    with torch.no_grad():
        out = model(synthetic_batch()[:3])
        masks = model.head.predict_masks(
            model.backbone(model.preprocess_image(synthetic_batch()[:3]))
        )
    p, n_l, n_g = cfg.MODEL.PAN.NUM_MASKS, cfg.MODEL.PAN.LOCAL_DIM, cfg.MODEL.PAN.GLOBAL_DIM
    assert len(out) == 3 and out[0]["features"].shape == (n_g + p * n_l,)
    assert masks.shape == (3, p, 4, 2)  # 64x32 crops, stride 16


def test_triplet_on_the_embedding_and_ce_split_between_global_and_local():
    torch.manual_seed(0)
    cfg = tiny_pan_cfg()
    model = build_model(cfg).train()
    batch = synthetic_batch()
    torch.manual_seed(1)
    both = model(batch)
    cfg.MODEL.REID.LOSS.CE_WEIGHT = 2.0
    cfg.MODEL.REID.LOSS.TRIPLET_WEIGHT = 0.0
    model2 = build_model(cfg).train()
    model2.load_state_dict(model.state_dict())
    only_ce = model2(batch)
    assert set(only_ce) == {"loss_cls_global", "loss_cls_local"}
    for key in only_ce:  # each is ce_weight / 2 x CE
        torch.testing.assert_close(only_ce[key], 2.0 * both[key])


def test_neck_feat_before_returns_the_raw_concatenation():
    torch.manual_seed(0)
    cfg = tiny_pan_cfg()
    cfg.MODEL.REID.HEAD.NECK_FEAT = "before"
    model = build_model(cfg).eval()
    batch = synthetic_batch()[:2]
    with torch.no_grad():
        features = model.backbone(model.preprocess_image(batch))
        global_emb, local_emb = model.head.embed(features)
        out = model(batch)
    torch.testing.assert_close(
        out[1]["features"], torch.cat([global_emb[1], local_emb[1].flatten()])
    )


def _imagenet_file(tmp_path):
    """A torchvision-named state dict for the tiny ResNet-18, random values, with a classifier."""
    torch.manual_seed(123)
    state = ReIDResNet(depth=18, stem_width=8).state_dict()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    state = {k: v.abs() if k.endswith("running_var") else v for k, v in state.items()}
    state["fc.weight"] = torch.zeros(1000, 64)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(state, path)
    return path, state


def test_buffer_layer_starts_as_loaded_res5_and_diverges_after_one_step(tmp_path):
    path, state = _imagenet_file(tmp_path)
    cfg = tiny_pan_cfg()
    cfg.MODEL.REID.BACKBONE_WEIGHTS = str(path)
    cfg.SOLVER.OPTIMIZER = "Adam"
    cfg.SOLVER.BASE_LR = 1e-3
    model = build_model(cfg)
    buffer = model.head.sources.buffer_layers["res5"]
    res5 = model.backbone.stage("res5")
    start = {k: v.clone() for k, v in buffer.state_dict().items()}
    assert start.keys() == res5.state_dict().keys()
    for key, value in start.items():
        assert torch.equal(value, state[f"layer4.{key}"]), key  # the file's weights
        assert torch.equal(value, res5.state_dict()[key]), key
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(buffer.parameters(), res5.parameters()))

    optimizer = build_optimizer(cfg, model)
    model.train()
    losses = model(synthetic_batch())
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    after_buffer, after_res5 = buffer.state_dict(), res5.state_dict()
    weights = [k for k in start if k.endswith("weight")]
    moved = [k for k in weights if not torch.equal(after_buffer[k], start[k])]
    assert moved == weights  # the buffer is trained ...
    apart = [k for k in weights if not torch.equal(after_buffer[k], after_res5[k])]
    assert apart == weights  # ... and no longer equal to res5, which got other gradients


def test_feature_sources_of_table_3():
    cfg = tiny_pan_cfg()
    cfg.MODEL.REID.BACKBONE_OUT_FEATURES = ["res3", "res4", "res5"]
    for f1, f2, copies in [
        ("res4", "res5", []),
        ("res4", "res5_buffer", ["res5"]),
        ("res4_buffer", "res5", ["res4"]),
        ("res4_buffer", "res5_buffer", ["res4", "res5"]),
        ("res5", "res5", []),
        ("res5_buffer", "res5_buffer", ["res5"]),
    ]:
        cfg.MODEL.PAN.MASK_SOURCE, cfg.MODEL.PAN.LOCAL_SOURCE = f1, f2
        model = build_model(cfg).train()
        assert sorted(model.head.sources.buffer_layers) == copies, (f1, f2)
        assert model.head.mask_generator.conv.in_channels == (32 if f1.startswith("res4") else 64)
        losses = model(synthetic_batch())
        assert all(torch.isfinite(v) for v in losses.values())


def test_unknown_or_unreachable_source_names_the_key_and_values():
    cfg = tiny_pan_cfg()
    cfg.MODEL.PAN.MASK_SOURCE = "conv5"
    with pytest.raises(ValueError, match=r"MODEL.PAN.MASK_SOURCE = 'conv5'.*valid: \['res4'"):
        build_model(cfg)
    cfg = tiny_pan_cfg()
    cfg.MODEL.PAN.LOCAL_SOURCE = "res5_copy"
    with pytest.raises(ValueError, match=r"MODEL.PAN.LOCAL_SOURCE = 'res5_copy'.*'res5_buffer'"):
        build_model(cfg)
    # the buffer of res5 reads res4, which the backbone must return
    cfg = tiny_pan_cfg()
    cfg.MODEL.REID.BACKBONE_OUT_FEATURES = ["res5"]
    with pytest.raises(ValueError, match=r"LOCAL_SOURCE = 'res5_buffer'.*\['res5'\]"):
        build_model(cfg)
    # F1 and F2 on grids of different sizes
    cfg = tiny_pan_cfg()
    cfg.MODEL.REID.RESNET.LAST_STRIDE = 2
    cfg.MODEL.PAN.MASK_SOURCE = "res4"
    with pytest.raises(ValueError, match=r"MASK_SOURCE = 'res4' \(stride 16\).*'res5_buffer'"):
        build_model(cfg)


def test_softmax_ablation_trains():
    torch.manual_seed(0)
    cfg = tiny_pan_cfg()
    cfg.MODEL.PAN.MASK_SOFTMAX = True
    model = build_model(cfg).train()
    assert model.head.mask_generator.softmax
    losses = model(synthetic_batch())
    sum(losses.values()).backward()
    assert model.head.mask_generator.conv.weight.grad.abs().sum() > 0
