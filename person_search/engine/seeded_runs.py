"""Seeded training runs for the projects' toy comparisons (``projects/*/tools/compare_toy.py``):
one config trained from scratch per seed, no periodic evaluation, and the mean ± spread cell of
a README table. The runs are the library's training, with the seed as the only change."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from detectron2.config import CfgNode
from detectron2.utils.env import seed_all_rng

from .defaults import load_config
from .schedule import resolve_schedule
from .trainer import Trainer
from .trainers import get_trainer_class

__all__ = [
    "comparison_argument_parser",
    "mean_std",
    "parse_comparison_args",
    "seeded_config",
    "train_from_scratch",
]


def seeded_config(
    config_file: str,
    seed: int,
    output_dir: str,
    overrides: Sequence[str] = (),
    add_config: Callable[[CfgNode], None] | None = None,
) -> CfgNode:
    """The frozen config of one seeded run: ``config_file`` with ``SEED`` = ``seed``, then
    ``overrides`` (``KEY VALUE`` pairs), ``OUTPUT_DIR`` = ``output_dir`` and no periodic
    evaluation (``TEST.EVAL_PERIOD`` 0: Detectron2's EvalHook still evaluates after the last
    iteration); epoch schedules resolved to iterations."""
    cfg = load_config(
        config_file,
        ["SEED", str(seed), *overrides, "OUTPUT_DIR", output_dir, "TEST.EVAL_PERIOD", "0"],
        add_config,
    )
    cfg = resolve_schedule(cfg)
    cfg.freeze()
    return cfg


def train_from_scratch(
    cfg: CfgNode, trainer_cls: type[Trainer] | None = None
) -> tuple[Trainer, float]:
    """Train ``cfg`` from its initial weights (no resume) with every RNG seeded by
    ``cfg.SEED``; returns the trainer (its model, and the end-of-training evaluation in
    ``_last_eval_results``) and the training time in seconds. ``trainer_cls``: None = the
    trainer of the config's ``TASK``."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    seed_all_rng(cfg.SEED)
    trainer = (trainer_cls or get_trainer_class(cfg))(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    return trainer, time.perf_counter() - start


def mean_std(values: Sequence[float]) -> str:
    """``"mean ± sample standard deviation"`` with one decimal (the spread of one value is
    undefined: ``nan``)."""
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def comparison_argument_parser(description: str, default_output: str) -> argparse.ArgumentParser:
    """The command line of a toy comparison: ``--output``, ``--seeds`` (default 0 1 2),
    ``--threads`` (0: torch's default) and trailing ``KEY VALUE`` overrides for every model
    (after ``--`` when an option with several values precedes them). A script adds its own
    options (e.g. ``--models``) and parses with :func:`parse_comparison_args`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", default=default_output, help="output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every model (after --)"
    )
    return parser


def parse_comparison_args(
    parser: argparse.ArgumentParser, argv: list[str] | None = None
) -> argparse.Namespace:
    """Parse ``argv``; a leading ``--`` of the overrides is the separator, not an override;
    ``--threads`` is applied to torch."""
    args = parser.parse_args(argv)
    args.opts = args.opts[1:] if args.opts[:1] == ["--"] else args.opts
    if args.threads:
        torch.set_num_threads(args.threads)
    return args
