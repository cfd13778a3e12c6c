"""Shared helpers of the engine tests: a tiny toy dataset, tools/train_net.py in a subprocess,
checkpoint comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_NET = REPO_ROOT / "tools" / "train_net.py"
OIM_TOY_CONFIG = REPO_ROOT / "configs" / "oim" / "oim_toy_cuhk_sysu.yaml"
# A toy PRW small enough to generate in about a second: 6 training frames of 240 x 400 (all
# landscape, so aspect-ratio grouping never holds an image back), 6 test frames.
TINY_PRW_SIZES = {
    "num_train_ids": 3,
    "num_test_ids": 2,
    "num_train_frames": 6,
    "num_test_frames": 6,
    "num_cameras": 2,
    "num_unlabelled_ids": 2,
}
# The OIM toy config on the tiny toy PRW, with fewer boxes: about a second per iteration on one
# busy CPU core. No test set: the final evaluation is skipped.
TINY_OVERRIDES = [
    "DATASETS.TRAIN", "('toy_prw_train',)",
    "DATASETS.TEST", "()",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "20",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "MODEL.PERSON_SEARCH.EMBEDDING_DIM", "16",
    "MODEL.OIM.QUEUE_SIZE", "8",
    "SOLVER.WARMUP_ITERS", "2",
]  # fmt: skip

# Iterations of the uninterrupted run and its checkpoint period: checkpoints after iterations
# 2 and 5 (model_0000002.pth, model_0000005.pth), then model_final.pth after iteration 6.
FULL_RUN_ITERS = 7
CHECKPOINT_PERIOD = 3


def train_args(output_dir: Path, *extra: str) -> list[str]:
    """tools/train_net.py arguments of the tiny OIM run (extra options before the overrides)."""
    return [
        "--config-file",
        str(OIM_TOY_CONFIG),
        *extra,
        *TINY_OVERRIDES,
        "SOLVER.MAX_ITER",
        str(FULL_RUN_ITERS),
        "SOLVER.CHECKPOINT_PERIOD",
        str(CHECKPOINT_PERIOD),
        "OUTPUT_DIR",
        str(output_dir),
    ]


def run_train_net(
    args: list[str], datasets_root: str, *, timeout: float = 600.0
) -> subprocess.CompletedProcess:
    """Run ``tools/train_net.py ARGS`` to completion (one intra-op thread; deterministic
    kernels on CPU), capturing its output."""
    return subprocess.run(
        [sys.executable, str(TRAIN_NET), *args],
        cwd=REPO_ROOT,
        env=train_net_env(datasets_root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train_net_env(datasets_root: str) -> dict[str, str]:
    """Environment of a train_net subprocess: the datasets root, one thread, no GPU."""
    env = dict(os.environ)
    env.update(
        DETECTRON2_DATASETS=datasets_root,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
    )
    return env


def describe(proc: subprocess.CompletedProcess) -> str:
    """The end of a finished process's output, for assertion messages."""
    return (
        f"exit code {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n"
        + (proc.stderr[-3000:])
    )


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by the Trainer (weights-only loading works on it)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def differing_tensors(a: dict, b: dict) -> list[str]:
    """Names of the model tensors that differ (or are missing) between two checkpoints."""
    keys = set(a["model"]) | set(b["model"])
    return sorted(
        k
        for k in keys
        if k not in a["model"]
        or k not in b["model"]
        or not torch.equal(a["model"][k], b["model"][k])
    )
