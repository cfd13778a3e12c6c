#!/usr/bin/env python
"""Index image folders and videos with a trained person-search model, for tools/search.py.

    python tools/index_gallery.py --config-file configs/oim/oim_R50_prw.yaml --output idx \
        --input footage/ cam3.mp4 --every-n-frames 5 MODEL.WEIGHTS model_final.pth
    python tools/index_gallery.py ... --num-gpus 4          # the chunks shared by 4 processes
    python tools/index_gallery.py ... --num-gpus 8 --num-machines 2 --machine-rank R \
        --dist-url tcp://HOST:PORT                          # INDEX_DIR on a shared file system

Folders are searched recursively for images and videos. A frame's camera is its folder's name
(images) or the video's file name, unless ``--camera PATH=NAME`` names it for an input.
Detections with ``score >= FOOTAGE.SCORE_THRESH`` are stored with their float16 embeddings, in
chunks of ``FOOTAGE.CHUNK_SIZE`` frames written atomically: running the same command again
after an interruption resumes at the first missing chunk. Frames that cannot be decoded are
skipped and listed in ``INDEX_DIR/index.json``. Format: ``person_search/footage/index_format.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import person_search  # noqa: F401  (compat layer first; registers models and datasets)

# isort: split
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from person_search.engine import launch, load_config
from person_search.footage import IndexFormatError, ModelMismatchError, index_footage

# A config override key (MODEL.WEIGHTS ...): where the --input list ends when overrides follow it.
_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def _split_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    """``--input A B MODEL.WEIGHTS W`` -> inputs [A, B], overrides [MODEL.WEIGHTS, W]."""
    for i, item in enumerate(items):
        if _CONFIG_KEY.match(item) and not os.path.exists(item):
            return items[:i], items[i:]
    return items, []


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, help="the model's config (yaml)")
    parser.add_argument("--output", required=True, help="index folder (new, or one to resume)")
    parser.add_argument(
        "--input", nargs="+", action="extend", required=True, help="image folders, video files"
    )
    parser.add_argument(
        "--every-n-frames", type=int, default=1, help="index every N-th frame of each video"
    )
    parser.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="PATH=NAME",
        help="camera name of every frame of the input PATH (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--dist-url", default="auto", help="e.g. tcp://host:port (multi-machine)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    args.input, overrides = _split_overrides(args.input)
    args.opts = overrides + args.opts
    if not args.input:
        parser.error("--input needs at least one image folder or video")
    args.cameras = {}
    for item in args.camera:
        path, sep, name = item.rpartition("=")
        if not sep or not path or not name:
            parser.error(f"--camera takes PATH=NAME, got {item!r}")
        args.cameras[path] = name
    return args


def main(args: argparse.Namespace) -> dict | None:
    """Index the inputs; returns ``index.json``'s content in the main process."""
    setup_logger(name="person_search", distributed_rank=comm.get_rank())
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    info = index_footage(
        cfg,
        args.input,
        args.output,
        every_n_frames=args.every_n_frames,
        cameras=args.cameras,
        show_progress=not args.no_progress,
    )
    if info is not None:
        report = info["report"]
        print(
            f"{args.output}: {report['detections']} detections in {report['frames_indexed']} "
            f"frames ({report['frames_skipped']} skipped), retrieval {info['retrieval']['name']}"
        )
    return info


if __name__ == "__main__":
    args = parse_args()
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except (
        FileNotFoundError,
        FileExistsError,
        IndexFormatError,
        ModelMismatchError,
        ValueError,
        KeyError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
