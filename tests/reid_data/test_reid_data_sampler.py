"""PKSampler (P x K property, determinism, sharding) and the re-id loaders."""

from __future__ import annotations

import itertools
import os
from collections import Counter

import pytest
import torch

from person_search.config import get_cfg
from person_search.data import build_reid_test_loader, build_reid_train_loader
from person_search.data.samplers import PKSampler
from person_search.data.toy.reid_writer import write_market1501

# 7 identities; id 3 has a single image, id 5 has two (< K = 4)
PIDS = [0] * 9 + [1] * 6 + [2] * 4 + [3] + [4] * 5 + [5] * 2 + [6] * 8


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_pk_batches():
    p, k = 3, 4
    sampler = PKSampler(PIDS, p * k, k, seed=0, rank=0, world_size=1)
    stream = _take(sampler, 40 * p * k)
    for b in range(40):
        batch = stream[b * p * k : (b + 1) * p * k]
        chunks = [batch[i * k : (i + 1) * k] for i in range(p)]
        ids = [{PIDS[i] for i in c} for c in chunks]
        assert all(len(s) == 1 for s in ids)  # each chunk of K is one identity
        assert len({next(iter(s)) for s in ids}) == p  # P distinct identities
    seen = Counter(PIDS[i] for i in stream)
    assert set(seen) == set(PIDS)  # small identities (sampled with replacement) appear too


def test_deterministic_per_seed():
    a = _take(PKSampler(PIDS, 8, 4, seed=5, rank=0, world_size=1), 200)
    b = _take(PKSampler(PIDS, 8, 4, seed=5, rank=0, world_size=1), 200)
    c = _take(PKSampler(PIDS, 8, 4, seed=6, rank=0, world_size=1), 200)
    assert a == b and a != c


def test_distributed_shards_whole_identities():
    p, k, world = 4, 2, 2
    full = _take(PKSampler(PIDS, p * k, k, seed=1, rank=0, world_size=1), 10 * p * k)
    local = [
        _take(PKSampler(PIDS, p * k, k, seed=1, rank=r, world_size=world), 10 * p * k // world)
        for r in range(world)
    ]
    per_rank = p * k // world
    for b in range(10):
        global_batch = full[b * p * k : (b + 1) * p * k]
        parts = [lr[b * per_rank : (b + 1) * per_rank] for lr in local]
        assert sorted(parts[0] + parts[1]) == sorted(global_batch)
        for part in parts:
            assert len({PIDS[i] for i in part}) == p // world


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_started_at_an_iteration_serves_the_next_batches(workers):
    """A resumed run (start_iter = i) reads what the uninterrupted run read from batch i on,
    across passes over the data, with and without loader workers."""
    k, batch = 2, 8
    full = [
        [d["index"] for d in b]
        for b in itertools.islice(
            build_reid_train_loader(
                _records(), mapper=dict, total_batch_size=batch, num_instances=k, seed=4
            ),
            30,  # several passes: one pass has at most 35 // 2 // 4 = 4 batches
        )
    ]
    resumed = build_reid_train_loader(
        _records(),
        mapper=dict,
        total_batch_size=batch,
        num_instances=k,
        num_workers=workers,
        seed=4,
        start_iter=11,
    )
    assert [[d["index"] for d in b] for b in itertools.islice(resumed, 19)] == full[11:]
    # per rank too: rank r of a resumed run continues rank r's stream
    for rank in range(2):
        whole = _take(PKSampler(PIDS, 8, 2, seed=4, rank=rank, world_size=2), 4 * 20)
        later = _take(PKSampler(PIDS, 8, 2, seed=4, rank=rank, world_size=2, start_batch=7), 52)
        assert later == whole[4 * 7 :]


def test_sampler_errors():
    with pytest.raises(ValueError, match="multiple"):
        PKSampler(PIDS, 10, 4, seed=0, rank=0, world_size=1)
    with pytest.raises(ValueError, match="only 7"):
        PKSampler(PIDS, 32, 4, seed=0, rank=0, world_size=1)
    with pytest.raises(ValueError, match="world size"):
        PKSampler(PIDS, 12, 4, seed=0, rank=0, world_size=2)
    with pytest.raises(ValueError, match="start_batch must be >= 0"):
        PKSampler(PIDS, 8, 4, seed=0, rank=0, world_size=1, start_batch=-1)


def _records():
    return [
        {"file_name": f"{i}.jpg", "image_id": f"{i}.jpg", "person_id": pid, "index": i}
        for i, pid in enumerate(PIDS)
    ]


@pytest.mark.parametrize("workers", [0, 2])
def test_train_loader_batches_with_workers(workers):
    loader = build_reid_train_loader(
        _records(), mapper=dict, total_batch_size=8, num_instances=4, num_workers=workers, seed=3
    )
    batches = [[d["index"] for d in b] for b in itertools.islice(loader, 6)]
    reference = _take(PKSampler(PIDS, 8, 4, seed=3, rank=0, world_size=1), 48)
    # worker sharding by whole batches keeps the single-process order
    assert sum(batches, []) == reference


def test_loaders_from_config_on_toy(tmp_path, monkeypatch):
    write_market1501(
        str(tmp_path / "toy_market1501"),
        0,
        num_ids=6,
        num_cameras=2,
        height=32,
        width=16,
        num_distractors=1,
        num_junk=1,
    )
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("toy_market1501_train",)
    cfg.INPUT.REID.SIZE_TRAIN = (32, 16)
    cfg.INPUT.REID.SIZE_TEST = (32, 16)
    cfg.INPUT.REID.LOAD_PARSING = True
    cfg.INPUT.REID.PARSING_PART_NAMES = ("head", "upper", "lower", "shoes")
    cfg.INPUT.REID.PARSING_GROUPS = ((13,), (5,), (9,), (18,))  # the toy set's LIP labels
    cfg.SOLVER.IMS_PER_BATCH = 6
    cfg.DATALOADER.NUM_INSTANCES = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 0
    batch = next(iter(build_reid_train_loader(cfg)))
    assert len(batch) == 6
    assert len({d["person_id"] for d in batch}) == 3
    assert all(d["image"].shape == (3, 32, 16) and d["image"].dtype == torch.uint8 for d in batch)
    assert all(d["part_masks"].shape == (5, 32, 16) for d in batch)
    cfg.TEST.REID.IMS_PER_BATCH = 4
    test_loader = build_reid_test_loader(cfg, "toy_market1501_test")
    seen = [d["image_id"] for b in test_loader for d in b]
    assert all(len(b) <= 4 for b in test_loader)
    assert len(seen) == len(set(seen)) and {d["split"] for b in test_loader for d in b} == {
        "query",
        "gallery",
    }
    # a training image whose map is gone stops the loader's construction, naming it, unless
    # the config allows images without maps
    parsing_dir = tmp_path / "toy_market1501" / "parsing" / "bounding_box_train"
    gone = sorted(os.listdir(parsing_dir))[0]
    os.remove(parsing_dir / gone)
    with pytest.raises(FileNotFoundError, match=gone):
        build_reid_train_loader(cfg)
    cfg.INPUT.REID.ALLOW_MISSING_PARSING = True
    assert len(next(iter(build_reid_train_loader(cfg)))) == 6
