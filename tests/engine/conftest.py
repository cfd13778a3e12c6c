"""Fixtures of the engine tests: a tiny toy PRW and one uninterrupted tools/train_net.py run."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import torch
from engine_testutils import (
    FULL_RUN_ITERS,
    OIM_TOY_CONFIG,
    TINY_OVERRIDES,
    TINY_PRW_SIZES,
    describe,
    run_train_net,
    train_args,
)

import person_search  # noqa: F401  (compat layer, registers the datasets)
from person_search.data.toy import make_toy_dataset
from person_search.engine import load_config


@pytest.fixture(scope="session")
def tiny_datasets_root(tmp_path_factory) -> str:
    """A DETECTRON2_DATASETS root holding ``toy_prw`` (tiny, seed 0)."""
    root = tmp_path_factory.mktemp("engine_datasets")
    make_toy_dataset("prw", str(root / "toy_prw"), 0, **TINY_PRW_SIZES)
    return str(root)


@pytest.fixture(scope="session")
def full_run(tiny_datasets_root, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """(OUTPUT_DIR, finished process) of an uninterrupted tiny OIM training run."""
    out = tmp_path_factory.mktemp("full_run")
    start = time.perf_counter()
    proc = run_train_net(train_args(out), tiny_datasets_root)
    assert proc.returncode == 0, describe(proc)
    print(f"uninterrupted run of {FULL_RUN_ITERS} iterations: {time.perf_counter() - start:.1f} s")
    return out, proc


@pytest.fixture
def single_thread():
    """Run an in-process test on one intra-op thread (on a busy shared machine two threads
    make small convolutions many times slower). Restores the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_cfg(tiny_datasets_root, monkeypatch, tmp_path):
    """The tiny OIM training config (as the subprocess runs use), OUTPUT_DIR in tmp_path, with
    DETECTRON2_DATASETS pointing at the tiny toy PRW."""
    monkeypatch.setenv("DETECTRON2_DATASETS", tiny_datasets_root)
    cfg = load_config(str(OIM_TOY_CONFIG), TINY_OVERRIDES)
    cfg.OUTPUT_DIR = str(tmp_path / "output")
    return cfg
