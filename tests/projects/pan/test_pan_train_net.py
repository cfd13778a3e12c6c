"""projects/PAN/train_net.py trains and evaluates PAN on a tiny toy set (run as a script from
the repository root: the ``pan`` package is importable); --eval-only refuses its weights under
another mask count; tools/visualize_masks.py draws the trained masks."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from pan_testutils import PAN_DIR
from PIL import Image

from person_search.data.toy.reid_writer import write_market1501

_OVERRIDES = {
    "MODEL.REID.RESNET.STEM_WIDTH": "8",
    "MODEL.PAN.NUM_MASKS": "4",
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
}
_CONFIG = os.path.join(PAN_DIR, "configs", "pan_toy_market1501.yaml")


def _command(out, *options: str, **extra: str) -> list[str]:
    overrides = {**_OVERRIDES, "OUTPUT_DIR": str(out), **extra}
    return [
        sys.executable,
        os.path.join(PAN_DIR, "train_net.py"),
        "--config-file",
        _CONFIG,
        *options,
        *[x for kv in overrides.items() for x in kv],
    ]


@pytest.mark.slow
def test_train_evaluate_refuse_other_mask_count_and_draw(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_market1501(
        str(data / "toy_market1501"),
        0,
        num_ids=8,
        num_cameras=3,
        height=64,
        width=32,
        num_distractors=2,
        num_junk=1,
    )
    env = dict(os.environ, DETECTRON2_DATASETS=str(data))
    out = tmp_path / "out"
    run = subprocess.run(_command(out), env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    weights = out / "model_final.pth"
    with open(out / "metrics.json") as f:
        records = [json.loads(line) for line in f if line.strip()]
    assert any({"loss_cls_global", "loss_cls_local", "loss_triplet"} <= set(r) for r in records)
    final = [r for r in records if "reid/mAP" in r][-1]
    assert final["reid/num_valid_queries"] > 0

    # a config with another mask count refuses these weights, naming the key and both counts
    command = _command(
        out, "--eval-only", **{"MODEL.WEIGHTS": str(weights), "MODEL.PAN.NUM_MASKS": "6"}
    )
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0
    assert "MODEL.PAN.NUM_MASKS = 6, but the weights being loaded have a mask generator of 4" in (
        run.stderr
    )

    # the masks of the trained model over two queries, one PNG each
    spec = importlib.util.spec_from_file_location(
        "visualize_masks", os.path.join(PAN_DIR, "tools", "visualize_masks.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(data))
    vis = tmp_path / "vis"
    overrides = [x for kv in {**_OVERRIDES, "MODEL.WEIGHTS": str(weights)}.items() for x in kv]
    paths = tool.main(
        [
            "--config-file",
            _CONFIG,
            "--output",
            str(vis),
            "--num-images",
            "2",
            "--panel-height",
            "64",
        ]
        + overrides
    )
    assert len(paths) == 2 and sorted(os.listdir(vis)) == sorted(map(os.path.basename, paths))
    picture = np.asarray(Image.open(paths[0]))
    assert picture.shape[0] == 64 and picture.shape[2] == 3  # image + fusion + 4 masks, one row
    with pytest.raises(IndexError, match="out of range"):
        tool.main(["--config-file", _CONFIG, "--output", str(vis), "--images", "0,999"] + overrides)
