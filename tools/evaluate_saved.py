#!/usr/bin/env python
"""Re-evaluate a saved person-search results file without the model.

    python tools/evaluate_saved.py OUTPUT/inference/search_results.pth --det-thresh 0.3
    python tools/evaluate_saved.py FILE --variants gallery_100 gallery_4000 --no-cbgm
    python tools/evaluate_saved.py FILE --dataset cuhk_sysu_test   # protocol from the catalog
    python tools/evaluate_saved.py FILE --occlusion-curve curve.png  # occluded-query curve

The file (written by ``PersonSearchEvaluator``) holds every detection, embedding, the ground
truth, the evaluated protocol variants and, when the model ran with CBGM on, each query's CBGM
context; ``--dataset`` instead re-reads the protocol and ground truth of a registered dataset
(its files must be present), e.g. to evaluate other variants, through the protocol cache
(``--no-cache``: parse the protocol files again, write no cache). Detection threshold and CBGM
default to what the saving run used, so the numbers are the evaluator's. A file saved with the
occluded-query evaluation on (``TEST.PERSON_SEARCH.OCCLUDED_QUERIES``) is re-evaluated on it
too (table and metrics; ``--occlusion-curve`` draws its PNG curve).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict

import person_search  # noqa: F401  (compat layer first: registers datasets)

# isort: split
from detectron2.utils.logger import setup_logger

from person_search.data.datasets import set_data_options
from person_search.evaluation.occluded_queries import (
    evaluate_occluded_queries,
    format_occluded_query_table,
    plot_occluded_query_curves,
)
from person_search.evaluation.person_search_evaluator import (
    compute_person_search_metrics,
    format_results_table,
    load_protocol_and_ground_truth,
)
from person_search.evaluation.saved_results import (
    load_search_results,
    resolve_cbgm,
    with_protocol,
)
from person_search.utils.file_io import atomic_write


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("file", help="search_results.pth written by PersonSearchEvaluator")
    parser.add_argument(
        "--det-thresh", type=float, default=None, help="detection score threshold (default: saved)"
    )
    parser.add_argument(
        "--variants", nargs="+", default=None, help="protocol variants (default: all available)"
    )
    parser.add_argument(
        "--dataset", default=None, help="take protocol and ground truth from this dataset"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="with --dataset: do not use the protocol cache"
    )
    parser.add_argument(
        "--cbgm",
        action=argparse.BooleanOptionalAction,
        help="CBGM re-ranking on or off (default: as the saving run)",
    )
    parser.add_argument(
        "--k1", type=int, default=None, help="CBGM: most similar detections (default: saved, 10)"
    )
    parser.add_argument(
        "--k2", type=int, default=None, help="CBGM: context nodes (default: saved, 3)"
    )
    parser.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    parser.add_argument(
        "--occlusion-curve",
        default=None,
        help="draw the occluded-query curve (PNG) of a file saved with the occluded-query "
        "evaluation on",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> OrderedDict:
    """Run the evaluation; returns the metrics dict (percent) and prints the table."""
    args = parse_args(argv)
    logger = setup_logger(name="person_search")
    if args.no_cache:
        set_data_options(protocol_cache=False)
    saved = load_search_results(args.file)
    if args.dataset is not None:
        protocol, ground_truth = load_protocol_and_ground_truth(args.dataset)
        saved = with_protocol(saved, protocol, ground_truth, args.dataset, args.file)
    protocol, ground_truth = saved.protocol, saved.ground_truth
    dataset_name = saved.dataset_name
    det_thresh = saved.settings["det_thresh"] if args.det_thresh is None else args.det_thresh
    if not 0.0 <= det_thresh <= 1.0:
        raise ValueError(f"--det-thresh must be in [0, 1], got {det_thresh}")
    names = args.variants or list(protocol.variant_loaders)
    variants = [protocol.variant(n) for n in names]
    cbgm = resolve_cbgm(saved, args.cbgm, args.k1, args.k2)
    results, per_variant = compute_person_search_metrics(
        protocol,
        ground_truth,
        saved.detections,
        saved.query_embeddings,
        det_thresh=det_thresh,
        variants=variants,
        cbgm=cbgm,
        contexts=saved.query_contexts,
    )
    table = format_results_table(
        results, per_variant, dataset_name=dataset_name, det_thresh=det_thresh, cbgm=cbgm
    )
    if saved.occluded_queries is not None:
        curve = evaluate_occluded_queries(
            protocol,
            saved.detections,
            saved.query_embeddings,
            saved.occluded_queries,
            det_thresh=det_thresh,
        )
        results["occluded_query"] = curve.metrics()
        table += "\n" + format_occluded_query_table(curve, dataset_name)
        if args.occlusion_curve:
            plot_occluded_query_curves({dataset_name: curve}, args.occlusion_curve)
    elif args.occlusion_curve:
        raise ValueError(
            f"{args.file} holds no occluded-query embeddings (evaluate the model with "
            "TEST.PERSON_SEARCH.OCCLUDED_QUERIES.ENABLED True): no --occlusion-curve to draw"
        )
    logger.info(f"{args.file}\n{table}")
    if args.json:
        atomic_write(args.json, lambda f: json.dump(results, f, indent=2), mode="w")
    return results


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
