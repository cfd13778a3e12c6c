"""projects/MGOFE/train_net.py on a tiny toy CUHK-SYSU (run as a script from the repository
root): a few iterations of the full model give finite values for every loss term, ``--resume``
from a checkpoint ends with the weights of the uninterrupted run, and ``--eval-only`` runs the
occluded-query evaluation with test-time copies."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from mgofe_testutils import MGOFE_DIR, REPO, TOY_CONFIG

from person_search.data.toy import make_toy_dataset

_SIZES = {
    "num_train_ids": 4,
    "num_test_ids": 3,
    "num_train_images": 6,
    "num_test_images": 52,
    "num_unlabelled_ids": 3,
}
_OVERRIDES = [
    "MODEL.MGOFE.COPY_DETECTION_LOSS.ENABLED", "True",  # every loss term of the model
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "SOLVER.MAX_ITER", "4",
    "SOLVER.STEPS", "()",
    "SOLVER.WARMUP_ITERS", "2",
    "SOLVER.CHECKPOINT_PERIOD", "2",
    "DATASETS.TEST", "()",
]  # fmt: skip
_LOSSES = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_oim"}
_LOSSES |= {"loss_cls_2nd", "loss_box_reg_2nd", "loss_mgfa"}
_LOSSES |= {f"{n}_occluded" for n in ("loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg")}


def _run(out, datasets, *options: str, overrides=_OVERRIDES) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        DETECTRON2_DATASETS=str(datasets),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        PYTHONPATH=os.pathsep.join([REPO, MGOFE_DIR, os.environ.get("PYTHONPATH", "")]),
    )
    command = [
        sys.executable,
        os.path.join(MGOFE_DIR, "train_net.py"),
        "--config-file",
        TOY_CONFIG,
        *options,
        *overrides,
        "OUTPUT_DIR",
        str(out),
    ]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return run


def _model(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
def test_train_resume_exactly_and_evaluate_occluded_queries(tmp_path):
    data = tmp_path / "data"
    make_toy_dataset("cuhk_sysu", str(data / "toy_cuhk_sysu"), 0, **_SIZES)
    full = tmp_path / "full"
    _run(full, data)
    with open(full / "metrics.json") as f:
        records = [json.loads(line) for line in f if line.strip()]
    logged = set().union(*(set(r) for r in records))
    assert logged >= _LOSSES, sorted(_LOSSES - logged)
    for r in records:
        for name in _LOSSES & set(r):
            assert r[name] == r[name] and abs(r[name]) < float("inf"), (name, r)

    # resume from the first checkpoint (after iteration 1): the same final weights
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(full / "model_0000001.pth", resumed / "model_0000001.pth")
    (resumed / "last_checkpoint").write_text("model_0000001.pth")
    run = _run(resumed, data, "--resume")
    assert "Starting training from iteration 2" in run.stdout + run.stderr
    a, b = _model(full / "model_final.pth"), _model(resumed / "model_final.pth")
    assert set(a) == set(b)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert any(".mgffe." in k for k in a) and any(".mgfa." in k for k in a)

    # evaluation only, with test-time copies and the occluded-query evaluation
    evaluated = tmp_path / "eval"
    _run(
        evaluated,
        data,
        "--eval-only",
        overrides=[
            "MODEL.WEIGHTS",
            str(full / "model_final.pth"),
            "MODEL.MGOFE.TEST_COPIES",
            "True",
            "TEST.PERSON_SEARCH.OCCLUDED_QUERIES.ENABLED",
            "True",
            "TEST.PERSON_SEARCH.OCCLUDED_QUERIES.COVERAGES",
            "[0.5]",
        ],
    )
    test_dir = evaluated / "inference" / "toy_cuhk_sysu_test"
    assert (test_dir / "occluded_queries.png").stat().st_size > 0
    assert (test_dir / "search_results.pth").exists()
