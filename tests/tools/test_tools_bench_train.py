"""benchmarks/bench_train.py: one timed step of every person-search baseline and re-id model."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from tools_testutils import REPO

BENCH = REPO / "benchmarks" / "bench_train.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_scenes_are_toy_sized_training_inputs():
    bench = _load_bench()
    scenes = bench.synthetic_scenes(3, np.random.default_rng(0), persons=4, ids=5)
    for s in scenes:
        assert tuple(s["image"].shape) == (3, *bench.IMAGE_SIZE)
        inst = s["instances"]
        boxes = inst.gt_boxes.tensor
        assert len(inst) == 4 and (boxes[:, 2:] > boxes[:, :2]).all()
        assert (boxes[:, 2] <= bench.IMAGE_SIZE[1]).all() and (
            boxes[:, 3] <= bench.IMAGE_SIZE[0]
        ).all()
        assert inst.gt_pids[-1] == -1 and ((inst.gt_pids[:-1] >= 0) & (inst.gt_pids[:-1] < 5)).all()


def test_bench_train_one_iteration_of_every_baseline(capsys):
    bench = _load_bench()
    rows_out = bench.main(["--iters", "1", "--warmup", "0", "--threads", "1", "--reid-configs"])
    assert sorted(r["model"] for r in rows_out) == ["hoim", "oim", "seqnet", "seqnext"]
    for r in rows_out:
        assert math.isfinite(r["train_ips"]) and r["train_ips"] > 0
        assert math.isfinite(r["infer_ips"]) and r["infer_ips"] > 0
        assert r["params_m"] > 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:4] == ["model", "batch", "params (M)", "train img/s"]
    assert "infer img/s" in header and header.count("x oim") == 2
    rows = {
        r[0]: r for r in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])
    }
    ratios = [i for i, h in enumerate(header) if h == "x oim"]
    assert [rows["oim"][i] for i in ratios] == ["1.00", "1.00"]  # the reference, to itself
    speeds = {r["model"]: r for r in rows_out}
    for name, row in rows.items():  # the printed ratios are the measured speeds' ratios
        expected = speeds[name]["train_ips"] / speeds["oim"]["train_ips"]
        assert float(row[ratios[0]]) == pytest.approx(expected, abs=0.006)


def _printed_rows(out: str) -> tuple[list[str], dict[str, list[str]]]:
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return header, {r[0]: r for r in rows}


def test_bench_train_reid_part_times_the_baseline_and_sgsfa(capsys):
    bench = _load_bench()
    rows_out = bench.main(["--configs", "--iters", "1", "--warmup", "0", "--threads", "1"])
    assert [r["model"] for r in rows_out] == ["reid", "sgsfa"]
    assert {r["task"] for r in rows_out} == {"reid"}
    for r in rows_out:
        assert math.isfinite(r["train_ips"]) and r["train_ips"] > 0
        assert math.isfinite(r["infer_ips"]) and r["infer_ips"] > 0
    speeds = {r["model"]: r for r in rows_out}
    assert speeds["sgsfa"]["params_m"] > speeds["reid"]["params_m"]  # attentions + branches
    header, rows = _printed_rows(capsys.readouterr().out)
    ratios = [i for i, h in enumerate(header) if h == "x reid"]
    assert len(ratios) == 2 and [rows["reid"][i] for i in ratios] == ["1.00", "1.00"]
    for name, key in zip(("train_ips", "infer_ips"), ratios):
        expected = speeds["sgsfa"][name] / speeds["reid"][name]
        assert float(rows["sgsfa"][key]) == pytest.approx(expected, abs=0.006)


def test_synthetic_crops_carry_part_masks_of_a_standing_person():
    bench = _load_bench()
    crops = bench.synthetic_crops(4, np.random.default_rng(0), size=(64, 32), ids=2, parts=4)
    assert [c["person_id"] for c in crops] == [0, 1, 0, 1]
    for c in crops:
        masks = c["part_masks"]
        assert tuple(c["image"].shape) == (3, 64, 32) and masks.shape == (5, 64, 32)
        assert (masks[1:].sum(0) == masks[0]).all() and masks[0].sum() > 0  # disjoint parts
        rows = [int(m.amax(1).nonzero().min()) for m in masks[1:]]
        assert rows == sorted(rows)  # head above upper body above lower body above shoes
    assert (
        "part_masks"
        not in bench.synthetic_crops(1, np.random.default_rng(0), size=(64, 32), ids=1, parts=0)[0]
    )
