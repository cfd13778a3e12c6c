#!/usr/bin/env python
"""Find a person in an index written by tools/index_gallery.py.

    python tools/search.py --index idx --query q.jpg --box 120 40 180 220 --output out
    python tools/search.py --index idx --query q.jpg --box 120 40 180 220 --top-k 50 \
        --cameras cam1 cam3 --time-range 60 300 --full-frames
    python tools/search.py --index idx --query-index-entry 1234 --output out

The query box (X1 Y1 X2 Y2, pixels of the query image) is embedded by the index's own model
(its recorded config; ``MODEL.WEIGHTS W`` if the weights file moved: another model is an
error). Detections are ranked by cosine similarity with the back-end the index records.
Writes ``OUT/results.json`` (rank, similarity, image or video, frame, time, camera, box),
``OUT/contact_sheet.png`` (query left, top-k crops) and, with ``--full-frames``,
``OUT/frames/rank_<k>.png``. ``--time-range`` (seconds) keeps video frames only.
"""

from __future__ import annotations

import argparse
import sys

import person_search  # noqa: F401  (compat layer first; registers models and datasets)

# isort: split
from detectron2.utils.logger import setup_logger

from person_search.footage import (
    FootageIndex,
    IndexFormatError,
    ModelMismatchError,
    load_index_model,
    query_from_entry,
    query_from_image,
    read_query_image,
    write_search_outputs,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", required=True, help="index folder (tools/index_gallery.py)")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--query", help="query image")
    query.add_argument(
        "--query-index-entry", type=int, metavar="ID", help="search with an indexed detection"
    )
    parser.add_argument(
        "--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), help="query box"
    )
    parser.add_argument("--top-k", type=int, default=20, help="matches (default 20)")
    parser.add_argument("--cameras", nargs="+", help="search only these cameras")
    parser.add_argument(
        "--time-range", type=float, nargs=2, metavar=("START", "END"), help="seconds (videos)"
    )
    parser.add_argument("--output", default="search_output", help="folder for the results")
    parser.add_argument("--full-frames", action="store_true", help="also draw each whole frame")
    parser.add_argument("--columns", type=int, default=5, help="matches per contact-sheet row")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.query is not None and args.box is None:
        parser.error("--query needs --box X1 Y1 X2 Y2")
    if args.query_index_entry is not None and (args.box is not None or args.opts):
        parser.error("--query-index-entry takes no --box and no model overrides")
    if args.top_k < 1:
        parser.error(f"--top-k must be >= 1, got {args.top_k}")
    return args


def main(argv: list[str] | None = None) -> dict[str, str]:
    """Search; returns the paths written ("results", "contact_sheet", "frames")."""
    args = parse_args(argv)
    setup_logger(name="person_search")
    index = FootageIndex.load(args.index)
    if args.query_index_entry is not None:
        query = query_from_entry(index, args.query_index_entry)
    else:
        read_query_image(args.query, args.box)  # bad input fails before the model loads
        query = query_from_image(load_index_model(index, args.opts), args.query, args.box)
    time_range = tuple(args.time_range) if args.time_range else None
    hits = index.search(
        query.embedding,
        args.top_k,
        cameras=args.cameras,
        time_range=time_range,
        exclude=query.exclude,
    )
    settings = {"top_k": args.top_k, "cameras": args.cameras, "time_range": time_range}
    paths = write_search_outputs(
        args.output,
        index,
        query,
        hits,
        settings=settings,
        full_frames=args.full_frames,
        columns=args.columns,
    )
    for hit in hits:
        where = hit.path if hit.kind == "image" else f"{hit.path} frame {hit.frame}"
        print(f"#{hit.rank:<3d} {hit.similarity:.3f}  {hit.camera:<12s} {where}")
    print(f"results: {paths['results']}\ncontact sheet: {paths['contact_sheet']}")
    return paths


if __name__ == "__main__":
    try:
        main()
    except (
        FileNotFoundError,
        IndexFormatError,
        ModelMismatchError,
        ValueError,
        KeyError,
        IndexError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
