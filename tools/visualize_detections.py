#!/usr/bin/env python
"""Draw a person-search model's detections on scene images (the detection view).

    python tools/visualize_detections.py --config-file configs/oim/oim_toy_cuhk_sysu.yaml \
        --output det_vis --num-images 4 MODEL.WEIGHTS output/oim_toy_cuhk_sysu/model_final.pth
    python tools/visualize_detections.py --config-file CFG --input a.jpg b.jpg --output OUT \
        MODEL.WEIGHTS W.pth
    # a project's model, with its instance masks (MaskGuidedPS)
    python tools/visualize_detections.py \
        --config-file projects/MaskGuidedPS/configs/maskguided_toy_cuhk_sysu.yaml \
        --add-config maskguided:add_maskguided_config --show-masks --output OUT MODEL.WEIGHTS W.pth

One PNG per image (``OUTPUT/<image stem>.png``): every detection scoring ``>= --score-thresh``
(default: the config's ``TEST.PERSON_SEARCH.DET_THRESH``) with its score; ``--show-masks``
also draws the instance masks of a model with a mask branch (``MODEL.MASK_ON``). Images are
``--input`` files, or the first ``--num-images`` gallery images of the config's
``DATASETS.TEST[0]`` (``$DETECTRON2_DATASETS`` must point at it).
"""

from __future__ import annotations

import argparse
import os
import sys

import person_search  # noqa: F401  (compat layer first: registers datasets, models)

# isort: split
import torch
from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

from person_search.data.build import build_person_search_mapper
from person_search.data.datasets.matfile import image_size
from person_search.engine import (
    PersonSearchCheckpointer,
    get_trainer_class,
    import_add_config,
    load_config,
)
from person_search.utils.file_io import write_png
from person_search.visualization.detection_view import draw_detections
from person_search.visualization.search_visualizer import read_rgb


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, help="the model's config")
    parser.add_argument("--output", required=True, help="folder for the PNGs")
    images = parser.add_mutually_exclusive_group()
    images.add_argument("--input", nargs="+", help="scene images to run the model on")
    images.add_argument(
        "--num-images", type=int, default=4, help="else the first N gallery images (default 4)"
    )
    parser.add_argument("--score-thresh", type=float, default=None, help="(default: config's)")
    parser.add_argument("--show-masks", action="store_true", help="draw the instance masks")
    parser.add_argument(
        "--add-config", default=None, help="a project's MODULE:FUNCTION adding its config keys"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    args = parser.parse_args(argv)
    if args.input is None and args.num_images < 1:
        parser.error(f"--num-images must be >= 1, got {args.num_images}")
    return args


def _image_files(args: argparse.Namespace, cfg) -> list[str]:
    if args.input:
        missing = [p for p in args.input if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"input images not found: {missing}")
        return list(args.input)
    if not cfg.DATASETS.TEST:
        raise ValueError(f"{args.config_file}: DATASETS.TEST is empty; give --input images")
    gallery = [d for d in DatasetCatalog.get(cfg.DATASETS.TEST[0]) if "query_box" not in d]
    return [d["file_name"] for d in gallery[: args.num_images]]


def main(argv: list[str] | None = None) -> list[str]:
    """Draw the images; returns the PNG paths."""
    args = parse_args(argv)
    setup_logger(name="person_search")
    add_config = import_add_config(args.add_config) if args.add_config else None
    cfg = load_config(args.config_file, args.opts, add_config)
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("needs MODEL.WEIGHTS (a trained model) among the overrides")
    if args.show_masks and not cfg.MODEL.MASK_ON:
        raise ValueError(f"--show-masks: {args.config_file} has no mask branch (MODEL.MASK_ON)")
    thresh = cfg.TEST.PERSON_SEARCH.DET_THRESH if args.score_thresh is None else args.score_thresh
    cfg.freeze()
    model = get_trainer_class(cfg).build_model(cfg)
    PersonSearchCheckpointer.from_config(cfg, model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
    model.eval()
    mapper = build_person_search_mapper(cfg, False)
    os.makedirs(args.output, exist_ok=True)
    paths = []
    for file_name in _image_files(args, cfg):
        height, width = image_size(file_name)
        record = {"file_name": file_name, "image_id": os.path.basename(file_name)}
        with torch.no_grad():
            (out,) = model([mapper({**record, "height": height, "width": width})])
        picture = draw_detections(
            read_rgb(file_name), out["instances"], score_thresh=thresh, show_masks=args.show_masks
        )
        path = os.path.join(args.output, os.path.splitext(record["image_id"])[0] + ".png")
        write_png(path, picture)
        paths.append(path)
        kept = int((out["instances"].scores >= thresh).sum())
        print(f"{file_name}: {kept} detections >= {thresh:g} -> {path}")
    return paths


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ImportError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
