"""projects/MaskGuidedPS/train_net.py on a tiny toy CUHK-SYSU with person masks (labelme and COCO
layouts): trains with the mask loss, evaluates (the results file keeps the detections' masks),
then the pictures: tools/visualize_detections.py --show-masks, tools/visualize_search.py with
masks and tools/plot_gallery_curve.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from maskguided_testutils import PROJECT_DIR, REPO, TOY_CONFIG

from person_search.data.toy import make_toy_dataset
from person_search.evaluation.saved_results import load_search_results

_SIZES = {
    "num_train_ids": 4,
    "num_test_ids": 3,
    "num_train_images": 8,
    "num_test_images": 52,
    "num_unlabelled_ids": 3,
}
_OVERRIDES = [
    "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.STEPS", "()",
    "SOLVER.WARMUP_ITERS", "1", "SOLVER.CHECKPOINT_PERIOD", "3", "TEST.EVAL_PERIOD", "0",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "10", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
    "TEST.PERSON_SEARCH.DET_THRESH", "0.0",
]  # fmt: skip


def _run(args: list[str], env: dict) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_evaluate_and_draw_masks(tmp_path):
    data = tmp_path / "data"
    make_toy_dataset("cuhk_sysu", str(data / "toy_cuhk_sysu"), 0, mask_fraction=1.0, **_SIZES)
    path = os.pathsep.join([REPO, PROJECT_DIR, os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, DETECTRON2_DATASETS=str(data), PYTHONPATH=path, OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    log = _run(
        [
            os.path.join(PROJECT_DIR, "train_net.py"),
            "--config-file",
            TOY_CONFIG,
            *_OVERRIDES,
            "INPUT.MASKGUIDED.MASKS",
            "toy_cuhk_sysu/masks/instances_train.json",  # the COCO layout
            "OUTPUT_DIR",
            str(out),
        ],
        env,
    )
    assert "Person masks from" in log and "0 masks skipped" in log
    assert "loss_mask" in log
    results = out / "inference" / "toy_cuhk_sysu_test" / "search_results.pth"
    saved = load_search_results(str(results))
    assert saved.detection_masks is not None
    assert len(saved.detection_masks.rows) == len(saved.detections.scores) > 0
    assert (saved.detection_masks.rows >= 0).all()  # DET_THRESH 0: every detection kept
    weights = str(out / "model_final.pth")
    assert (
        "roi_heads.mask_head.predictor.weight" in torch.load(weights, weights_only=False)["model"]
    )

    det_dir = tmp_path / "detections"
    log = _run(
        [
            "tools/visualize_detections.py",
            "--config-file",
            TOY_CONFIG,
            "--add-config",
            "maskguided:add_maskguided_config",
            "--show-masks",
            "--num-images",
            "2",
            "--score-thresh",
            "0.0",
            "--output",
            str(det_dir),
            "MODEL.WEIGHTS",
            weights,
            "MODEL.RPN.POST_NMS_TOPK_TEST",
            "10",
        ],
        env,
    )
    assert len(list(det_dir.glob("*.png"))) == 2
    search_dir = tmp_path / "search"
    _run(
        [
            "tools/visualize_search.py",
            "--results",
            str(results),
            "--output",
            str(search_dir),
            "--queries",
            "0",
        ],
        env,
    )
    assert [p.name for p in search_dir.glob("*.png")] == ["query_0000.png"]
    curve = tmp_path / "curve.png"
    log = _run(
        ["tools/plot_gallery_curve.py", f"MaskGuidedPS={results}", "--output", str(curve)], env
    )
    assert curve.is_file() and "| 50 |" in log
