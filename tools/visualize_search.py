#!/usr/bin/env python
"""Draw person-search rankings: per query, its box and its top-k gallery matches.

    # from a saved evaluation (written by PersonSearchEvaluator)
    python tools/visualize_search.py --results OUT/inference/toy_cuhk_sysu_test/search_results.pth \
        --output vis --num-queries 4
    python tools/visualize_search.py --results FILE --image-root datasets/cuhk_sysu/Image/SSM \
        --queries 0 7 12 --top-k 10
    # from a model: run inference on its DATASETS.TEST[0] first
    python tools/visualize_search.py --config-file configs/oim/oim_toy_cuhk_sysu.yaml \
        --output vis MODEL.WEIGHTS output/oim_toy_cuhk_sysu/model_final.pth

One PNG per query (``OUTPUT/query_<index>.png``): the query in blue, matches framed green when
they are the evaluation's true positive, red otherwise, each with its similarity and detection
score, and its instance mask when the model has a mask branch (``--no-masks``: boxes only).
The ranking is the evaluation's, with its detection threshold and CBGM setting unless
``--det-thresh`` / ``--cbgm`` / ``--no-cbgm`` say otherwise. Images come from the registered
dataset (``--dataset``, default: the one the results file names; ``$DETECTRON2_DATASETS`` must
point at it) or from ``--image-root``.
"""

from __future__ import annotations

import argparse
import os
import sys

import person_search  # noqa: F401  (compat layer first: registers datasets, models, evaluators)

# isort: split
from detectron2.utils.logger import setup_logger

from person_search.engine import PersonSearchCheckpointer, PersonSearchTrainer, load_config
from person_search.evaluation.person_search_evaluator import RESULTS_FILE
from person_search.evaluation.saved_results import load_search_results
from person_search.visualization.search_visualizer import (
    dataset_image_paths,
    image_root_paths,
    visualize_saved_results,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", help="search_results.pth written by PersonSearchEvaluator")
    source.add_argument("--config-file", help="model config: run inference with MODEL.WEIGHTS")
    parser.add_argument("--output", required=True, help="folder for the PNGs")
    queries = parser.add_mutually_exclusive_group()
    queries.add_argument("--queries", type=int, nargs="+", help="query indices to draw")
    queries.add_argument(
        "--num-queries", type=int, default=5, help="draw the first N queries (default 5)"
    )
    parser.add_argument("--top-k", type=int, default=5, help="gallery matches per query")
    parser.add_argument(
        "--det-thresh", type=float, default=None, help="detection threshold (default: saved)"
    )
    parser.add_argument("--variant", default=None, help="protocol variant (default: headline)")
    parser.add_argument("--cbgm", action=argparse.BooleanOptionalAction, help="(default: saved)")
    parser.add_argument(
        "--no-masks", action="store_true", help="do not draw the matches' instance masks"
    )
    images = parser.add_mutually_exclusive_group()
    images.add_argument("--dataset", default=None, help="registered dataset holding the images")
    images.add_argument("--image-root", default=None, help="folder holding the images by id")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    args = parser.parse_args(argv)
    if args.opts and not args.config_file:
        parser.error(f"config overrides {args.opts} need --config-file")
    if args.top_k < 1:
        parser.error(f"--top-k must be >= 1, got {args.top_k}")
    if args.queries is None and args.num_queries < 1:
        parser.error(f"--num-queries must be >= 1, got {args.num_queries}")
    return args


def _results_from_model(args: argparse.Namespace) -> str:
    """Evaluate the model of ``--config-file`` on its first test dataset; the results file."""
    cfg = load_config(args.config_file, args.opts)
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("--config-file needs MODEL.WEIGHTS (a trained model) among the overrides")
    if not cfg.DATASETS.TEST:
        raise ValueError(f"{args.config_file}: DATASETS.TEST is empty")
    cfg.TEST.PERSON_SEARCH.SAVE_RESULTS = True
    cfg.freeze()
    model = PersonSearchTrainer.build_model(cfg)
    PersonSearchCheckpointer.from_config(cfg, model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
    name = cfg.DATASETS.TEST[0]
    inference_dir = os.path.join(args.output, "inference", name)
    evaluator = PersonSearchTrainer.build_evaluator(cfg, name, inference_dir)
    PersonSearchTrainer.test(cfg, model, evaluators=[evaluator])
    return os.path.join(inference_dir, RESULTS_FILE)


def main(argv: list[str] | None = None) -> list:
    """Draw the queries; returns the :class:`QueryVisualization` records."""
    args = parse_args(argv)
    setup_logger(name="person_search")
    path = args.results if args.results else _results_from_model(args)
    saved = load_search_results(path)
    if args.image_root:
        image_path = image_root_paths(args.image_root)
    else:
        image_path = dataset_image_paths(args.dataset or saved.dataset_name)
    indices = args.queries or list(range(min(args.num_queries, len(saved.protocol.queries))))
    records = visualize_saved_results(
        saved,
        image_path,
        args.output,
        indices,
        top_k=args.top_k,
        det_thresh=args.det_thresh,
        variant=args.variant,
        cbgm=args.cbgm,
        show_masks=not args.no_masks,
    )
    for r in records:
        marks = " ".join("+" if m.correct else "-" for m in r.matches)
        print(f"query {r.query_index}: {r.path}  [{marks}]")
    return records


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
