"""Data loaders for re-id: P x K training batches and batched inference over query + gallery."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.utils.data as torchdata
from detectron2.config import configurable
from detectron2.data import DatasetCatalog
from detectron2.data.build import build_batch_data_loader, trivial_batch_collator
from detectron2.data.common import DatasetFromList, MapDataset, ToIterableDataset
from detectron2.data.samplers import InferenceSampler
from detectron2.utils import comm

from .reid_mapper import build_reid_mapper, check_parsing_files
from .samplers import PKSampler

__all__ = ["build_reid_test_loader", "build_reid_train_loader", "get_reid_dataset_dicts"]


def get_reid_dataset_dicts(names: str | Sequence[str]) -> list[dict]:
    """Concatenate registered re-id datasets.

    Person ids of the second and later datasets are shifted past those of the previous ones, so
    that ids of different datasets never collide (training ids stay 0..N-1 overall); the original
    id of every dict is kept under ``"original_person_id"`` when the loader set it.
    """
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("no re-id dataset given (DATASETS.TRAIN / DATASETS.TEST is empty)")
    out: list[dict] = []
    offset = 0
    for name in names:
        dicts = DatasetCatalog.get(name)
        if not dicts:
            raise ValueError(f"re-id dataset {name!r} is empty")
        if offset:
            dicts = [dict(d, person_id=d["person_id"] + offset) for d in dicts]
        out.extend(dicts)
        offset = max(d["person_id"] for d in out) + 1
    return out


def _train_loader_from_config(cfg, *, mapper=None, dataset=None) -> dict:
    if dataset is None:
        dataset = get_reid_dataset_dicts(cfg.DATASETS.TRAIN)
    if cfg.INPUT.REID.LOAD_PARSING:  # fail before training, naming the images without maps
        check_parsing_files(dataset, allow_missing=cfg.INPUT.REID.ALLOW_MISSING_PARSING)
    if mapper is None:
        mapper = build_reid_mapper(cfg, is_train=True)
    if cfg.DATALOADER.SEED >= 0:  # fixed by the Trainer (saved in checkpoints) or the config
        seed = cfg.DATALOADER.SEED
    else:
        seed = cfg.SEED if cfg.SEED >= 0 else None
    return {
        "dataset": dataset,
        "mapper": mapper,
        "total_batch_size": cfg.SOLVER.IMS_PER_BATCH,
        "num_instances": cfg.DATALOADER.NUM_INSTANCES,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
        "seed": seed,
        "start_iter": cfg.DATALOADER.START_ITER,
    }


@configurable(from_config=_train_loader_from_config)
def build_reid_train_loader(
    dataset: list[dict],
    *,
    mapper: Callable[[dict], dict],
    total_batch_size: int,
    num_instances: int,
    num_workers: int = 0,
    seed: int | None = None,
    start_iter: int = 0,
) -> torchdata.DataLoader:
    """Infinite loader of P x K batches (lists of mapped dicts, ``total_batch_size / world`` each).

    Args:
        dataset: re-id training dicts (``person_id`` 0..N-1).
        mapper: e.g. :class:`ReIDDatasetMapper` (training mode); from a config, the one named
            by ``INPUT.REID.MAPPER``.
        total_batch_size: images per batch over all ranks (``SOLVER.IMS_PER_BATCH``) = P * K.
        num_instances: K (``DATALOADER.NUM_INSTANCES``).
        num_workers: data-loading processes per rank.
        seed: sampler seed (from a config: ``DATALOADER.SEED`` when >= 0, else ``SEED`` when
            >= 0; None: a random seed shared by all ranks).
        start_iter: first iteration served (from a config: ``DATALOADER.START_ITER``): the
            sampler skips that many global batches, so a run resumed at iteration ``i`` with
            the same seed reads what the interrupted run would have read next.
    """
    sampler = PKSampler(
        [d["person_id"] for d in dataset],
        total_batch_size,
        num_instances,
        seed=seed,
        start_batch=start_iter,
    )
    data = MapDataset(DatasetFromList(dataset, copy=False), mapper)
    # The sampler shards itself over workers by whole batches (see PKSampler).
    iterable = ToIterableDataset(data, sampler, shard_sampler=False)
    return build_batch_data_loader(
        iterable, None, total_batch_size, aspect_ratio_grouping=False, num_workers=num_workers
    )


def _test_loader_from_config(cfg, dataset_name: str, *, mapper=None) -> dict:
    return {
        "dataset": get_reid_dataset_dicts(dataset_name),
        "mapper": build_reid_mapper(cfg, is_train=False) if mapper is None else mapper,
        "total_batch_size": cfg.TEST.REID.IMS_PER_BATCH,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
    }


@configurable(from_config=_test_loader_from_config)
def build_reid_test_loader(
    dataset: list[dict],
    *,
    mapper: Callable[[dict], dict],
    total_batch_size: int = 64,
    num_workers: int = 0,
) -> torchdata.DataLoader:
    """Loader over every query and gallery dict once (sharded over ranks by ``InferenceSampler``).

    Yields lists of mapped dicts of at most ``total_batch_size / world`` images, in dataset order
    within a rank. Use with :class:`~person_search.evaluation.ReIDEvaluator`.
    """
    world = comm.get_world_size()
    if total_batch_size <= 0 or total_batch_size % world != 0:
        raise ValueError(
            f"TEST.REID.IMS_PER_BATCH = {total_batch_size} must be a positive multiple of the "
            f"world size {world}"
        )
    data = MapDataset(DatasetFromList(dataset, copy=False), mapper)
    batch_sampler = torchdata.BatchSampler(
        InferenceSampler(len(data)), total_batch_size // world, drop_last=False
    )
    return torchdata.DataLoader(
        data,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        collate_fn=trivial_batch_collator,
    )
