"""Entry-point helpers: config set-up and the train / evaluate main used by every
``train_net.py`` of the library and its projects."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
from collections.abc import Callable

from detectron2.config import CfgNode
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import get_cfg
from ..utils.file_io import atomic_write
from .checkpoint import PersonSearchCheckpointer
from .schedule import resolve_schedule
from .trainer import Trainer
from .trainers import get_trainer_class

__all__ = [
    "EVAL_RESULTS_FILE",
    "default_argument_parser",
    "import_add_config",
    "launch",
    "launch_main",
    "load_config",
    "main",
    "setup",
]

# Where ``--eval-only`` writes its metrics, relative to OUTPUT_DIR.
EVAL_RESULTS_FILE = "eval_results.json"


def load_config(
    config_file: str, opts: list[str] | None = None, add_config: Callable | None = None
) -> CfgNode:
    """``get_cfg()`` (plus ``add_config(cfg)``, a project's keys) merged with ``config_file``,
    then ``opts`` (KEY VALUE pairs).

    Raises:
        FileNotFoundError: ``config_file`` does not exist (names it).
        KeyError: a key of the file or of ``opts`` is not in the config (names the key, and
            the file).
        ValueError: ``opts`` is not a list of KEY VALUE pairs, or a value has the wrong type.
    """
    cfg = get_cfg()
    if add_config is not None:
        add_config(cfg)
    if config_file:
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"config file not found: {config_file!r}")
        try:
            cfg.merge_from_file(config_file)
        except KeyError as e:
            raise KeyError(f"{config_file}: {_message(e)}{_UNKNOWN_KEY_HINT}") from e
    opts = list(opts or [])
    try:
        cfg.merge_from_list(opts)
    except (AssertionError, KeyError) as e:  # yacs asserts on unknown keys and odd lengths
        message = _message(e)
        if "Non-existent" in message:
            raise KeyError(f"command-line override: {message}{_UNKNOWN_KEY_HINT}") from e
        raise ValueError(f"command-line overrides {opts}: {message}") from e
    except ValueError as e:  # type mismatch; yacs names the key
        raise ValueError(f"command-line override: {_message(e)}") from e
    return cfg


def import_add_config(spec: str) -> Callable:
    """A project's ``add_<name>_config`` named ``"module:function"`` (e.g.
    ``"maskguided:add_maskguided_config"``), for tools that load any model's config; ImportError
    / ValueError naming the spec."""
    module_name, sep, function = spec.partition(":")
    if not sep or not module_name or not function:
        raise ValueError(f"add-config {spec!r}: expected MODULE:FUNCTION")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(
            f"add-config {spec!r}: cannot import {module_name!r} ({e}); a project package is "
            "installed with the library (make install) or put on PYTHONPATH (projects/<Name>)"
        ) from e
    if not callable(getattr(module, function, None)):
        raise ValueError(f"add-config {spec!r}: {module_name} has no function {function!r}")
    return getattr(module, function)


_UNKNOWN_KEY_HINT = (
    " (not a key of person_search.config.get_cfg(): misspelt, or a project key whose "
    "add_*_config(cfg) was not applied)"
)


def _message(e: BaseException) -> str:
    return str(e.args[0]) if e.args else str(e)


def setup(args: argparse.Namespace, add_config: Callable | None = None) -> CfgNode:
    """Config from ``args.config_file`` and ``args.opts`` (:func:`load_config`), epoch
    schedules converted to iterations, frozen; then Detectron2's ``default_setup`` (logging,
    environment dump, ``config.yaml`` in ``OUTPUT_DIR``, seeding), the ``person_search``
    logger and the logger of ``add_config``'s package (a project's messages are printed and
    written to ``OUTPUT_DIR/log.txt`` like the library's).

    Args:
        add_config: optional ``f(cfg)`` adding a project's keys before merging.
    """
    cfg = load_config(args.config_file, args.opts, add_config)
    loggers = ["person_search"]
    if add_config is not None:
        package = add_config.__module__.split(".")[0]
        if package not in ("person_search", "__main__"):
            loggers.append(package)
    for name in loggers:
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=name)
    cfg = resolve_schedule(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(
    args: argparse.Namespace,
    trainer_cls: type[Trainer] | None = None,
    add_config: Callable | None = None,
):
    """Train (``--resume`` continues the run in ``OUTPUT_DIR``) or, with ``--eval-only``,
    evaluate ``MODEL.WEIGHTS`` (or the last checkpoint with ``--resume``) on DATASETS.TEST and
    write the metrics to ``OUTPUT_DIR/eval_results.json``.

    Args:
        trainer_cls: the trainer (a project's subclass); None = the trainer of the config's
            ``TASK`` (:func:`~person_search.engine.trainers.get_trainer_class`).
        add_config: a project's ``add_<project>_config(cfg)``.

    Returns:
        ``--eval-only``: the metrics dict (``{task: {metric: value}}``); training: what
        ``Trainer.train`` returns (Detectron2: results only with ``TEST.EXPECTED_RESULTS``).
    """
    cfg = setup(args, add_config)
    if trainer_cls is None:
        trainer_cls = get_trainer_class(cfg)
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        PersonSearchCheckpointer.from_config(cfg, model, cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = trainer_cls.test(cfg, model)
        if comm.is_main_process():
            logging.getLogger(__name__).info(f"Evaluation results: {results}")
            path = os.path.join(cfg.OUTPUT_DIR, EVAL_RESULTS_FILE)
            atomic_write(path, lambda f: json.dump(results, f, indent=2, default=float), "w")
            logging.getLogger(__name__).info(f"Evaluation results written to {path}")
        return results
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def launch_main(
    trainer_cls: type[Trainer] | None = None,
    add_config: Callable | None = None,
    argv: list[str] | None = None,
) -> None:
    """The whole body of a ``train_net.py``: parse Detectron2's command line (``argv``; None =
    ``sys.argv``), print it and run :func:`main` with ``trainer_cls`` and ``add_config`` on
    ``--num-gpus`` processes per machine (Detectron2's ``launch``: ``--num-machines``,
    ``--machine-rank``, ``--dist-url``). In a multi-process run both are pickled by reference,
    so they must be importable (a project's installed package, not the script itself)."""
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args, trainer_cls, add_config),
    )
