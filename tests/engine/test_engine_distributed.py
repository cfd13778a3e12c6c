"""Distributed training and evaluation on CPU: two processes (gloo) train the tiny OIM model for
2 iterations and evaluate it on the toy PRW test set; both keep identical weights and OIM
memories, and the gathered metrics equal a single-process evaluation of the same weights."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from engine_testutils import OIM_TOY_CONFIG, TINY_OVERRIDES

from person_search.engine import PersonSearchCheckpointer, PersonSearchTrainer, load_config
from person_search.evaluation.person_search_evaluator import RESULTS_FILE

WORLD_SIZE = 2
TEST_SET = "toy_prw_test"
# The model keeps its detections down to a score of 1e-3 (300 proposals) and the evaluator counts
# them all, so that the 2-iteration model's metrics are not all zero. The model's keys are set
# when it is built: the same in the training processes and in the single-process evaluation.
MODEL_TEST_SETTINGS = (
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.001",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "300",
)  # fmt: skip


def _config(output_dir: str, *extra: str):
    # BatchNorm running statistics are rank-local under DDP (broadcast_buffers=False, as
    # Detectron2's): with Detectron2's synchronised BatchNorm in the backbone and none in the
    # embedding every buffer is shared, so all processes hold the very same model (the OIM
    # memory is gathered across processes).
    overrides = [
        *TINY_OVERRIDES,
        "MODEL.RESNETS.NORM", "naiveSyncBN",
        "MODEL.PERSON_SEARCH.EMBEDDING_NORM", "False",
        "SOLVER.IMS_PER_BATCH", str(WORLD_SIZE),  # one image per process
        "SOLVER.MAX_ITER", "2",
        "SOLVER.CHECKPOINT_PERIOD", "100",
        "OUTPUT_DIR", output_dir,
        *MODEL_TEST_SETTINGS,
        *extra,
    ]  # fmt: skip
    cfg = load_config(str(OIM_TOY_CONFIG), overrides)
    cfg.freeze()
    return cfg


def _eval_config(output_dir: str):
    return _config(
        output_dir, "DATASETS.TEST", f"('{TEST_SET}',)", "TEST.PERSON_SEARCH.DET_THRESH", "0.0"
    )


def _worker(rank: int, init_file: str, datasets_root: str, out_dir: str) -> None:
    """One process of the run: train, evaluate, write its weights (and rank 0 the metrics)."""
    os.environ["DETECTRON2_DATASETS"] = datasets_root
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE
    )
    comm._LOCAL_PROCESS_GROUP = dist.new_group(list(range(WORLD_SIZE)))  # as launch() does
    import person_search  # noqa: F401  (registers the datasets in this process)

    seed_all_rng(rank)  # as default_setup does with SEED 0: the run is reproducible

    trainer = PersonSearchTrainer(_config(os.path.join(out_dir, "train")))
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = trainer.model.module  # wrapped in DistributedDataParallel
    results = PersonSearchTrainer.test(_eval_config(os.path.join(out_dir, "eval")), trainer.model)
    torch.save(model.state_dict(), os.path.join(out_dir, f"weights_rank{rank}.pth"))
    if rank == 0:
        with open(os.path.join(out_dir, "metrics.json"), "w") as f:
            json.dump(results, f)
    comm.synchronize()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_cpu_processes_train_and_gather_the_single_process_metrics(
    tiny_datasets_root, tmp_path, monkeypatch
):
    out = str(tmp_path)
    mp.spawn(
        _worker,
        args=(str(tmp_path / "dist_init"), tiny_datasets_root, out),
        nprocs=WORLD_SIZE,
        join=True,
    )
    weights = [
        torch.load(os.path.join(out, f"weights_rank{r}.pth"), weights_only=True)
        for r in range(WORLD_SIZE)
    ]
    # DDP kept the weights equal; the OIM memory was updated with both processes' features.
    assert [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])] == []
    assert weights[0]["roi_heads.reid_loss.lut"].any()
    assert int(weights[0]["roi_heads.reid_loss.queue_ptr"]) > 0
    with open(os.path.join(out, "metrics.json")) as f:
        gathered = json.load(f)

    # The same weights evaluated by this single process.
    monkeypatch.setenv("DETECTRON2_DATASETS", tiny_datasets_root)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = _eval_config(os.path.join(out, "single"))
        model = PersonSearchTrainer.build_model(cfg)
        PersonSearchCheckpointer(model).load(os.path.join(out, "weights_rank0.pth"), [])
        single = PersonSearchTrainer.test(cfg, model)
    finally:
        torch.set_num_threads(previous)
    assert set(gathered) == {"search", "detection"}
    assert gathered["search"]["mAP"] > 0  # seeded run: 1.5
    assert json.loads(json.dumps(single)) == gathered
    # The 2-iteration model's metrics are ~0: compare what they are computed from too, every
    # detection (box, score, embedding) of every gallery image and every query embedding.
    saved = [
        torch.load(os.path.join(d, "inference", TEST_SET, RESULTS_FILE), weights_only=False)
        for d in (os.path.join(out, "eval"), os.path.join(out, "single"))
    ]
    assert len(saved[0]["detections"]["scores"]) > 0
    _assert_same(saved[0], saved[1])


def _assert_same(a, b, path: str = "") -> None:
    """Recursive exact equality of nested dicts / lists of tensors, arrays and plain values."""
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif path.endswith("output_dir"):
        return
    else:
        assert a == b, path
