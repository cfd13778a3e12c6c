#!/usr/bin/env python
"""Toy rows of the IIDFC README: Table V's steps (HOIM-base, +IRR, +IRR+FC, +IRR+FC+PAM) on the
toy CUHK-SYSU at equal iterations, over several training seeds.

    python projects/IIDFC/tools/compare_toy.py --output output/iidfc_toy --seeds 0 1 2
    python projects/IIDFC/tools/compare_toy.py --output out --seeds 0 --models hoim-base iidfc \
        -- SOLVER.MAX_ITER 50

Generates (once, seed 0) the toy CUHK-SYSU set of ``tools/demo.py`` under
``OUTPUT/data/toy_cuhk_sysu`` (192 labelled training identities over 240 images). For each seed
and model it trains the model's toy config with the library's ``PersonSearchTrainer`` and the
same overrides (``SEED`` = the seed), evaluates the toy test set (CUHK-SYSU protocol, gallery
100) and writes ``OUTPUT/report.json`` and ``OUTPUT/report.md``: search mAP / top-1 and
detection AP / recall, mean and sample standard deviation over the seeds, and the per-seed
values. Every toy config shares the toy HOIM's schedule, sizes and data (checked).
"""

from __future__ import annotations

import os

import person_search  # noqa: F401  (compat layer first: registers datasets, models, evaluators)

# isort: split
from detectron2.utils.logger import setup_logger

from iidfc import add_iidfc_config
from person_search.engine import (
    PersonSearchTrainer,
    comparison_argument_parser,
    mean_std,
    parse_comparison_args,
    seeded_config,
    train_from_scratch,
)
from person_search.engine.demo import ensure_toy_dataset, write_report

_REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
_CONFIGS = os.path.join(_REPO, "projects", "IIDFC", "configs")
# name -> (README label, toy config); Table V's steps, then Table IV's OIM pair (not default).
MODELS = {
    "hoim-base": ("HOIM-base", os.path.join(_REPO, "configs", "hoim", "hoim_toy_cuhk_sysu.yaml")),
    "irr": ("+IRR", os.path.join(_CONFIGS, "ablations", "iidfc_toy_cuhk_sysu_irr.yaml")),
    "irr-fc": ("+IRR+FC", os.path.join(_CONFIGS, "ablations", "iidfc_toy_cuhk_sysu_irr_fc.yaml")),
    "iidfc": ("+IRR+FC+PAM (IIDFC)", os.path.join(_CONFIGS, "iidfc_toy_cuhk_sysu.yaml")),
    "oim": ("OIM", os.path.join(_REPO, "configs", "oim", "oim_toy_cuhk_sysu.yaml")),
    "oim-pam-fc": ("OIM+PAM+FC", os.path.join(_CONFIGS, "oim", "oim_pam_fc_toy_cuhk_sysu.yaml")),
}
DEFAULT_MODELS = ["hoim-base", "irr", "irr-fc", "iidfc"]
TOY_DIR = "toy_cuhk_sysu"  # the folder the toy_cuhk_sysu_* datasets are registered under
# The demo's toy set (tools/demo.py TOY_SIZES): more labelled persons per image than the
# generator's default, so that re-id has something to learn from in a few hundred steps.
TOY_SIZES = {"num_train_ids": 192, "num_train_images": 240}
# (label, results section, key) of the reported metrics.
METRICS = (
    ("search mAP", "search", "mAP"),
    ("search top-1", "search", "top1"),
    ("detection AP", "detection", "AP"),
    ("detection recall", "detection", "recall"),
)


def model_config(name: str, seed: int, output_dir: str, opts: list[str]):
    """The frozen config of model ``name`` trained with ``SEED`` = ``seed`` and ``opts``."""
    cfg = seeded_config(MODELS[name][1], seed, output_dir, opts, add_iidfc_config)
    if len(cfg.DATASETS.TEST) != 1:
        raise ValueError(f"{MODELS[name][1]}: one test dataset expected, got {cfg.DATASETS.TEST}")
    return cfg


def check_equal_settings(cfgs: dict) -> None:
    """Raise unless every model trains with the same solver, input and data settings."""
    items = list(cfgs.items())
    first_name, first = items[0]
    for name, cfg in items[1:]:
        for section in ("SOLVER", "INPUT", "DATASETS", "DATALOADER"):
            if cfg[section] != first[section]:
                raise ValueError(
                    f"{name} and {first_name} differ in {section}: the toy rows would not "
                    "compare at equal iterations"
                )


def run_one(cfg) -> dict:
    """Train ``cfg`` from scratch; the metrics on its test set, iterations and train time."""
    trainer, seconds = train_from_scratch(cfg, PersonSearchTrainer)
    # Detectron2's EvalHook evaluates once after the last iteration; with one test dataset
    # its results (and test()'s) come unwrapped.
    results = getattr(trainer, "_last_eval_results", None) or PersonSearchTrainer.test(
        cfg, trainer.model
    )
    return {
        "iterations": cfg.SOLVER.MAX_ITER,
        "train_seconds": round(seconds, 1),
        **{label: float(results[section][key]) for label, section, key in METRICS},
    }


def markdown(runs: dict[str, list[dict]], seeds: list[int], dataset: dict) -> str:
    """The README table: one row per model, mean ± sample std over ``seeds``."""
    head = ["model", "iterations", *(label for label, _, _ in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(METRICS)]
    for name, model_runs in runs.items():
        cells = [MODELS[name][0], str(model_runs[0]["iterations"])]
        cells += [mean_std([r[label] for r in model_runs]) for label, _, _ in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"Seeds {seeds} (mean ± sample std). Toy CUHK-SYSU: {dataset.get('train_images')} "
        f"training images, {dataset.get('train_ids')} labelled training identities, "
        f"{dataset.get('queries')} queries.\n\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = comparison_argument_parser(__doc__.splitlines()[0], "output/iidfc_toy")
    parser.add_argument(
        "--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS), help="rows to train"
    )
    args = parse_comparison_args(parser, argv)
    output = os.path.abspath(args.output)
    data_root = os.path.join(output, "data")
    os.environ["DETECTRON2_DATASETS"] = data_root
    os.makedirs(output, exist_ok=True)
    setup_logger(output=output, name="person_search")
    setup_logger(output=output)
    dataset = ensure_toy_dataset(data_root, "cuhk_sysu", TOY_DIR, 0, **TOY_SIZES)
    hoim_family = [m for m in args.models if not m.startswith("oim")]
    oim_family = [m for m in args.models if m.startswith("oim")]
    for family in (hoim_family, oim_family):
        if len(family) > 1:
            check_equal_settings(
                {m: model_config(m, 0, os.path.join(output, "check"), args.opts) for m in family}
            )
    runs: dict[str, list[dict]] = {name: [] for name in args.models}
    for seed in args.seeds:
        for name in args.models:
            cfg = model_config(name, seed, os.path.join(output, f"{name}_seed{seed}"), args.opts)
            runs[name].append({"seed": seed, **run_one(cfg)})
    report = {
        "seeds": args.seeds,
        "overrides": args.opts,
        "configs": {m: os.path.relpath(MODELS[m][1], _REPO) for m in args.models},
        "dataset": dataset,
        "runs": runs,
    }
    text = markdown(runs, args.seeds, dataset)
    write_report(output, report, "# IIDFC toy rows (toy CUHK-SYSU)\n\n" + text)
    print(text)
    return report


if __name__ == "__main__":
    main()
