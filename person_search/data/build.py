"""Data loaders for person search (scene images), wrapping Detectron2's loader builders.

``MAPPER_REGISTRY`` holds the dataset mappers a config can select with
``INPUT.PERSON_SEARCH_MAPPER``.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.utils.data as torchdata
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.data.build import build_detection_test_loader, build_detection_train_loader
from detectron2.data.common import AspectRatioGroupedDataset, DatasetFromList
from detectron2.utils import comm
from detectron2.utils.registry import Registry

from ..utils.registry import get_registered
from .datasets import apply_data_config, get_num_person_ids
from .samplers import ResumableTrainingSampler

__all__ = [
    "ITERATION_KEY",
    "MAPPER_REGISTRY",
    "build_person_search_mapper",
    "build_person_search_test_loader",
    "build_person_search_train_loader",
    "get_person_search_train_dicts",
]

logger = logging.getLogger(__name__)

MAPPER_REGISTRY = Registry("PERSON_SEARCH_MAPPER")
MAPPER_REGISTRY.__doc__ = """
Registry for person-search dataset mappers: a callable turning one dataset dict into the model's
input dict. The registered object is called with ``obj(cfg, is_train)``. Training dicts carry
``ITERATION_KEY`` ("train_iteration"), the iteration whose batch drew them (for augmentations
seeded per iteration and image, e.g. MGRO).
"""

# Key of the training iteration in the dataset dicts the training loader hands to the mapper.
ITERATION_KEY = "train_iteration"


def build_person_search_mapper(cfg: CfgNode, is_train: bool):
    """The mapper named by ``cfg.INPUT.PERSON_SEARCH_MAPPER``, built with ``(cfg, is_train)``."""
    name = cfg.INPUT.PERSON_SEARCH_MAPPER
    return get_registered(MAPPER_REGISTRY, name, "INPUT.PERSON_SEARCH_MAPPER")(cfg, is_train)


def get_person_search_train_dicts(names: list[str] | tuple[str, ...]) -> tuple[list[dict], int]:
    """Load and concatenate training datasets; drop images without any box.

    Images whose persons are all unlabelled (``person_id`` -1) are kept: they still train the
    detector and serve as negatives. With several datasets, labelled ``person_id`` of the k-th
    dataset are offset by the identity counts of the datasets before it.

    Returns:
        the dataset dicts and the total number of labelled identities.
    """
    if not names:
        raise ValueError("DATASETS.TRAIN is empty: no person-search training dataset given")
    all_dicts: list[dict] = []
    offset = 0
    for name in names:
        dicts = DatasetCatalog.get(name)
        try:
            num_person_ids = get_num_person_ids(name)
        except ValueError as e:
            raise ValueError(f"{e}: not a person-search training set") from e
        if offset:
            dicts = copy.deepcopy(dicts)
            for record in dicts:
                for anno in record.get("annotations", ()):
                    if anno["person_id"] >= 0:
                        anno["person_id"] += offset
        kept = [d for d in dicts if d.get("annotations")]
        if len(kept) < len(dicts):
            logger.info("%s: dropped %d images without boxes", name, len(dicts) - len(kept))
        all_dicts.extend(kept)
        offset += num_person_ids
    if not all_dicts:
        raise ValueError(f"datasets {list(names)} hold no image with a box")
    return all_dicts, offset


class _IterationTaggedStream(torchdata.IterableDataset):
    """The dataset dicts in the order of an index stream, each a fresh copy carrying
    ``ITERATION_KEY``: the iteration whose batch drew it (its position in this process's
    stream // images per process and batch). Shards the stream over data-loading workers as
    Detectron2's ``ToIterableDataset`` does (worker ``w`` takes positions ``w, w + n, ...``)."""

    def __init__(
        self, dataset: DatasetFromList, sampler: ResumableTrainingSampler, images_per_batch: int
    ):
        self.dataset = dataset
        self.sampler = sampler
        self.images_per_batch = images_per_batch

    def __iter__(self) -> Iterator[dict]:
        stream: Iterable = enumerate(self.sampler, start=self.sampler.start)
        info = torchdata.get_worker_info()
        if info is not None and info.num_workers > 1:
            stream = itertools.islice(stream, info.id, None, info.num_workers)
        for position, index in stream:
            record = self.dataset[index]
            record[ITERATION_KEY] = position // self.images_per_batch
            yield record


def build_person_search_train_loader(
    cfg: CfgNode, *, mapper: Callable[[dict], dict] | None = None
) -> Iterable[list[dict]]:
    """Infinite training loader over ``cfg.DATASETS.TRAIN``, batches of
    ``SOLVER.IMS_PER_BATCH`` mapped dicts (see :func:`get_person_search_train_dicts`).

    The index stream (Detectron2's ``TrainingSampler``) is ``DATALOADER.SEED``'s (-1: a random
    seed shared by all processes, Detectron2's default; after ``default_setup`` it follows
    ``SEED``), started at iteration ``DATALOADER.START_ITER``: it skips the
    ``START_ITER * SOLVER.IMS_PER_BATCH / world size`` indices this process read before
    (resuming). The batches then continue the interrupted run's exactly when aspect-ratio
    grouping holds no image back (``DATALOADER.ASPECT_RATIO_GROUPING`` False, or all images on
    the same side of square: toy data, PRW); otherwise up to one batch per orientation is
    regrouped. The loader never draws from the global torch RNG. Every dict reaches the mapper
    with ``ITERATION_KEY``.

    Args:
        mapper: the mapper (default: ``INPUT.PERSON_SEARCH_MAPPER`` in training mode).
    """
    apply_data_config(cfg)
    dicts, num_ids = get_person_search_train_dicts(cfg.DATASETS.TRAIN)
    logger.info("person-search train set: %d images, %d identities", len(dicts), num_ids)
    sampler_name = cfg.DATALOADER.SAMPLER_TRAIN
    if sampler_name != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN={sampler_name!r}: person-search training supports only "
            "'TrainingSampler'"
        )
    start_iter = cfg.DATALOADER.START_ITER
    if start_iter < 0:
        raise ValueError(f"DATALOADER.START_ITER must be >= 0, got {start_iter}")
    seed = cfg.DATALOADER.SEED if cfg.DATALOADER.SEED >= 0 else None
    per_process = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
    sampler = ResumableTrainingSampler(len(dicts), seed=seed, start=start_iter * per_process)
    stream = _IterationTaggedStream(DatasetFromList(dicts, copy=False), sampler, per_process)
    loader = build_detection_train_loader(
        stream,
        mapper=build_person_search_mapper(cfg, True) if mapper is None else mapper,
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
    # PyTorch's loader draws its workers' base seed when an iterator is created (lazily, at
    # the first batch, under aspect-ratio grouping): from a generator of its own (one per
    # process), not from the global RNG, so that when the first batch is drawn does not shift
    # the model's randomness.
    torch_loader = loader.dataset if isinstance(loader, AspectRatioGroupedDataset) else loader
    torch_loader.generator = torch.Generator().manual_seed(sampler.seed + comm.get_rank())
    return loader


def build_person_search_test_loader(
    cfg: CfgNode, dataset_name: str, *, mapper: Callable[[dict], dict] | None = None
):
    """Loader (batch size 1, each item once) over a person-search test dataset: its gallery
    images then its queries. Loading the dataset checks its search protocol (every protocol
    file, before any inference).

    Args:
        mapper: the mapper (default: ``INPUT.PERSON_SEARCH_MAPPER`` in test mode).
    """
    apply_data_config(cfg)
    dicts = DatasetCatalog.get(dataset_name)
    return build_detection_test_loader(
        dicts,
        mapper=build_person_search_mapper(cfg, False) if mapper is None else mapper,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
