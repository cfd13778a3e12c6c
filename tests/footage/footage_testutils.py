"""Shared helpers of the footage tests: a tiny toy CUHK-SYSU, a tiny OIM model, videos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from person_search.engine import load_config
from person_search.footage import indexer

REPO = Path(__file__).resolve().parents[2]
OIM_TOY_CONFIG = REPO / "configs" / "oim" / "oim_toy_cuhk_sysu.yaml"
# A small toy CUHK-SYSU with a gallery-50 protocol (needs >= 51 test images) and 6 queries.
TINY_CUHK_SIZES = {
    "num_train_ids": 4,
    "num_test_ids": 6,
    "num_train_images": 6,
    "num_test_images": 52,
    "num_unlabelled_ids": 3,
}
# The OIM toy config shrunk for tests (a few hundredths of a second per toy image on one core);
# the LUT size is the tiny set's identity count, so the model builds without the dataset. No
# score threshold: every box the model keeps (at most 20 per image) is indexed, which gives a
# model trained for seconds detections in every frame.
TINY_OVERRIDES = [
    "MODEL.OIM.NUM_PERSON_IDS", "4",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
    "FOOTAGE.SCORE_THRESH", "0.0",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "20",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "MODEL.PERSON_SEARCH.EMBEDDING_DIM", "16",
    "MODEL.OIM.QUEUE_SIZE", "8",
    "SOLVER.WARMUP_ITERS", "2",
]  # fmt: skip
# Training of the ``trained_weights`` fixture: 30 iterations of 4 images (about 15 s on one busy
# core), no evaluation. Detection AP at 0.5 is then ~10 on the tiny test set: boxes on persons.
TRAIN_OVERRIDES = [
    "SOLVER.MAX_ITER", "30",
    "SOLVER.IMS_PER_BATCH", "4",
    "SOLVER.BASE_LR", "0.003",
    "SOLVER.STEPS", "()",
    "SOLVER.CHECKPOINT_PERIOD", "1000",
    "DATASETS.TEST", "()",
    "SEED", "0",
]  # fmt: skip
# Video codec of the test videos: Motion-JPEG in AVI, written and read by the FFmpeg back-end
# of opencv-python-headless.
FOURCC = "MJPG"


def write_video(path: str | Path, frames_bgr: Sequence[np.ndarray], fps: float) -> None:
    """Write (H, W, 3) uint8 BGR frames of one size as an MJPG .avi."""
    height, width = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {FOURCC} videos here"
    for frame in frames_bgr:
        writer.write(np.ascontiguousarray(frame))
    writer.release()


def gradient_frames(num: int, height: int = 60, width: int = 80) -> list[np.ndarray]:
    """Smooth synthetic BGR frames, each different (compress well, decode near-losslessly)."""
    y, x = np.mgrid[0:height, 0:width]
    return [
        np.dstack([(x * 3 + 20 * i) % 256, (y * 4) % 256, np.full_like(x, 25 * i % 256)]).astype(
            np.uint8
        )
        for i in range(num)
    ]


def tiny_cfg(weights: str, *opts: str):
    """The tiny OIM config with ``MODEL.WEIGHTS`` and further overrides, frozen."""
    cfg = load_config(str(OIM_TOY_CONFIG), [*TINY_OVERRIDES, "MODEL.WEIGHTS", weights, *opts])
    cfg.freeze()
    return cfg


def write_toy_video(path: str | Path, image_files: Sequence[str | Path], fps: float) -> None:
    """A video whose frame i is image i padded (right and bottom, black) to the largest size:
    the persons keep their image coordinates."""
    images = [cv2.imread(str(f)) for f in image_files]
    height = max(i.shape[0] for i in images)
    width = max(i.shape[1] for i in images)
    frames = []
    for image in images:
        frame = np.zeros((height, width, 3), np.uint8)
        frame[: image.shape[0], : image.shape[1]] = image
        frames.append(frame)
    write_video(path, frames, fps)


def interrupt_after_chunks(monkeypatch, model, chunks: int) -> None:
    """Make the model raise KeyboardInterrupt once ``chunks`` chunk files have been written (in
    the middle of the next chunk's first batch)."""
    written = {"n": 0}
    real_write, real_detect = indexer.write_chunk, model.detect

    def write_chunk(*args, **kwargs):
        real_write(*args, **kwargs)
        written["n"] += 1

    def detect(inputs, score_thresh):
        if written["n"] >= chunks:
            raise KeyboardInterrupt
        return real_detect(inputs, score_thresh)

    monkeypatch.setattr(indexer, "write_chunk", write_chunk)
    monkeypatch.setattr(model, "detect", detect)


def perturbed_weights(weights: str, path: str | Path) -> str:
    """A copy of the weights file ``weights`` at ``path`` with one tensor changed: another model."""
    state = torch.load(weights, weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = state["model"][name] + 1.0
    torch.save(state, path)
    return str(path)
