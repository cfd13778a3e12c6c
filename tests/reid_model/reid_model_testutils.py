"""Helpers of the re-id model tests: a tiny CPU config of the re-id baseline (a uniquely named
module: every test folder has its own conftest.py, so ``from conftest import ...`` would be
ambiguous in a whole-suite run)."""

import person_search  # noqa: F401  (registers the library)
from person_search.config import get_cfg

# ImageNet statistics in 0-255 units (RGB).
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]


def tiny_reid_cfg(num_classes: int = 4, depth: int = 18, stem_width: int = 8):
    """A ReIDBaseline config small enough for CPU unit tests (ResNet-18 at 1/8 width)."""
    cfg = get_cfg()
    cfg.TASK = "reid"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "ReIDBaseline"
    cfg.MODEL.BACKBONE.NAME = "build_reid_resnet_backbone"
    cfg.MODEL.PIXEL_MEAN = IMAGENET_MEAN
    cfg.MODEL.PIXEL_STD = IMAGENET_STD
    cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.REID.RESNET.DEPTH = depth
    cfg.MODEL.REID.RESNET.STEM_WIDTH = stem_width
    cfg.MODEL.REID.HEAD.NUM_CLASSES = num_classes
    return cfg
