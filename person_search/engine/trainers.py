"""One trainer class per task: :class:`PersonSearchTrainer` (scene images) and
:class:`ReIDTrainer` (person crops), and :func:`get_trainer_class`, the trainer of a config's
``TASK`` (what ``tools/train_net.py`` builds).

A project subclasses the trainer of its task and overrides Detectron2's builders, e.g.::

    class Trainer(PersonSearchTrainer):
        @classmethod
        def build_train_loader(cls, cfg):
            return build_person_search_train_loader(cfg, mapper=MyMapper(cfg, True))
"""

from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog

from ..data import (
    build_person_search_test_loader,
    build_person_search_train_loader,
    build_reid_test_loader,
    build_reid_train_loader,
)
from ..data.build import get_person_search_train_dicts
from .trainer import Trainer

__all__ = ["TASKS", "TRAINERS", "PersonSearchTrainer", "ReIDTrainer", "get_trainer_class"]


class PersonSearchTrainer(Trainer):
    """The :class:`~.trainer.Trainer` of person search: scene-image loaders of
    :mod:`person_search.data` (mapper: ``INPUT.PERSON_SEARCH_MAPPER``)."""

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        """Infinite loader over ``DATASETS.TRAIN``
        (:func:`~person_search.data.build_person_search_train_loader`)."""
        return build_person_search_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        """Gallery images then queries of ``dataset_name``, batch size 1."""
        return build_person_search_test_loader(cfg, dataset_name)

    @classmethod
    def count_training_images(cls, cfg: CfgNode) -> int:
        """Images one epoch visits: the scene images of ``DATASETS.TRAIN`` with at least one
        box (those :func:`~person_search.data.build.get_person_search_train_dicts` keeps)."""
        return len(get_person_search_train_dicts(cfg.DATASETS.TRAIN)[0])


class ReIDTrainer(Trainer):
    """The :class:`~.trainer.Trainer` of re-id: P x K training batches and batched inference
    over query + gallery crops (:mod:`person_search.data.reid_build`)."""

    @classmethod
    def data_stream_seed(cls, cfg: CfgNode) -> int:
        """``DATALOADER.SEED`` when >= 0, else ``SEED`` when >= 0, else a shared random seed."""
        if cfg.DATALOADER.SEED < 0 and cfg.SEED >= 0:
            return int(cfg.SEED)
        return super().data_stream_seed(cfg)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        """Infinite P x K loader over ``DATASETS.TRAIN``
        (:func:`~person_search.data.build_reid_train_loader`)."""
        return build_reid_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        """Every query and gallery crop of ``dataset_name`` once, ``TEST.REID.IMS_PER_BATCH``."""
        return build_reid_test_loader(cfg, dataset_name)

    @classmethod
    def count_training_images(cls, cfg: CfgNode) -> int:
        """Images one epoch visits: every crop of ``DATASETS.TRAIN``."""
        return sum(len(DatasetCatalog.get(name)) for name in cfg.DATASETS.TRAIN)


# The trainer of each value of cfg.TASK.
TRAINERS: dict[str, type[Trainer]] = {"person_search": PersonSearchTrainer, "reid": ReIDTrainer}
# Supported values of cfg.TASK.
TASKS = tuple(TRAINERS)


def get_trainer_class(cfg: CfgNode) -> type[Trainer]:
    """The trainer class of ``cfg.TASK`` (:data:`TRAINERS`).

    Raises:
        ValueError: ``TASK`` is not a known task (names it and the known ones).
    """
    if cfg.TASK not in TRAINERS:
        raise ValueError(f"TASK={cfg.TASK!r} is not one of {TASKS}")
    return TRAINERS[cfg.TASK]
