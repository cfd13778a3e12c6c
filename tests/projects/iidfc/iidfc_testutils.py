"""Helpers of the IIDFC project tests: configs on CPU, tiny training inputs."""

from __future__ import annotations

import os

import torch
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from iidfc import add_iidfc_config
from person_search.engine import load_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
IIDFC_DIR = os.path.join(REPO, "projects", "IIDFC")
CONFIG_DIR = os.path.join(IIDFC_DIR, "configs")
TOY_CONFIG = os.path.join(CONFIG_DIR, "iidfc_toy_cuhk_sysu.yaml")
# Labelled identities of the tiny inputs (LUT rows) when no dataset gives them.
NUM_IDS = 4


def iidfc_cfg(path: str, *opts: str):
    """``path`` merged with IIDFC's keys, on CPU, LUT of ``NUM_IDS`` rows, no ImageNet file."""
    return load_config(
        path,
        [
            "MODEL.DEVICE", "cpu",
            "MODEL.OIM.NUM_PERSON_IDS", str(NUM_IDS),
            "MODEL.BACKBONE.PRETRAINED_FILE", "",
            *opts,
        ],
        add_iidfc_config,
    )  # fmt: skip


def tiny_training_inputs(seed: int = 0) -> list[dict]:
    """Two mapped (3, 96, 128) training images: labelled persons 0, 1, 3 and an unlabelled one."""
    gen = torch.Generator().manual_seed(seed)
    boxes = [[[10.0, 10.0, 40.0, 80.0], [50.0, 5.0, 80.0, 90.0]], [[60.0, 10.0, 100.0, 92.0]]]
    pids = [[0, -1], [3]]
    inputs = []
    for b, p in zip(boxes, pids):
        inst = Instances((96, 128))
        inst.gt_boxes = Boxes(torch.tensor(b))
        inst.gt_classes = torch.zeros(len(b), dtype=torch.long)
        inst.gt_pids = torch.tensor(p)
        image = torch.randint(0, 256, (3, 96, 128), generator=gen, dtype=torch.uint8)
        inputs.append({"image": image, "height": 96, "width": 128, "instances": inst})
    return inputs


def train_step(model, inputs) -> dict[str, torch.Tensor]:
    """One forward / backward in training mode; the loss dict."""
    model.train()
    with EventStorage():
        losses = model(inputs)
        sum(losses.values()).backward()
    return losses
