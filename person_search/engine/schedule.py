"""Training schedules given in epochs (``SOLVER.SCHEDULE_UNIT: "epoch"``) as iterations."""

from __future__ import annotations

import logging
import math

from detectron2.config import CfgNode

__all__ = ["SCHEDULE_UNITS", "count_training_images", "resolve_schedule"]

logger = logging.getLogger(__name__)

# Supported values of SOLVER.SCHEDULE_UNIT.
SCHEDULE_UNITS = ("iter", "epoch")


def count_training_images(cfg: CfgNode) -> int:
    """Images one epoch visits: the dicts of ``DATASETS.TRAIN`` the training loader samples
    from, as counted by the trainer of the config's task (``count_training_images`` of
    :func:`~person_search.engine.trainers.get_trainer_class`; person search: the scene images
    with at least one box; re-id: every crop)."""
    from .trainers import get_trainer_class  # the trainers import this module's package

    total = get_trainer_class(cfg).count_training_images(cfg)
    if total == 0:
        raise ValueError(f"DATASETS.TRAIN={list(cfg.DATASETS.TRAIN)} holds no training image")
    return total


def resolve_schedule(cfg: CfgNode, num_images: int | None = None) -> CfgNode:
    """Return ``cfg`` with an epoch schedule converted to iterations (unchanged for "iter").

    With ``SOLVER.SCHEDULE_UNIT == "epoch"``, ``SOLVER.MAX_ITER``, ``SOLVER.STEPS``,
    ``SOLVER.CHECKPOINT_PERIOD`` and ``TEST.EVAL_PERIOD`` are read as epochs and multiplied by
    ``ceil(num_images / SOLVER.IMS_PER_BATCH)``; the unit becomes "iter". ``num_images``
    defaults to :func:`count_training_images`. ``SOLVER.WARMUP_ITERS`` stays in iterations.
    """
    unit = cfg.SOLVER.SCHEDULE_UNIT
    if unit not in SCHEDULE_UNITS:
        raise ValueError(f"SOLVER.SCHEDULE_UNIT={unit!r} is not one of {SCHEDULE_UNITS}")
    if unit == "iter":
        return cfg
    if num_images is None:
        num_images = count_training_images(cfg)
    iters_per_epoch = math.ceil(num_images / cfg.SOLVER.IMS_PER_BATCH)
    cfg = cfg.clone()
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    epochs = cfg.SOLVER.MAX_ITER
    cfg.SOLVER.MAX_ITER = epochs * iters_per_epoch
    cfg.SOLVER.STEPS = tuple(s * iters_per_epoch for s in cfg.SOLVER.STEPS)
    cfg.SOLVER.CHECKPOINT_PERIOD = cfg.SOLVER.CHECKPOINT_PERIOD * iters_per_epoch
    cfg.TEST.EVAL_PERIOD = cfg.TEST.EVAL_PERIOD * iters_per_epoch
    cfg.SOLVER.SCHEDULE_UNIT = "iter"
    if was_frozen:
        cfg.freeze()
    logger.info(
        f"Epoch schedule: {num_images} images / batch {cfg.SOLVER.IMS_PER_BATCH} = "
        f"{iters_per_epoch} iterations per epoch; {epochs} epochs = {cfg.SOLVER.MAX_ITER} "
        f"iterations, steps at {cfg.SOLVER.STEPS}"
    )
    return cfg
