"""IIDFC's RoI heads on the toy config: the training losses (IRR's two box terms, FC's two
levels), gradients reaching PAM, the attention read by detection and query embeddings alike,
and the OIM(ours)+PAM+FC heads."""

from __future__ import annotations

import os

import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from iidfc_testutils import CONFIG_DIR, TOY_CONFIG, iidfc_cfg, tiny_training_inputs, train_step

from iidfc import AttentionOIMROIHeads, IIDFCROIHeads


def _model(path: str = TOY_CONFIG, *opts: str):
    torch.manual_seed(0)
    return build_model(iidfc_cfg(path, *opts))


def test_training_losses_and_gradients_reach_pam():
    model = _model()
    assert isinstance(model.roi_heads, IIDFCROIHeads)
    losses = train_step(model, tiny_training_inputs())
    assert set(losses) == {
        "loss_rpn_cls",
        "loss_rpn_loc",
        "loss_box_reg",
        "loss_box_ciou",
        "loss_hoim_cls",
        "loss_hoim_reid",
    }
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_ciou"] > 0
    pam = model.roi_heads.attention
    for name, p in pam.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _attention_scale(model, factor: float) -> None:
    """Replace the heads' attention by a constant ``factor`` (a probe of where it is read)."""

    class Scale(torch.nn.Module):
        def forward(self, x):
            return factor * x

    model.roi_heads.attention = Scale()


def test_attention_is_read_by_gallery_detections_and_query_boxes():
    model = _model().eval()
    inputs = [{k: v for k, v in d.items() if k != "instances"} for d in tiny_training_inputs()]
    with torch.no_grad():
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        boxes = [Boxes(torch.tensor([[10.0, 10.0, 40.0, 80.0]]))] * 2
        plain = torch.cat(model.roi_heads.embed_boxes(features, boxes))
        _attention_scale(model, 0.0)  # zero maps: pooled 0, the embedding of a zero vector
        zeroed = torch.cat(model.roi_heads.embed_boxes(features, boxes))
        assert not torch.allclose(plain, zeroed)
        torch.testing.assert_close(zeroed[0], zeroed[1])  # the images no longer matter
        detections = model(inputs)
    assert sum(len(out["instances"]) for out in detections) > 0
    for out in detections:
        emb = out["instances"].embeddings
        if len(emb):
            torch.testing.assert_close(emb, zeroed[:1].expand_as(emb))


def test_no_attention_is_the_hoim_heads_with_irr():
    model = _model(TOY_CONFIG, "MODEL.IIDFC.ATTENTION.NAME", "none")
    assert sum(p.numel() for p in model.roi_heads.attention.parameters()) == 0
    hoim = _model(TOY_CONFIG, "MODEL.ROI_HEADS.NAME", "HOIMROIHeads")
    # Same parameters (names and shapes): "none" adds nothing to HOIM-base.
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in hoim.state_dict().items()}


def test_oim_pam_fc_heads_train():
    path = os.path.join(CONFIG_DIR, "oim", "oim_pam_fc_toy_cuhk_sysu.yaml")
    model = _model(path)
    assert isinstance(model.roi_heads, AttentionOIMROIHeads)
    losses = train_step(model, tiny_training_inputs())
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_oim"}
    assert model.roi_heads.attention.shared_conv.weight.grad.abs().sum() > 0
