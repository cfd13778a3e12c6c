"""Indexing sharded over two processes (the process group Detectron2's ``launch`` sets up, here
on CPU with gloo: ``launch`` itself needs CUDA) gives the index one process gives."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from footage_testutils import tiny_cfg

from person_search.footage import FootageIndex, index_footage
from person_search.footage.index_format import DETECTION_FILES, INDEX_FILE, read_json


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _index_worker(rank: int, world: int, port: int, weights: str, inputs, out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=world, rank=rank
    )
    torch.set_num_threads(1)
    try:
        cfg = tiny_cfg(weights, "FOOTAGE.CHUNK_SIZE", "2")
        index_footage(cfg, inputs, out, show_progress=False)
        # Again, on the complete index: every process returns at once (none waits for work).
        again = index_footage(cfg, inputs, out, show_progress=False)
        assert (again is None) == (rank != 0)
        # Both done before either tears its gloo connections down (a rank leaving while the
        # other still holds the group can abort the process: "terminate called without an
        # active exception", seen once in CI).
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_build_the_single_process_index(
    tiny_cuhk_root, trained_weights, tmp_path, single_thread
):
    source = os.path.join(tiny_cuhk_root, "toy_cuhk_sysu", "Image", "SSM")
    folder = tmp_path / "cam_a"
    folder.mkdir()
    for name in sorted(os.listdir(source))[:9]:
        shutil.copy(os.path.join(source, name), folder / name)
    inputs = [str(folder)]
    sharded = str(tmp_path / "sharded")
    mp.spawn(
        _index_worker,
        args=(2, _free_port(), trained_weights, inputs, sharded),
        nprocs=2,
        join=True,
    )
    single = str(tmp_path / "single")
    index_footage(
        tiny_cfg(trained_weights, "FOOTAGE.CHUNK_SIZE", "2"), inputs, single, show_progress=False
    )
    report = read_json(os.path.join(sharded, INDEX_FILE), "index")["report"]
    # 5 chunks (2, 2, 2, 2, 1 frames) dealt in turn: rank 0 computed chunks 0, 2, 4.
    assert report["frames_computed_by_main_process"] == 5
    for name in [*DETECTION_FILES.values(), "frames.npz", "manifest.json"]:
        assert (Path(sharded) / name).read_bytes() == (Path(single) / name).read_bytes(), name
    assert len(FootageIndex.load(sharded)) == len(FootageIndex.load(single)) > 0
    assert np.isfinite(FootageIndex.load(sharded).scores).all()
