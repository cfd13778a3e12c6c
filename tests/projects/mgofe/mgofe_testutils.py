"""Helpers of the MGOFE project tests: the toy config on CPU and synthetic training inputs with
MGRO's occluded copies (made by the library's MGRO, as the training mapper makes them)."""

from __future__ import annotations

import os

import numpy as np
import torch
from detectron2.structures import Boxes, Instances

from mgofe import add_mgofe_config
from person_search.data.occlusion import MGRO
from person_search.engine import load_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MGOFE_DIR = os.path.join(REPO, "projects", "MGOFE")
TOY_CONFIG = os.path.join(MGOFE_DIR, "configs", "mgofe_toy_cuhk_sysu.yaml")
NUM_IDS = 4  # labelled identities of the synthetic inputs (OIM lookup-table rows)


def toy_cfg(*opts: str):
    """MGOFE's toy config (+ ``opts``) on CPU, the lookup-table size fixed, not frozen."""
    cfg = load_config(TOY_CONFIG, list(opts), add_mgofe_config)
    cfg.MODEL.OIM.NUM_PERSON_IDS = NUM_IDS
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.SEQNET.FIRST_SCORE_THRESH_TEST = 0.0  # detections from an untrained model
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    return cfg


def training_inputs(cfg, seed: int = 0, iteration: int = 0) -> list[dict]:
    """Two training images (3, 96, 128) with 3 and 2 persons (labelled + unlabelled) and, with
    ``INPUT.MGRO`` on, their ``occluded_images`` (m, 3, 96, 128) from the library's MGRO."""
    gen = torch.Generator().manual_seed(seed)
    boxes = [
        [[10.0, 10.0, 40.0, 80.0], [50.0, 5.0, 80.0, 90.0], [90.0, 20.0, 120.0, 85.0]],
        [[5.0, 15.0, 35.0, 90.0], [60.0, 10.0, 100.0, 92.0]],
    ]
    pids = [[0, 1, -1], [1, 3]]
    mgro = MGRO.from_config(cfg) if cfg.INPUT.MGRO.ENABLED else None
    inputs = []
    for i, (b, p) in enumerate(zip(boxes, pids)):
        inst = Instances((96, 128))
        inst.gt_boxes = Boxes(torch.tensor(b))
        inst.gt_classes = torch.zeros(len(b), dtype=torch.long)
        inst.gt_pids = torch.tensor(p)
        image = torch.randint(0, 256, (3, 96, 128), generator=gen, dtype=torch.uint8)
        x = {"image": image, "height": 96, "width": 128, "instances": inst, "image_id": i}
        if mgro is not None:
            hwc = image.permute(1, 2, 0).numpy()
            copies = mgro.copies(hwc, np.asarray(b), iteration, i)
            x["occluded_images"] = torch.from_numpy(copies.transpose(0, 3, 1, 2).copy())
        inputs.append(x)
    return inputs
