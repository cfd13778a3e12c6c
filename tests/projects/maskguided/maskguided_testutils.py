"""Helpers of the MaskGuidedPS tests (a uniquely named module: every test folder has its own
conftest.py): paths, hand-written mask files and a tiny mask model."""

from __future__ import annotations

import json
import os

import torch
from detectron2.modeling import build_model

from maskguided import add_maskguided_config
from person_search.engine import load_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PROJECT_DIR = os.path.join(REPO, "projects", "MaskGuidedPS")
CONFIG_DIR = os.path.join(PROJECT_DIR, "configs")
TOY_CONFIG = os.path.join(CONFIG_DIR, "maskguided_toy_cuhk_sysu.yaml")


def write_json(path: str, payload) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f)
    return path


def labelme_file(image: str, shapes: list[dict], height: int = 100, width: int = 80) -> dict:
    """A labelme 5 file's content."""
    return {
        "version": "5.2.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": f"../Image/SSM/{image}",
        "imageData": None,
        "imageHeight": height,
        "imageWidth": width,
    }


def shape(points: list[list[float]], group_id=None, label: str = "person", kind="polygon"):
    return {
        "label": label,
        "points": points,
        "group_id": group_id,
        "shape_type": kind,
        "flags": {},
    }


def tiny_mask_model(**overrides):
    """The toy MaskGuidedPS model, narrowed further for CPU unit tests (no dataset needed)."""
    torch.manual_seed(0)
    opts = [
        "MODEL.OIM.NUM_PERSON_IDS",
        "5",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN",
        "64",
        "MODEL.RPN.POST_NMS_TOPK_TEST",
        "16",
        "MODEL.PERSON_SEARCH.EMBEDDING_DIM",
        "16",
    ]
    for key, value in overrides.items():
        opts += [key, str(value)]
    cfg = load_config(TOY_CONFIG, opts, add_maskguided_config)
    return cfg, build_model(cfg)
