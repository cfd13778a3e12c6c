"""Entry-point helpers: config set-up and the train / evaluate main used by every
``train_net.py`` of the library and its projects."""

from __future__ import annotations

import argparse
import logging

from detectron2.config import CfgNode
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm

from ..config import get_cfg
from .checkpoint import PersonSearchCheckpointer
from .schedule import resolve_schedule
from .trainer import Trainer

__all__ = ["default_argument_parser", "launch", "load_config", "main", "setup"]


def load_config(config_file: str, opts: list[str] | None = None) -> CfgNode:
    """``get_cfg()`` merged with ``config_file`` then ``opts`` (KEY VALUE pairs).

    An unknown key in either raises Detectron2's ``KeyError`` ("Non-existent config key").
    """
    cfg = get_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts or []))
    return cfg


def setup(args: argparse.Namespace, add_config=None) -> CfgNode:
    """Config from ``args.config_file`` and ``args.opts``, epoch schedules converted to
    iterations, frozen; then Detectron2's ``default_setup`` (logging, environment dump,
    ``config.yaml`` in ``OUTPUT_DIR``, seeding).

    Args:
        add_config: optional ``f(cfg)`` adding a project's keys before merging.
    """
    cfg = get_cfg()
    if add_config is not None:
        add_config(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg = resolve_schedule(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args: argparse.Namespace, trainer_cls: type[Trainer] = Trainer, add_config=None):
    """Train (``--resume`` continues the run in ``OUTPUT_DIR``) or, with ``--eval-only``,
    evaluate ``MODEL.WEIGHTS`` (or the last checkpoint with ``--resume``) on DATASETS.TEST."""
    cfg = setup(args, add_config)
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        PersonSearchCheckpointer.from_config(cfg, model, cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = trainer_cls.test(cfg, model)
        if comm.is_main_process():
            logging.getLogger(__name__).info(f"Evaluation results: {results}")
        return results
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()
