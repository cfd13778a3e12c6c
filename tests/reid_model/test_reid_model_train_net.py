"""tools/train_net.py trains and evaluates the re-id baseline (cfg.TASK "reid") end to end, and
resumes it exactly."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from person_search.data.toy.reid_writer import write_market1501

_REPO = os.path.join(os.path.dirname(__file__), "..", "..")


def _write_toy(tmp_path) -> None:
    write_market1501(
        str(tmp_path / "data" / "toy_market1501"),
        0,
        num_ids=8,
        num_cameras=3,
        height=64,
        width=32,
        num_distractors=2,
        num_junk=1,
    )


def _command(out, **extra: str) -> list[str]:
    overrides = {
        "MODEL.DEVICE": "cpu",
        "MODEL.REID.BACKBONE_WEIGHTS": "",
        "MODEL.REID.RESNET.DEPTH": "18",
        "MODEL.REID.RESNET.STEM_WIDTH": "8",
        "MODEL.REID.HEAD.NUM_CLASSES": "0",  # from the toy train set's metadata
        "INPUT.REID.SIZE_TRAIN": "(64,32)",
        "INPUT.REID.SIZE_TEST": "(64,32)",
        "INPUT.REID.PADDING": "4",
        "DATASETS.TRAIN": "('toy_market1501_train',)",
        "DATASETS.TEST": "('toy_market1501_test',)",
        "DATALOADER.NUM_WORKERS": "0",
        "SOLVER.IMS_PER_BATCH": "8",
        "DATALOADER.NUM_INSTANCES": "2",
        "SOLVER.SCHEDULE_UNIT": "iter",
        "SOLVER.MAX_ITER": "6",
        "SOLVER.STEPS": "()",
        "SOLVER.WARMUP_ITERS": "2",
        "SOLVER.CHECKPOINT_PERIOD": "6",
        "TEST.EVAL_PERIOD": "6",
        "OUTPUT_DIR": str(out),
        **extra,
    }
    return [
        sys.executable,
        os.path.join(_REPO, "tools", "train_net.py"),
        "--config-file",
        os.path.join(_REPO, "configs", "reid", "Base-ReID.yaml"),
        *[x for kv in overrides.items() for x in kv],
    ]


@pytest.mark.slow
def test_train_net_reid_on_toy_data(tmp_path):
    _write_toy(tmp_path)
    out = tmp_path / "out"
    command = _command(out)
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "data"))
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "model_final.pth").is_file()
    with open(out / "metrics.json") as f:
        records = [json.loads(line) for line in f if line.strip()]
    losses = [r for r in records if "loss_cls" in r]
    assert losses and all("loss_triplet" in r for r in losses)
    final = [r for r in records if "reid/mAP" in r]
    assert final, records[-1]
    assert 0.0 <= final[-1]["reid/mAP"] <= 100.0
    assert final[-1]["reid/num_valid_queries"] > 0

    # --eval-only on the trained weights writes the same kind of metrics
    command[4:4] = ["--eval-only"]  # options before the KEY VALUE overrides
    command += ["MODEL.WEIGHTS", str(out / "model_final.pth")]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "eval_results.json") as f:
        results = json.load(f)
    assert results["reid"]["mAP"] == pytest.approx(final[-1]["reid/mAP"], abs=1e-4)


@pytest.mark.slow
def test_resume_from_a_checkpoint_matches_the_uninterrupted_run(tmp_path):
    """A run resumed from its iteration-3 checkpoint ends with the uninterrupted run's weights,
    bit for bit: same P x K batches (the sampler continues its stream), same augmentation
    draws (RNG states restored), same optimizer state."""
    _write_toy(tmp_path)
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "data"))
    settings = {"SOLVER.CHECKPOINT_PERIOD": "3", "TEST.EVAL_PERIOD": "0", "SEED": "7"}
    whole = tmp_path / "whole"
    run = subprocess.run(
        _command(whole, **settings), env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # the interrupted run: only the checkpoint written after iteration 3 survives
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(whole / "model_0000002.pth", resumed / "model_0000002.pth")
    (resumed / "last_checkpoint").write_text("model_0000002.pth")
    command = _command(resumed, **settings)
    command[4:4] = ["--resume"]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Training data stream continued at iteration 3" in run.stderr + run.stdout

    def weights(path):
        return torch.load(path, map_location="cpu", weights_only=False)["model"]

    a, b = weights(whole / "model_final.pth"), weights(resumed / "model_final.pth")
    assert a.keys() == b.keys()
    checkpoint = weights(resumed / "model_0000002.pth")
    classifier = next(k for k in a if k.endswith("classifier.weight"))
    assert not torch.equal(a[classifier], checkpoint[classifier])  # training went on after it
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, differing[:5]
