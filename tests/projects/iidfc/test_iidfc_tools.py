"""projects/IIDFC/tools/compare_toy.py (the README's toy rows: equal settings checked, mean and
spread over seeds) and projects/IIDFC/train_net.py (trains, evaluates, --eval-only reloads)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from iidfc_testutils import IIDFC_DIR

from person_search.data.toy import make_toy_dataset

_COMPARE = os.path.join(IIDFC_DIR, "tools", "compare_toy.py")


def _load_compare():
    spec = importlib.util.spec_from_file_location("iidfc_compare_toy", _COMPARE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_toy_row_shares_the_baselines_settings(tmp_path):
    compare = _load_compare()
    for family in (["hoim-base", "irr", "irr-fc", "iidfc"], ["oim", "oim-pam-fc"]):
        cfgs = {m: compare.model_config(m, 0, str(tmp_path), []) for m in family}
        compare.check_equal_settings(cfgs)  # raises when a step trains differently
    cfgs = {
        "hoim-base": compare.model_config("hoim-base", 0, str(tmp_path), []),
        "iidfc": compare.model_config("iidfc", 0, str(tmp_path), ["SOLVER.MAX_ITER", "10"]),
    }
    with pytest.raises(ValueError, match="iidfc and hoim-base differ in SOLVER"):
        compare.check_equal_settings(cfgs)


def test_markdown_rows_are_mean_and_sample_std():
    compare = _load_compare()
    runs = {
        "iidfc": [
            {"iterations": 300, "search mAP": 10.0, "search top-1": 20.0, "detection AP": 1.0}
            | {"detection recall": 5.0},
            {"iterations": 300, "search mAP": 14.0, "search top-1": 20.0, "detection AP": 3.0}
            | {"detection recall": 7.0},
        ]
    }
    text = compare.markdown(runs, [0, 1], {"train_images": 240, "train_ids": 192, "queries": 16})
    assert "| +IRR+FC+PAM (IIDFC) | 300 | 12.0 ± 2.8 | 20.0 ± 0.0 | 2.0 ± 1.4 | 6.0 ± 1.4 |" in text


# The smallest toy CUHK-SYSU with a gallery-50 protocol (>= 51 test images).
_TINY_CUHK_SIZES = {
    "num_train_ids": 4,
    "num_test_ids": 3,
    "num_train_images": 6,
    "num_test_images": 52,
    "num_unlabelled_ids": 3,
}


@pytest.mark.slow
def test_train_net_trains_evaluates_and_reloads(tmp_path):
    data = tmp_path / "data"
    make_toy_dataset("cuhk_sysu", str(data / "toy_cuhk_sysu"), 0, **_TINY_CUHK_SIZES)
    env = dict(os.environ, DETECTRON2_DATASETS=str(data), OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    base = [
        sys.executable,
        os.path.join(IIDFC_DIR, "train_net.py"),
        "--config-file",
        os.path.join(IIDFC_DIR, "configs", "iidfc_toy_cuhk_sysu.yaml"),
    ]
    overrides = ["SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "(2,)", "SOLVER.WARMUP_ITERS", "1"]
    overrides += ["SOLVER.CHECKPOINT_PERIOD", "3", "OUTPUT_DIR", str(out)]
    run = subprocess.run(base + overrides, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "metrics.json") as f:
        records = [json.loads(line) for line in f if line.strip()]
    assert any({"loss_box_reg", "loss_box_ciou", "loss_hoim_reid"} <= set(r) for r in records)
    assert "copypaste: Task: search" in run.stdout + run.stderr

    # --eval-only on the trained weights: the model loads them without missing PAM parameters
    command = base + ["--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth")]
    command += ["OUTPUT_DIR", str(tmp_path / "eval")]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    logs = run.stdout + run.stderr
    assert "copypaste: Task: search" in logs and "roi_heads.attention" not in logs
