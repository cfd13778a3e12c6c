#!/usr/bin/env python
"""Plot search accuracy against gallery size (CUHK-SYSU, gallery 50 .. 4000) from saved results.

    python tools/plot_gallery_curve.py OUTPUT/inference/cuhk_sysu_test/search_results.pth \
        --output gallery_curve.png
    # several models, one line each (LABEL=FILE), every gallery size of the dataset's protocol
    python tools/plot_gallery_curve.py OIM=oim/search_results.pth \
        MaskGuidedPS=maskguided/search_results.pth --dataset cuhk_sysu_test --output curve.png

Works with any model's ``search_results.pth`` (written by ``PersonSearchEvaluator`` at the end
of a training or ``--eval-only`` run). Each ``gallery_<N>`` variant is evaluated with the
detection threshold and CBGM setting of the run that saved the file (``--det-thresh`` /
``--cbgm`` / ``--no-cbgm`` override them), so N = 100 is that run's headline number. A file
holds the variants its run evaluated: ``--dataset`` re-reads the registered dataset's protocol
(every ``TestG<N>.mat`` present; ``$DETECTRON2_DATASETS`` must point at it). The toy CUHK-SYSU
set generates gallery sizes 50 and 100 only (``toy_info.json`` lists them). Writes the PNG (two
panels: mAP and top-1, log-scaled gallery size) and prints the points; ``--json`` also writes
them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import person_search  # noqa: F401  (compat layer first: registers datasets)

# isort: split
from person_search.evaluation.gallery_curve import gallery_size_curve
from person_search.evaluation.person_search_evaluator import load_protocol_and_ground_truth
from person_search.evaluation.saved_results import (
    load_search_results,
    resolve_cbgm,
    with_protocol,
)
from person_search.utils.file_io import atomic_write
from person_search.visualization.gallery_curve import plot_gallery_curves


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument(
        "results", nargs="+", help="search_results.pth files, each FILE or LABEL=FILE"
    )
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--dataset", default=None, help="take the protocol from this dataset")
    parser.add_argument("--det-thresh", type=float, default=None, help="(default: saved)")
    parser.add_argument("--cbgm", action=argparse.BooleanOptionalAction, help="(default: saved)")
    parser.add_argument("--title", default="", help="figure title")
    parser.add_argument("--json", default=None, help="also write the points to this JSON file")
    args = parser.parse_args(argv)
    if not args.output.lower().endswith(".png"):
        parser.error(f"--output must be a .png file, got {args.output!r}")
    if args.det_thresh is not None and not 0.0 <= args.det_thresh <= 1.0:
        parser.error(f"--det-thresh must be in [0, 1], got {args.det_thresh}")
    return args


def _labelled(entries: list[str]) -> dict[str, str]:
    """LABEL=FILE or FILE (label: the file's folder name) -> {label: file}; ValueError on a
    repeated label."""
    out: dict[str, str] = {}
    for entry in entries:
        label, sep, path = entry.partition("=")
        if not sep:
            path = entry
            label = os.path.basename(os.path.dirname(os.path.abspath(entry))) or entry
        if label in out:
            raise ValueError(f"two results are labelled {label!r}: name them LABEL=FILE")
        out[label] = path
    return out


def main(argv: list[str] | None = None) -> dict:
    """Compute and plot the curves; returns {label: [point dicts]}."""
    args = parse_args(argv)
    protocol = None
    if args.dataset is not None:
        protocol, ground_truth = load_protocol_and_ground_truth(args.dataset)
    curves = {}
    for label, path in _labelled(args.results).items():
        saved = load_search_results(path)
        if protocol is not None:
            saved = with_protocol(saved, protocol, ground_truth, args.dataset, path)
        points = gallery_size_curve(
            saved, det_thresh=args.det_thresh, cbgm=resolve_cbgm(saved, args.cbgm)
        )
        curves[label] = points
        print(f"{label} ({path}):")
        print("| gallery size | mAP | top-1 | queries |\n|---:|---:|---:|---:|")
        for p in points:
            print(f"| {p.gallery_size} | {p.mAP:.2f} | {p.top1:.2f} | {p.num_queries} |")
    plot_gallery_curves(curves, args.output, title=args.title)
    print(f"wrote {args.output}")
    out = {label: [vars(p) for p in points] for label, points in curves.items()}
    if args.json:
        atomic_write(args.json, lambda f: json.dump(out, f, indent=2), mode="w")
    return out


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
