"""projects/SGSFA/train_net.py trains SGSFA on toy data with parsing maps and evaluates it in
part mode; a training image without a map stops it (naming the image) unless allowed."""

import json
import os
import subprocess
import sys

import pytest
from sgsfa_testutils import REPO, TOY_CONFIG

from person_search.data.toy.reid_writer import write_market1501


def _write_toy(tmp_path) -> str:
    root = tmp_path / "data"
    write_market1501(
        str(root / "toy_market1501"),
        0,
        num_ids=8,
        num_cameras=3,
        height=64,
        width=32,
        num_distractors=2,
        num_junk=1,
    )
    return str(root)


def _command(out, *extra: str) -> list[str]:
    overrides = {
        "MODEL.REID.RESNET.STEM_WIDTH": "8",
        "MODEL.SGSFA.EMBED_DIM": "16",
        "INPUT.REID.SIZE_TRAIN": "(64,32)",
        "INPUT.REID.SIZE_TEST": "(64,32)",
        "INPUT.REID.PADDING": "4",
        "SOLVER.IMS_PER_BATCH": "8",
        "DATALOADER.NUM_INSTANCES": "2",
        "SOLVER.MAX_ITER": "6",
        "SOLVER.STEPS": "()",
        "SOLVER.WARMUP_ITERS": "2",
        "SOLVER.CHECKPOINT_PERIOD": "6",
        "TEST.EVAL_PERIOD": "6",
        "OUTPUT_DIR": str(out),
    }
    return [
        sys.executable,
        os.path.join(REPO, "projects", "SGSFA", "train_net.py"),
        "--config-file",
        TOY_CONFIG,
        *[x for kv in overrides.items() for x in kv],
        *extra,
    ]


@pytest.mark.slow
def test_train_net_sgsfa_on_toy_data(tmp_path):
    data = _write_toy(tmp_path)
    env = dict(os.environ, DETECTRON2_DATASETS=data, OMP_NUM_THREADS="1")
    # one training image loses its parsing map: an error naming it ...
    parsing = os.path.join(data, "toy_market1501", "parsing", "bounding_box_train")
    gone = sorted(os.listdir(parsing))[0]
    os.remove(os.path.join(parsing, gone))
    out = tmp_path / "out"
    run = subprocess.run(_command(out), env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0 and gone.replace(".png", ".jpg") in run.stderr, run.stderr[-2000:]
    # ... unless images without maps are allowed (their mask losses are skipped)
    command = _command(out, "INPUT.REID.ALLOW_MISSING_PARSING", "True")
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "model_final.pth").is_file()
    with open(out / "metrics.json") as f:
        records = [json.loads(line) for line in f if line.strip()]
    losses = [r for r in records if "loss_dcls" in r]
    assert losses, records[:2]
    for name in ("loss_triplet", "loss_se", "loss_sga_cls", "loss_dcls"):
        assert all(r[name] >= 0 for r in losses), name
    final = [r for r in records if "reid/mAP" in r][-1]
    assert final["reid/num_valid_queries"] > 0

    # --eval-only on the trained weights (part mode, the paper's sum) gives the same numbers
    command[4:4] = ["--eval-only"]
    command += ["MODEL.WEIGHTS", str(out / "model_final.pth")]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "eval_results.json") as f:
        results = json.load(f)
    assert results["reid"]["mAP"] == pytest.approx(final["reid/mAP"], abs=1e-4)
