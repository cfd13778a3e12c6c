#!/usr/bin/env python
"""Draw PAN's learnt masks over query crops (the paper's Fig. 4), one PNG per image.

    python projects/PAN/tools/visualize_masks.py \
        --config-file projects/PAN/configs/pan_R50_occluded_dukemtmc.yaml --output vis \
        MODEL.WEIGHTS output/pan/R50_occluded_dukemtmc/model_final.pth
    python projects/PAN/tools/visualize_masks.py --config-file CFG --output vis --images 0,5,9 \
        MODEL.WEIGHTS W

Reads the queries of the config's first test set (``--dataset`` for another registered re-id
set; ``$DETECTRON2_DATASETS`` must hold it), maps them with the test mapper
(``INPUT.REID.MAPPER``, resize to ``INPUT.REID.SIZE_TEST``) and writes
``OUTPUT/<image name>.png``: the crop, the fusion of all masks and each mask, positive values
red, negative blue (see ``pan.visualization``). Trailing ``KEY VALUE`` pairs override the config.
"""

from __future__ import annotations

import argparse

import person_search  # noqa: F401  (compat layer first: registers datasets, models)

# isort: split
from detectron2.data import DatasetCatalog

from pan import add_pan_config
from pan.visualization import PANEL_HEIGHT, write_mask_pictures
from person_search.data import build_reid_mapper
from person_search.engine import PersonSearchCheckpointer, ReIDTrainer, load_config


def _indices(text: str) -> list[int]:
    try:
        return [int(i) for i in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--images: comma-separated integers, got {text!r}") from e


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, help="PAN config (yaml)")
    parser.add_argument("--output", required=True, help="folder for the PNGs")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--images", type=_indices, help="indices among the queries, comma-separated: 0,5,9"
    )
    which.add_argument("--num-images", type=int, default=8, help="the first N queries (8)")
    parser.add_argument("--dataset", default=None, help="re-id test set (default DATASETS.TEST[0])")
    parser.add_argument("--panel-height", type=int, default=PANEL_HEIGHT, help="pixels")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[str]:
    args = parse_args(argv)
    cfg = load_config(args.config_file, args.opts, add_pan_config)
    cfg.freeze()
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("MODEL.WEIGHTS is empty: give the trained PAN weights to draw its masks")
    name = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if name is None:
        raise ValueError("no dataset: DATASETS.TEST is empty and --dataset is not given")
    queries = [d for d in DatasetCatalog.get(name) if d.get("split") == "query"]
    indices = args.images if args.images is not None else range(min(args.num_images, len(queries)))
    bad = [i for i in indices if not 0 <= i < len(queries)]
    if bad:
        raise IndexError(f"query indices {bad} out of range: {name} has {len(queries)} queries")
    model = ReIDTrainer.build_model(cfg)
    PersonSearchCheckpointer.from_config(cfg, model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
    paths = write_mask_pictures(
        model,
        build_reid_mapper(cfg, is_train=False),
        [queries[i] for i in indices],
        args.output,
        image_format=cfg.INPUT.FORMAT,
        panel_height=args.panel_height,
    )
    print("\n".join(paths))
    return paths


if __name__ == "__main__":
    main()
