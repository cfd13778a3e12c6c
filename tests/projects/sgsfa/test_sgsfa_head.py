"""The SGSFA model (backbone + head) contract: losses, gradients, outputs, config errors."""

import pytest
import torch
from detectron2.modeling import build_model
from sgsfa_testutils import tiny_sgsfa_cfg

from person_search.data.reid_mapper import MISSING_PARSING
from sgsfa.backbone import WHOLE_BODY_LOGITS, SGSFAResNet
from sgsfa.head import SGSFAHead


def _part_masks(missing: bool = False) -> torch.Tensor:
    """(5, 64, 32): whole body, head, upper, lower, shoes of a standing person."""
    masks = torch.zeros(5, 64, 32)
    masks[1, 4:12, 12:20] = 1
    masks[2, 12:30, 8:24] = 1
    masks[3, 30:56, 10:22] = 1
    masks[4, 56:62, 10:22] = 1
    masks[0] = masks[1:].amax(0)
    return torch.full_like(masks, MISSING_PARSING) if missing else masks


def _batch(n: int = 8, num_ids: int = 4, missing=()) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randint(0, 256, (3, 64, 32), dtype=torch.uint8, generator=gen),
            "person_id": i % num_ids,
            "part_masks": _part_masks(i in missing),
        }
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "opts",
    [(), ("MODEL.SGSFA.WHOLE_ATTENTION", "False"), ("MODEL.SGSFA.SFA", "False")],
    ids=["full", "no_whole_attention", "no_sfa"],
)
def test_training_losses_and_every_parameter_gets_a_gradient(opts):
    torch.manual_seed(0)
    model = build_model(tiny_sgsfa_cfg(*opts))
    assert isinstance(model.backbone, SGSFAResNet) and isinstance(model.head, SGSFAHead)
    model.train()
    losses = model(_batch())
    expected = {"loss_triplet", "loss_se", "loss_sga_cls"}
    if "MODEL.SGSFA.SFA" not in opts:
        expected.add("loss_dcls")
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    has_whole = WHOLE_BODY_LOGITS in model.backbone.output_shape()
    assert has_whole == ("MODEL.SGSFA.WHOLE_ATTENTION" not in opts)


def test_images_without_parsing_maps_get_no_mask_loss():
    torch.manual_seed(0)
    model = build_model(tiny_sgsfa_cfg())
    model.train()
    losses = model(_batch(missing=range(8)))
    assert losses["loss_se"].item() == 0.0  # every map unknown: no attention loss at all
    assert torch.isfinite(losses["loss_sga_cls"]) and losses["loss_sga_cls"] > 0
    some = model(_batch(missing=(0, 5)))
    assert some["loss_se"].item() > 0


def test_inference_outputs_and_visibility_from_the_learned_masks():
    torch.manual_seed(0)
    model = build_model(tiny_sgsfa_cfg())
    # part logits fixed by the biases: head and lower body everywhere, upper body and shoes
    # nowhere
    with torch.no_grad():
        model.head.part_attention.parts.weight.zero_()
        model.head.part_attention.parts.bias.copy_(torch.tensor([10.0, -10.0, 10.0, -10.0]))
    model.eval()
    with torch.no_grad():
        out = model(_batch(2))
    d = 16
    assert len(out) == 2
    o = out[0]
    assert o["features"].shape == ((1 + 4 + 3) * d,)
    assert o["part_features"].shape == (4 + 3, d) and o["part_visibility"].shape == (7,)
    assert o["part_masks"].shape == (4, 4, 2) and o["whole_body_mask"].shape == (1, 16, 8)
    # parts: fraction of set cells (1 or 0); blocks: any part covers every cell -> 1
    assert o["part_visibility"].tolist() == [1, 0, 1, 0, 1, 1, 1]
    # the head mask is set from row 0: split of the 4-row map below it, one row at least each
    assert o["region_bounds"].tolist() == [0, 1, 2, 4]
    # "features" is global + parts + blocks, "part_features" the last seven of them
    torch.testing.assert_close(o["features"].view(8, d)[1:], o["part_features"])
    # no head found (its part hidden): the head scores 0 and the split starts at the top
    with torch.no_grad():
        model.head.part_attention.parts.bias.copy_(torch.tensor([-10.0, -10.0, 10.0, -10.0]))
        o = model(_batch(1))[0]
    assert o["region_bounds"].tolist() == [0, 1, 2, 4]
    assert o["part_visibility"].tolist() == [0, 0, 1, 0, 1, 1, 1]


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="MODEL.SGSFA.HEAD_PART='face'"):
        build_model(tiny_sgsfa_cfg("MODEL.SGSFA.HEAD_PART", "face"))
    with pytest.raises(ValueError, match="PARSING_PART_NAMES"):
        build_model(tiny_sgsfa_cfg("INPUT.REID.PARSING_PART_NAMES", "()"))
    with pytest.raises(ValueError, match="build_sgsfa_resnet_backbone"):
        build_model(tiny_sgsfa_cfg("MODEL.BACKBONE.NAME", "build_reid_resnet_backbone"))
    with pytest.raises(ValueError, match="LAMBDA"):
        build_model(tiny_sgsfa_cfg("MODEL.SGSFA.LAMBDA", "1.5"))
    model = build_model(tiny_sgsfa_cfg())
    model.train()
    batch = [{k: v for k, v in x.items() if k != "part_masks"} for x in _batch()]
    with pytest.raises(ValueError, match="INPUT.REID.LOAD_PARSING"):
        model(batch)
    batch = [dict(x, part_masks=x["part_masks"][:3]) for x in _batch()]
    with pytest.raises(ValueError, match="PARSING_GROUPS"):
        model(batch)
