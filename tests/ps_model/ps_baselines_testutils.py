"""Shared helpers of the SeqNet / SeqNeXt / HOIM model tests: tiny configs, inputs, checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from person_search.config import get_cfg

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
# Labelled identities of the tiny inputs (LUT rows).
NUM_IDS = 4
# Tiny ConvNeXt / Res2Net for CPU tests.
TINY_DEPTHS = [1, 1, 1, 1]
TINY_WIDTHS = [8, 16, 32, 64]


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run a test on one intra-op thread: on a busy shared 2-core machine, two threads make
    small convolutions tens of times slower. Restores the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def toy_cfg(relpath: str):
    """A repo config with the LUT size fixed (no dataset metadata needed) on CPU."""
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG_DIR / relpath))
    cfg.MODEL.OIM.NUM_PERSON_IDS = NUM_IDS
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def training_inputs(seed: int = 0) -> list[dict]:
    """Two mapped training images (3, 96, 128) with 3 and 2 persons (labelled + unlabelled)."""
    gen = torch.Generator().manual_seed(seed)
    boxes = [
        [[10.0, 10.0, 40.0, 80.0], [50.0, 5.0, 80.0, 90.0], [90.0, 20.0, 120.0, 85.0]],
        [[5.0, 15.0, 35.0, 90.0], [60.0, 10.0, 100.0, 92.0]],
    ]
    pids = [[0, 1, -1], [1, 3]]
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
    """One forward/backward in training mode; returns the loss dict."""
    model.train()
    with EventStorage():
        losses = model(inputs)
        sum(losses.values()).backward()
    return losses


def params_without_grad(model, *, nonzero: bool = False) -> list[str]:
    """Trainable parameters with no (or a non-finite) gradient; with ``nonzero``, also those
    whose gradient is all zero (timm zero-initialises the last BN of residual blocks, so
    gradients inside such branches can be exactly 0 at initialisation)."""
    missing = []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None or not torch.isfinite(p.grad).all() or (nonzero and not p.grad.any()):
            missing.append(n)
    return missing


def check_inference_contract(model, embedding_dim: int) -> None:
    """Scene image -> instances with L2-normalised embeddings in original coordinates; query
    input -> (1, D) L2-normalised embedding of its given box."""
    model.eval()
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    scene = {"image": image, "height": 192, "width": 256, "image_id": "s1.jpg"}
    query = {
        "image": image,
        "height": 192,
        "width": 256,
        "image_id": "s1.jpg",
        "query_boxes": Boxes(torch.tensor([[10.0, 10.0, 40.0, 80.0]])),
        "query_index": 0,
    }
    with torch.no_grad():
        out_scene, out_query = model([scene, query])
    inst = out_scene["instances"]
    assert set(inst.get_fields()) >= {"pred_boxes", "scores", "pred_classes", "embeddings"}
    assert inst.image_size == (192, 256)
    m = len(inst)
    assert inst.embeddings.shape == (m, embedding_dim)
    assert inst.embeddings.dtype == torch.float32
    assert inst.scores.shape == (m,)
    if m:
        torch.testing.assert_close(inst.embeddings.norm(dim=1), torch.ones(m))
        assert inst.pred_boxes.tensor[:, 2].max() <= 256 and inst.pred_boxes.tensor.min() >= 0
    q = out_query["query_embeddings"]
    assert q.shape == (1, embedding_dim)
    torch.testing.assert_close(q.norm(dim=1), torch.ones(1))
    # The query path embeds exactly the given box: same as embedding it directly.
    with torch.no_grad():
        direct = model.embed_boxes([query], [query["query_boxes"]])[0]
    torch.testing.assert_close(q, direct)
