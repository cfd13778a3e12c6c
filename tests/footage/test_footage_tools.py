"""tools/index_gallery.py and tools/search.py: command lines, outputs and error messages."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from footage_testutils import OIM_TOY_CONFIG, REPO, TINY_OVERRIDES, perturbed_weights

from person_search.footage import FootageIndex, ModelMismatchError


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"footage_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INDEX_TOOL = _load_tool("index_gallery")
SEARCH_TOOL = _load_tool("search")


@pytest.fixture(scope="module")
def small_index(tiny_cuhk_root, trained_weights, tmp_path_factory):
    """An index of 5 toy images in cam_a/ made by tools/index_gallery.py (in process)."""
    root = tmp_path_factory.mktemp("tools")
    source = os.path.join(tiny_cuhk_root, "toy_cuhk_sysu", "Image", "SSM")
    (root / "cam_a").mkdir()
    for name in sorted(os.listdir(source))[:5]:
        shutil.copy(os.path.join(source, name), root / "cam_a" / name)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    args = INDEX_TOOL.parse_args(
        ["--config-file", str(OIM_TOY_CONFIG), "--output", str(root / "index")]
        + ["--input", str(root / "cam_a"), *TINY_OVERRIDES, "MODEL.WEIGHTS", trained_weights]
        + ["--no-progress", "FOOTAGE.SCORE_THRESH", "0.2"]
    )
    info = INDEX_TOOL.main(args)
    torch.set_num_threads(previous)
    assert info["num_detections"] > 0
    return {"root": root, "index": str(root / "index"), "weights": trained_weights}


def test_index_command_line_takes_overrides_after_the_inputs(tmp_path):
    args = INDEX_TOOL.parse_args(
        ["--config-file", "c.yaml", "--output", "o", "--input", "a", "b.mp4", "MODEL.WEIGHTS"]
        + ["w.pth", "--camera", "b.mp4=door", "--every-n-frames", "5"]
    )
    assert args.input == ["a", "b.mp4"] and args.opts == ["MODEL.WEIGHTS", "w.pth"]
    assert args.cameras == {"b.mp4": "door"} and args.every_n_frames == 5
    args = INDEX_TOOL.parse_args(
        ["--config-file", "c.yaml", "--output", "o", "--input", "a", "--no-progress"]
        + ["MODEL.DEVICE", "cpu"]
    )
    assert args.input == ["a"] and args.opts == ["MODEL.DEVICE", "cpu"]
    with pytest.raises(SystemExit):
        INDEX_TOOL.parse_args(["--config-file", "c", "--output", "o", "--input", "a", "--camera"])
    with pytest.raises(SystemExit):
        INDEX_TOOL.parse_args(
            ["--config-file", "c", "--output", "o", "--input", "a", "--camera", "noequals"]
        )


def test_search_writes_results_sheet_and_frames(small_index, tmp_path, single_thread):
    index = FootageIndex.load(small_index["index"])
    query_image = index.hit(0).path  # a detection's own image and box: it ranks first
    box = [f"{v:.4f}" for v in index.hit(0).box]
    out = tmp_path / "out"
    paths = SEARCH_TOOL.main(
        ["--index", small_index["index"], "--query", query_image, "--box", *box]
        + ["--top-k", "3", "--output", str(out), "--full-frames", "--cameras", "cam_a"]
    )
    assert sorted(paths) == ["contact_sheet", "frames", "results"]
    results = json.loads((out / "results.json").read_text())
    assert results["top_k"] == 3 and results["cameras"] == ["cam_a"]
    assert results["retrieval"] == "TorchExact" and len(results["results"]) == 3
    first = results["results"][0]
    assert first["detection_id"] == 0 and first["image"] == query_image
    # Not 1: a detection's embedding is computed on its proposal, the query's on the given box.
    assert first["similarity"] > 0.9
    assert set(first) == {
        "rank", "similarity", "image", "frame", "time", "camera", "box", "score", "detection_id",
    }  # fmt: skip
    assert sorted(os.listdir(out / "frames")) == ["rank_001.png", "rank_002.png", "rank_003.png"]


def test_search_errors_name_the_problem(small_index, tmp_path, single_thread):
    index = small_index["index"]
    image = FootageIndex.load(index).hit(0).path
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match=r"query box \[10.0, 10.0, 900.0, 50.0\] is not inside"):
        SEARCH_TOOL.main(["--index", index, "--query", image, "--box", "10", "10", "900", "50"])
    with pytest.raises(ValueError, match="is not inside"):
        SEARCH_TOOL.main(["--index", index, "--query", image, "--box", "50", "10", "40", "90"])
    with pytest.raises(FileNotFoundError, match="query image not found: .*nope.jpg"):
        SEARCH_TOOL.main(["--index", index, "--query", "nope.jpg", "--box", "1", "1", "5", "9"])
    with pytest.raises(FileNotFoundError, match="index folder not found"):
        SEARCH_TOOL.main(["--index", str(tmp_path / "none"), "--query-index-entry", "0"])
    with pytest.raises(IndexError, match="detection id 99999 is out of range"):
        SEARCH_TOOL.main(["--index", index, "--query-index-entry", "99999", "--output", out])
    with pytest.raises(SystemExit):
        SEARCH_TOOL.main(["--index", index, "--query", image])  # no --box
    entry_and_box = ["--query-index-entry", "0", "--box", "1", "1", "2", "9"]
    with pytest.raises(SystemExit):
        SEARCH_TOOL.main(["--index", index, *entry_and_box])
    assert not os.path.exists(out)  # nothing written by a failed search

    # Another model's weights: an error naming both files.
    other = perturbed_weights(small_index["weights"], tmp_path / "retrained.pth")
    with pytest.raises(ModelMismatchError, match="weights differ") as e:
        SEARCH_TOOL.main(
            ["--index", index, "--query", image, "--box", "1", "1", "20", "40"]
            + ["MODEL.WEIGHTS", str(other)]
        )
    assert small_index["weights"] in str(e.value) and str(other) in str(e.value)
    with pytest.raises(ModelMismatchError, match="model/input config differ"):
        SEARCH_TOOL.main(
            ["--index", index, "--query", image, "--box", "1", "1", "20", "40"]
            + ["INPUT.MIN_SIZE_TEST", "300"]
        )


@pytest.mark.slow
def test_command_line_error_exits_with_status_1(small_index, tmp_path):
    """The script itself (a subprocess: ~10 s of imports on a busy machine)."""
    image = FootageIndex.load(small_index["index"]).hit(0).path
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "search.py"), "--index", small_index["index"]]
        + ["--query", image, "--box", "-5", "0", "10", "10", "--output", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "error: query box [-5.0, 0.0, 10.0, 10.0] is not inside the query image" in proc.stderr
    assert not (tmp_path / "o").exists()
    assert np.isfinite(FootageIndex.load(small_index["index"]).scores).all()
