"""What the CPU demos (``tools/demo.py``, ``tools/demo_reid.py``) share: the toy data, the
untrained-versus-trained flow, the side-by-side table and the atomically written report.

A demo generates a toy dataset under ``OUTPUT/data`` (once; seeded), points
``$DETECTRON2_DATASETS`` at it, builds the trainer of a config's task
(:func:`~person_search.engine.get_trainer_class`), evaluates the model as initialised, trains
it, evaluates it again, and reports both.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from ..data.toy import make_toy_dataset
from ..utils.file_io import atomic_write
from .defaults import load_config
from .schedule import resolve_schedule
from .trainers import get_trainer_class

__all__ = [
    "DemoRun",
    "DemoSetup",
    "before_after_table",
    "demo_argument_parser",
    "demo_config",
    "demo_report",
    "prepare_demo",
    "ensure_toy_dataset",
    "train_before_after",
    "write_report",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

# Every toy writer leaves this summary in its output folder (written last, inside the atomic
# directory move, so its presence means the folder is complete).
TOY_SUMMARY_FILE = "toy_info.json"
# The market1501 writer records its arguments (the seed among them) here.
TOY_ARGS_FILE = "generation.json"
# Sub-folders of a demo's OUTPUT_DIR holding the evaluations of the untrained / trained model.
UNTRAINED_EVAL_DIR = "inference_untrained"
TRAINED_EVAL_DIR = "inference"


def demo_argument_parser(description: str, default_output: str, default_config: str):
    """The command line both demos take: ``--output``, ``--config-file``, ``--seed``,
    ``--threads`` and trailing ``KEY VALUE`` config overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", default=default_output, help="output folder")
    parser.add_argument("--config-file", default=default_config, help="config (yaml)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the toy data, the initialisation, training"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch's default, one per core; 1 can be faster when "
        "other jobs hold the cores)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


def ensure_toy_dataset(
    data_root: str, dataset_format: str, dir_name: str, seed: int, **sizes: int | float
) -> dict:
    """Generate the toy ``dataset_format`` set in ``data_root/dir_name`` unless it is there.

    Args:
        sizes: size options of the format's writer (e.g. ``num_train_ids``, ``mask_fraction``);
            an existing set must have been generated with the same ones (checked on what its
            summary records).

    Returns:
        the generator's summary (``toy_info.json``) of the set used.

    Raises:
        FileExistsError: the folder exists but is not a complete toy dataset.
        ValueError: the folder holds a toy dataset generated with another seed or sizes.
    """
    out_dir = os.path.join(data_root, dir_name)
    summary_file = os.path.join(out_dir, TOY_SUMMARY_FILE)
    if not os.path.exists(out_dir):
        logger.info(f"Generating the toy {dataset_format} dataset (seed {seed}) in {out_dir}")
        make_toy_dataset(dataset_format, out_dir, seed, **sizes)
    if not os.path.isfile(summary_file):
        raise FileExistsError(
            f"{out_dir} exists but has no {TOY_SUMMARY_FILE}: not a toy dataset written by "
            "tools/make_toy_dataset.py; remove it or choose another --output"
        )
    with open(summary_file) as f:
        summary = json.load(f)
    used_seed = summary.get("seed")
    args_file = os.path.join(out_dir, TOY_ARGS_FILE)
    if used_seed is None and os.path.isfile(args_file):
        with open(args_file) as f:
            used_seed = json.load(f).get("args", {}).get("seed")
    if used_seed is not None and int(used_seed) != seed:
        raise ValueError(
            f"{out_dir} holds a toy dataset generated with seed {used_seed}, not {seed}: remove "
            "it or pass the same --seed"
        )
    for option, value in sizes.items():
        recorded = summary.get(option.removeprefix("num_"))
        if recorded is not None and type(value)(recorded) != value:
            raise ValueError(
                f"{out_dir} holds a toy dataset with {option}={recorded}, this demo needs "
                f"{value}: remove it or choose another --output"
            )
    return summary


def demo_config(
    config_file: str, opts: Sequence[str], *, output_dir: str, seed: int, threads: int = 0
) -> CfgNode:
    """The frozen config of a demo run: ``config_file`` + ``opts``, ``OUTPUT_DIR`` =
    ``output_dir/train``, ``SEED`` = ``seed`` (unless ``opts`` sets it), epochs converted to
    iterations. Also sets up logging into ``OUTPUT_DIR`` and the torch thread count."""
    if threads < 0:
        raise ValueError(f"--threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)
    # --seed first: a SEED in the overrides wins.
    cfg = load_config(config_file, ["SEED", str(seed), *opts])
    cfg.OUTPUT_DIR = os.path.join(output_dir, "train")
    cfg = resolve_schedule(cfg)
    if len(cfg.DATASETS.TEST) != 1:
        raise ValueError(
            f"a demo evaluates one test dataset, DATASETS.TEST is {list(cfg.DATASETS.TEST)}"
        )
    cfg.freeze()
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_logger(output=cfg.OUTPUT_DIR, name="person_search")
    setup_logger(output=cfg.OUTPUT_DIR)
    return cfg


@dataclass
class DemoSetup:
    """What :func:`prepare_demo` readied: the absolute output folder, the toy set's summary,
    the frozen config and the demo's start time (``time.perf_counter()``)."""

    output: str
    dataset: dict
    cfg: CfgNode
    start: float


def prepare_demo(
    args: argparse.Namespace, dataset_format: str, dir_name: str, **sizes: int
) -> DemoSetup:
    """The first steps of both demos, from :func:`demo_argument_parser`'s ``args``: the toy
    ``dataset_format`` set in ``OUTPUT/data/dir_name`` (:func:`ensure_toy_dataset`),
    ``$DETECTRON2_DATASETS`` pointed at ``OUTPUT/data`` (the toy datasets are registered under
    it and read at load time), and the config (:func:`demo_config`)."""
    start = time.perf_counter()
    output = os.path.abspath(args.output)
    data_root = os.path.join(output, "data")
    dataset = ensure_toy_dataset(data_root, dataset_format, dir_name, args.seed, **sizes)
    os.environ["DETECTRON2_DATASETS"] = data_root
    cfg = demo_config(
        args.config_file, args.opts, output_dir=output, seed=args.seed, threads=args.threads
    )
    return DemoSetup(output=output, dataset=dataset, cfg=cfg, start=start)


@dataclass
class DemoRun:
    """Outcome of :func:`train_before_after`.

    Attributes:
        before, after: ``Trainer.test`` results (one test dataset) of the model as initialised
            and as trained.
        before_dir, after_dir: the evaluation output folders (the person-search evaluator
            writes ``search_results.pth`` there).
        train_seconds, before_seconds, after_seconds: wall time of training and of the two
            evaluations.
        iterations: training iterations run.
    """

    before: dict
    after: dict
    before_dir: str
    after_dir: str
    train_seconds: float
    before_seconds: float
    after_seconds: float
    iterations: int


def _evaluate(cfg: CfgNode, model: torch.nn.Module, output_dir: str) -> tuple[dict, float]:
    name = cfg.DATASETS.TEST[0]
    start = time.perf_counter()
    trainer_cls = get_trainer_class(cfg)
    evaluator = trainer_cls.build_evaluator(cfg, name, output_folder=output_dir)
    results = trainer_cls.test(cfg, model, evaluators=[evaluator])
    return results, time.perf_counter() - start


def train_before_after(cfg: CfgNode) -> DemoRun:
    """Seed every RNG with ``cfg.SEED``, build the trainer of the config's task, evaluate the
    initialised model, train, evaluate again. The two evaluations see the very same initial
    weights (the trainer's model), and the random number generators are restored after the
    untrained one, so training is the run ``tools/train_net.py`` would do with the same config
    and seed.

    The trained model is evaluated by the trainer's own end-of-training evaluation (Detectron2's
    ``EvalHook`` always runs one) when that happened, else here.
    """
    name = cfg.DATASETS.TEST[0]
    seed_all_rng(cfg.SEED)
    trainer = get_trainer_class(cfg)(cfg)
    trainer.resume_or_load(resume=False)
    # The test loader draws a seed from torch's RNG: restore every RNG after the untrained
    # evaluation, so that training sees the random numbers it would see without it.
    rng_states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    before_dir = os.path.join(cfg.OUTPUT_DIR, UNTRAINED_EVAL_DIR, name)
    before, before_seconds = _evaluate(cfg, trainer.model, before_dir)
    random.setstate(rng_states[0])
    np.random.set_state(rng_states[1])
    torch.set_rng_state(rng_states[2])

    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start
    after_dir = os.path.join(cfg.OUTPUT_DIR, TRAINED_EVAL_DIR, name)
    last = getattr(trainer, "_last_eval_results", None)
    if last:
        after, after_seconds = last, float("nan")  # timed inside training
    else:
        after, after_seconds = _evaluate(cfg, trainer.model, after_dir)
    return DemoRun(
        before=dict(before),
        after=dict(after),
        before_dir=before_dir,
        after_dir=after_dir,
        train_seconds=elapsed,
        before_seconds=before_seconds,
        after_seconds=after_seconds,
        iterations=cfg.SOLVER.MAX_ITER,
    )


def demo_report(
    args: argparse.Namespace, setup: DemoSetup, run: DemoRun, untrained: dict, trained: dict
) -> dict:
    """The fields of ``report.json`` both demos write: the command (config, overrides, seed),
    iterations and times, the toy set's summary and the untrained / trained results."""
    return {
        "config_file": os.path.abspath(args.config_file),
        "overrides": list(args.opts),
        "seed": args.seed,
        "iterations": run.iterations,
        "train_seconds": round(run.train_seconds, 1),
        "total_seconds": round(time.perf_counter() - setup.start, 1),
        "dataset": setup.dataset,
        "untrained": untrained,
        "trained": trained,
    }


def before_after_table(
    rows: Sequence[tuple[str, float, float]],
    headers: tuple[str, str, str] = ("metric", "untrained", "trained"),
) -> str:
    """Markdown table of ``(metric, before, after)`` rows, values with one decimal and the
    change."""
    lines = [f"| {headers[0]} | {headers[1]} | {headers[2]} | change |", "|---|---:|---:|---:|"]
    for name, before, after in rows:
        lines.append(f"| {name} | {before:.1f} | {after:.1f} | {after - before:+.1f} |")
    return "\n".join(lines)


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    atomic_write(path, lambda f: f.write(text), mode="w")


def write_report(output_dir: str, report: dict, markdown: str) -> tuple[str, str]:
    """Write ``output_dir/report.json`` and ``output_dir/report.md`` atomically; returns both
    paths."""
    json_path = os.path.join(output_dir, "report.json")
    md_path = os.path.join(output_dir, "report.md")
    write_text_atomic(json_path, json.dumps(report, indent=2, default=float) + "\n")
    write_text_atomic(md_path, markdown)
    return json_path, md_path
