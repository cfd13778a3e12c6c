#!/usr/bin/env python
"""Toy rows of the PAN README: PAN vs the library's re-id baseline on the toy re-id set, at
equal iterations, over several training seeds.

    python projects/PAN/tools/compare_toy.py --output output/pan_toy --seeds 0 1 2
    python projects/PAN/tools/compare_toy.py --output out --seeds 0 SOLVER.MAX_ITER 50

Generates (once, seed 0, as ``tools/demo_reid.py`` does) the toy Market-1501-layout set under
``OUTPUT/data/toy_market1501`` (about 70% of its queries occluded) and a copy of it whose
queries are all occluded, ``toy_market1501_occluded`` (same writer, same seed,
``occluded_query_fraction=1``: the same training images, checked; an Occluded-Duke-like test).
For each seed it trains ``configs/reid/toy_market1501.yaml`` (BNNeck baseline) and
``projects/PAN/configs/pan_toy_market1501.yaml`` (PAN) with the library's ``Trainer`` and the
same overrides (``SEED`` = the seed), evaluates both test sets and writes
``OUTPUT/report.json`` and ``OUTPUT/report.md``: rank-1 and mAP, mean and sample standard
deviation over the seeds, and the per-seed values.
"""

from __future__ import annotations

import hashlib
import os

import person_search  # noqa: F401  (compat layer first: registers datasets, models, evaluators)

# isort: split
from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

from pan import add_pan_config
from person_search.data.datasets.reid import ReIDDatasetSpec, register_reid_dataset
from person_search.engine import (
    ReIDTrainer,
    comparison_argument_parser,
    mean_std,
    parse_comparison_args,
    seeded_config,
    train_from_scratch,
)
from person_search.engine.demo import ensure_toy_dataset, write_report

_REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
MODELS = {
    "baseline (BNNeck)": os.path.join(_REPO, "configs", "reid", "toy_market1501.yaml"),
    "PAN": os.path.join(_REPO, "projects", "PAN", "configs", "pan_toy_market1501.yaml"),
}
TOY = "toy_market1501"  # the demo's set (registered by the library)
OCCLUDED = "toy_market1501_occluded"  # all queries occluded (registered here)
TEST_SETS = {f"{TOY}_test": "toy test", f"{OCCLUDED}_test": "all queries occluded"}
_METRICS = ("Rank-1", "mAP")


def _train_hashes(folder: str) -> dict[str, str]:
    train = os.path.join(folder, "bounding_box_train")
    return {
        name: hashlib.sha256(open(os.path.join(train, name), "rb").read()).hexdigest()
        for name in sorted(os.listdir(train))
    }


def prepare_data(data_root: str) -> dict:
    """Both toy sets under ``data_root`` (generated if missing) and the occluded one
    registered; returns their summaries. Raises if their training sets differ."""
    summaries = {
        TOY: ensure_toy_dataset(data_root, "market1501", TOY, 0),
        OCCLUDED: ensure_toy_dataset(
            data_root, "market1501", OCCLUDED, 0, occluded_query_fraction=1.0
        ),
    }
    occluded = summaries[OCCLUDED]
    if occluded["occluded_queries"] != occluded["query"]:
        raise ValueError(f"{os.path.join(data_root, OCCLUDED)}: not every query is occluded")
    if _train_hashes(os.path.join(data_root, TOY)) != _train_hashes(
        os.path.join(data_root, OCCLUDED)
    ):
        raise ValueError(f"{TOY} and {OCCLUDED} under {data_root} have different training sets")
    if f"{OCCLUDED}_test" not in DatasetCatalog.list():
        register_reid_dataset(ReIDDatasetSpec(OCCLUDED, (OCCLUDED,), "market", None))
    return summaries


def run_one(config_file: str, seed: int, output_dir: str, opts: list[str]) -> dict:
    """Train ``config_file`` with ``SEED`` = ``seed``; metrics on each test set and the time."""
    cfg = seeded_config(
        config_file,
        seed,
        output_dir,
        [*opts, "DATASETS.TEST", str(tuple(TEST_SETS))],
        add_pan_config,
    )
    trainer, seconds = train_from_scratch(cfg, ReIDTrainer)
    results = ReIDTrainer.test(cfg, trainer.model)
    return {
        "iterations": cfg.SOLVER.MAX_ITER,
        "train_seconds": round(seconds, 1),
        **{name: {k: float(results[name]["reid"][k]) for k in _METRICS} for name in TEST_SETS},
    }


def markdown(runs: dict[str, list[dict]], seeds: list[int], summaries: dict) -> str:
    toy = summaries[TOY]
    head = ["model", "iterations"] + [
        f"{m} ({label})" for name, label in TEST_SETS.items() for m in _METRICS
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
    for model, model_runs in runs.items():
        cells = [model, str(model_runs[0]["iterations"])]
        cells += [
            mean_std([r[name][m] for r in model_runs]) for name in TEST_SETS for m in _METRICS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"Seeds {seeds} (mean ± sample std). Toy test: {toy['query']} queries "
        f"({toy['occluded_queries']} occluded), {toy['gallery']} gallery crops; all-occluded "
        f"test: {summaries[OCCLUDED]['query']} queries, all occluded.\n\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = comparison_argument_parser(__doc__.splitlines()[0], "output/pan_toy")
    args = parse_comparison_args(parser, argv)
    output = os.path.abspath(args.output)
    data_root = os.path.join(output, "data")
    os.environ["DETECTRON2_DATASETS"] = data_root
    os.makedirs(output, exist_ok=True)
    setup_logger(output=output, name="person_search")
    setup_logger(output=output)
    summaries = prepare_data(data_root)
    runs: dict[str, list[dict]] = {model: [] for model in MODELS}
    for seed in args.seeds:
        for model, config_file in MODELS.items():
            slug = model.split()[0].lower()
            out = os.path.join(output, f"{slug}_seed{seed}")
            runs[model].append({"seed": seed, **run_one(config_file, seed, out, args.opts)})
    report = {
        "seeds": args.seeds,
        "overrides": args.opts,
        "configs": {m: os.path.relpath(c, _REPO) for m, c in MODELS.items()},
        "datasets": summaries,
        "runs": runs,
    }
    text = markdown(runs, args.seeds, summaries)
    write_report(output, report, "# PAN vs the re-id baseline on the toy set\n\n" + text)
    print(text)
    return report


if __name__ == "__main__":
    main()
