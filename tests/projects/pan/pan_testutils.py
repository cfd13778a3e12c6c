"""Helpers of the PAN project tests: tiny CPU configs and synthetic batches."""

from __future__ import annotations

import os

import torch

from pan import add_pan_config
from person_search.config import get_cfg

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PAN_DIR = os.path.join(REPO, "projects", "PAN")
# ImageNet statistics in 0-255 units (RGB).
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]
H, W = 64, 32


def tiny_pan_cfg(num_classes: int = 4, backbone: str = "resnet", num_masks: int = 3):
    """A PAN config small enough for CPU unit tests: ResNet-18 at 1/8 width (res4 32 and res5
    64 channels, 4x2 maps for 64x32 crops) or OSNet x0.25; p masks, n_l = 4, N_g = 8."""
    cfg = get_cfg()
    add_pan_config(cfg)
    cfg.TASK = "reid"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "ReIDBaseline"
    cfg.MODEL.PIXEL_MEAN = IMAGENET_MEAN
    cfg.MODEL.PIXEL_STD = IMAGENET_STD
    cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.REID.HEAD.NAME = "PANHead"
    cfg.MODEL.REID.HEAD.NUM_CLASSES = num_classes
    cfg.MODEL.REID.HEAD.POOLING = "max"
    cfg.MODEL.REID.LOSS.TRIPLET_SOFT_MARGIN = True
    if backbone == "resnet":
        cfg.MODEL.BACKBONE.NAME = "build_reid_resnet_backbone"
        cfg.MODEL.REID.RESNET.DEPTH = 18
        cfg.MODEL.REID.RESNET.STEM_WIDTH = 8
        cfg.MODEL.REID.BACKBONE_OUT_FEATURES = ["res4", "res5"]
        cfg.MODEL.REID.HEAD.IN_FEATURE = "res5"
    else:
        cfg.MODEL.BACKBONE.NAME = "build_osnet_backbone"
        cfg.MODEL.REID.OSNET.WIDTH = 0.25
        cfg.MODEL.REID.BACKBONE_OUT_FEATURES = ["conv4", "conv5"]
        cfg.MODEL.REID.HEAD.IN_FEATURE = "conv5"
        cfg.MODEL.PAN.MASK_SOURCE = "conv5"
        cfg.MODEL.PAN.LOCAL_SOURCE = "conv5_buffer"
    cfg.MODEL.PAN.NUM_MASKS = num_masks
    cfg.MODEL.PAN.LOCAL_DIM = 4
    cfg.MODEL.PAN.GLOBAL_DIM = 8
    return cfg


def synthetic_batch(num_ids: int = 4, per_id: int = 2, seed: int = 0) -> list[dict]:
    """Crops of ``num_ids`` identities (a per-id colour layout plus noise), ``person_id`` set."""
    gen = torch.Generator().manual_seed(seed)
    batch = []
    for pid in range(num_ids):
        layout = torch.rand(3, 4, 2, generator=gen) * 255
        base = torch.nn.functional.interpolate(layout[None], size=(H, W), mode="nearest")[0]
        for _ in range(per_id):
            noise = torch.randn(3, H, W, generator=gen) * 20
            image = (base + noise).clamp(0, 255).to(torch.uint8)
            batch.append({"image": image, "person_id": pid})
    return batch
