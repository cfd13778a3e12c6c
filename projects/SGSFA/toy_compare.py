#!/usr/bin/env python
"""SGSFA against the re-id baseline on the toy re-id set, at equal iterations, over seeds.

    python projects/SGSFA/toy_compare.py --output output/sgsfa_toy --seeds 0 1 2

Writes the toy Market-1501-layout set (seed 0, with LIP parsing maps) to ``OUTPUT/data`` and an
occluded variant to ``OUTPUT/data_occluded``: the same generator and training split (checked
byte for byte), but **every** query occluded by an object over a side of the body (and up to 4
queries per identity). Each variant (``--variants``: the baseline
``configs/reid/toy_market1501.yaml``, SGSFA ``projects/SGSFA/configs/toy_market1501.yaml`` and
its ablations) is trained once per seed (``SEED``: initialisation and batches; the data stay
the same) for ``--iters`` iterations, then evaluated on both test sets with every matching mode
it supports (the baseline: its global feature; SGSFA: the paper's shared-part sum, the
normalised mean, and the concatenated feature). Writes ``OUTPUT/results.json`` (every run) and
``OUTPUT/report.md`` (mean and standard deviation over the seeds), and prints the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time

import person_search  # noqa: F401  (compat layer first: registers datasets, models)

# isort: split
import torch
from detectron2.data import DatasetCatalog
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from person_search.data.datasets.reid import ReIDDatasetSpec, register_reid_dataset
from person_search.data.toy.reid_writer import write_market1501
from person_search.engine import ReIDTrainer, load_config
from person_search.engine.demo import ensure_toy_dataset, write_text_atomic
from sgsfa import add_sgsfa_config

_PROJECT = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.join(_PROJECT, "..", "..")
_SGSFA_TOY = os.path.join(_PROJECT, "configs", "toy_market1501.yaml")
# variant -> (config file, overrides)
VARIANTS = {
    "baseline": (os.path.join(_REPO, "configs", "reid", "toy_market1501.yaml"), ()),
    "sgsfa": (_SGSFA_TOY, ()),
    "sgsfa_no_whole_attention": (_SGSFA_TOY, ("MODEL.SGSFA.WHOLE_ATTENTION", "False")),
    "sgsfa_no_sfa": (_SGSFA_TOY, ("MODEL.SGSFA.SFA", "False")),
}
# matching mode -> TEST.REID overrides
MODES = {
    "global": ("TEST.REID.FEATURE", "global"),
    "parts-sum": ("TEST.REID.FEATURE", "parts", "TEST.REID.PART_DISTANCE", "sum"),
    "parts-mean": ("TEST.REID.FEATURE", "parts", "TEST.REID.PART_DISTANCE", "mean"),
}
# The toy set's folder name, and the test sets evaluated (registered name -> table label).
_TOY_DIR = "toy_market1501"
_OCCLUDED_NAME = "toy_market1501_all_occluded"
TEST_SETS = {"toy_market1501_test": "toy", f"{_OCCLUDED_NAME}_test": "toy, all queries occluded"}
_DATA_SEED = 0
# Occluded variant: every query occluded, up to 4 queries per identity (one per camera).
_OCCLUDED_ARGS = {"occluded_query_fraction": 1.0, "max_query_cameras": 4}


def _tree_digest(folder: str) -> str:
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            digest.update(name.encode())
            with open(os.path.join(root, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def prepare_data(output: str) -> dict:
    """The toy set (``OUTPUT/data``, ``$DETECTRON2_DATASETS``) and its all-occluded variant
    (registered as ``toy_market1501_all_occluded_{train,test}``); returns their summaries."""
    data_root = os.path.join(output, "data")
    summary = ensure_toy_dataset(data_root, "market1501", _TOY_DIR, _DATA_SEED)
    os.environ["DETECTRON2_DATASETS"] = data_root
    occluded_root = os.path.join(output, "data_occluded")
    occluded_dir = os.path.join(occluded_root, _TOY_DIR)
    if not os.path.isfile(os.path.join(occluded_dir, "toy_info.json")):
        write_market1501(occluded_dir, _DATA_SEED, overwrite=True, **_OCCLUDED_ARGS)
    with open(os.path.join(occluded_dir, "toy_info.json")) as f:
        occluded = json.load(f)
    for sub in ("bounding_box_train", os.path.join("parsing", "bounding_box_train")):
        same = _tree_digest(os.path.join(data_root, _TOY_DIR, sub)) == _tree_digest(
            os.path.join(occluded_dir, sub)
        )
        if not same:
            raise RuntimeError(f"the occluded toy variant's {sub} differs from the toy set's")
    if occluded["occluded_queries"] != occluded["query"]:
        raise RuntimeError(f"occluded toy variant: not every query is occluded: {occluded}")
    spec = ReIDDatasetSpec(_OCCLUDED_NAME, (_TOY_DIR,), "market", None)
    if f"{_OCCLUDED_NAME}_test" not in DatasetCatalog.list():
        register_reid_dataset(spec, root=occluded_root)
    return {"toy": summary, "toy_all_occluded": occluded}


def _config(variant: str, seed: int, iters: int, output_dir: str, extra=()):
    config_file, opts = VARIANTS[variant]
    overrides = [*opts, "SEED", str(seed), "OUTPUT_DIR", output_dir, "TEST.EVAL_PERIOD", "0"]
    overrides += ["SOLVER.MAX_ITER", str(iters), "SOLVER.CHECKPOINT_PERIOD", str(iters)]
    # the toy configs step the learning rate at 80% of training
    overrides += ["SOLVER.STEPS", f"({int(iters * 0.8)},)", *extra]
    return load_config(config_file, overrides, add_sgsfa_config)


def run_one(variant: str, seed: int, iters: int, output: str) -> dict:
    """Train ``variant`` with ``seed``; evaluate it on every test set and matching mode."""
    out_dir = os.path.join(output, "runs", f"{variant}_seed{seed}")
    cfg = _config(variant, seed, iters, out_dir)
    cfg.freeze()
    os.makedirs(out_dir, exist_ok=True)
    seed_all_rng(seed)
    trainer = ReIDTrainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    record = {"variant": variant, "seed": seed, "train_seconds": time.perf_counter() - start}
    modes = ["global"] if variant == "baseline" else list(MODES)
    model = trainer.model
    for mode in modes:
        for test_set in TEST_SETS:
            cfg_eval = _config(
                variant, seed, iters, out_dir, ["DATASETS.TEST", f"('{test_set}',)", *MODES[mode]]
            )
            results = ReIDTrainer.test(cfg_eval, model)
            metrics = results["reid"] if "reid" in results else results[test_set]["reid"]
            record[f"{test_set}/{mode}"] = {k: float(metrics[k]) for k in ("Rank-1", "mAP")}
    return record


def summarise(records: list[dict]) -> str:
    """Markdown table: per variant and mode, mean +- std over seeds of Rank-1 / mAP."""
    lines = [
        "| variant | matching | seeds | "
        + " | ".join(f"{label} R1 | {label} mAP" for label in TEST_SETS.values())
        + " | train s |",
        "|---|---|---:|" + "---:|" * (2 * len(TEST_SETS)) + "---:|",
    ]
    for variant in dict.fromkeys(r["variant"] for r in records):
        runs = [r for r in records if r["variant"] == variant]
        modes = [m for m in MODES if f"{next(iter(TEST_SETS))}/{m}" in runs[0]]
        for mode in modes:
            cells = []
            for test_set in TEST_SETS:
                for metric in ("Rank-1", "mAP"):
                    values = [r[f"{test_set}/{mode}"][metric] for r in runs]
                    spread = statistics.stdev(values) if len(values) > 1 else 0.0
                    cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
            seconds = statistics.mean(r["train_seconds"] for r in runs)
            lines.append(
                f"| {variant} | {mode} | {len(runs)} | " + " | ".join(cells) + f" | {seconds:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="output/sgsfa_toy", help="output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iters", type=int, default=300, help="training iterations per run")
    parser.add_argument("--variants", nargs="+", default=["baseline", "sgsfa"], choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error("--iters must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    setup_logger(output=os.path.join(output, "log.txt"), name="person_search")
    data = prepare_data(output)
    results_file = os.path.join(output, "results.json")
    records = []
    for variant in args.variants:
        for seed in args.seeds:
            records.append(run_one(variant, seed, args.iters, output))
            write_text_atomic(
                results_file,
                json.dumps({"args": vars(args), "data": data, "runs": records}, indent=1) + "\n",
            )
    table = summarise(records)
    header = (
        f"SGSFA vs the re-id baseline on the toy set, {args.iters} iterations each, seeds "
        f"{args.seeds}: mean ± standard deviation over seeds; queries: toy "
        f"{data['toy']['query']} ({data['toy']['occluded_queries']} occluded), all-occluded "
        f"variant {data['toy_all_occluded']['query']}."
    )
    write_text_atomic(os.path.join(output, "report.md"), f"{header}\n\n{table}\n")
    print(f"{header}\n\n{table}")
    return records


if __name__ == "__main__":
    main(sys.argv[1:])
