#!/usr/bin/env python
"""Draw SGSFA's learned attention maps and its top / middle / bottom split over query images.

    python projects/SGSFA/visualize_attention.py \
        --config-file projects/SGSFA/configs/toy_market1501.yaml \
        --weights output/sgsfa/toy_market1501/model_final.pth --output attention.png

One row per query (the first ``--num-queries`` of ``--dataset``, default the config's test
set; ``--occluded-first`` puts the queries whose whole-body map covers least first): the image
with the SFA blocks below the learned head top (top red, middle green, bottom blue; a block's
label shows its visibility score), then the whole-body attention (after stage 1) and each part
attention (head, upper body, lower body, shoes) overlaid, titled with the part's visibility
score (the fraction of its map set). Written as one PNG (atomically). Trailing ``KEY VALUE``
pairs override the config.
"""

from __future__ import annotations

import argparse
import sys

import person_search  # noqa: F401  (compat layer first: registers datasets, models)

# isort: split
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from person_search.engine import PersonSearchCheckpointer, ReIDTrainer, load_config  # noqa: E402
from person_search.utils.file_io import atomic_write  # noqa: E402
from sgsfa import add_sgsfa_config  # noqa: E402
from sgsfa.sfa import REGIONS  # noqa: E402

# Colours of the top / middle / bottom blocks.
_BLOCK_COLOURS = ("red", "lime", "deepskyblue")
_OVERLAY_ALPHA = 0.55


def collect_queries(cfg, model: torch.nn.Module, dataset: str, num: int, occluded_first: bool):
    """Model inputs and outputs of ``num`` queries of ``dataset``: list of (input, output)."""
    loader = ReIDTrainer.build_test_loader(cfg, dataset)
    pairs = []
    model.eval()
    with torch.no_grad():
        for batch in loader:
            queries = [x for x in batch if x["split"] == "query"]
            if queries:
                pairs += list(zip(queries, model(queries)))
            if len(pairs) >= num and not occluded_first:
                break
    if not pairs:
        raise ValueError(f"{dataset} has no query images")
    if occluded_first:
        pairs.sort(key=lambda p: float(p[1]["whole_body_mask"].mean()))
    return pairs[:num]


def _image(inp: dict, image_format: str) -> np.ndarray:
    image = inp["image"].permute(1, 2, 0).numpy()
    return image[..., ::-1] if image_format == "BGR" else image


def draw(pairs, part_names, image_format: str) -> plt.Figure:
    """The figure: one row per (input, output) pair (see the module docstring)."""
    has_whole = "whole_body_mask" in pairs[0][1]
    columns = ["split"] + (["whole body"] if has_whole else []) + list(part_names)
    fig, axes = plt.subplots(
        len(pairs), len(columns), figsize=(1.3 * len(columns), 2.4 * len(pairs)), squeeze=False
    )
    for row, (inp, out) in enumerate(pairs):
        image = _image(inp, image_format)
        height, width = image.shape[:2]
        extent = (0, width, height, 0)
        maps = ([out["whole_body_mask"][0]] if has_whole else []) + list(out["part_masks"])
        scores = [None] * has_whole + out["part_visibility"][: len(part_names)].tolist()
        ax = axes[row, 0]
        ax.imshow(image, extent=extent)
        ax.set_title(f"id {inp['person_id']}", fontsize=7)
        if "region_bounds" in out:
            bounds = out["region_bounds"].tolist()
            rows = out["part_masks"].shape[1]
            block_scores = out["part_visibility"][len(part_names) :].tolist()
            for i, colour in enumerate(_BLOCK_COLOURS):
                y0, y1 = bounds[i] * height / rows, bounds[i + 1] * height / rows
                ax.axhspan(y0, y1, color=colour, alpha=0.25)
                ax.text(1, y0 + 6, f"{REGIONS[i]} {block_scores[i]:.2f}", fontsize=5, color="w")
        for col, (mask, score) in enumerate(zip(maps, scores), start=1):
            ax = axes[row, col]
            ax.imshow(image, extent=extent)
            ax.imshow(mask.numpy(), cmap="jet", vmin=0, vmax=1, alpha=_OVERLAY_ALPHA, extent=extent)
            title = columns[col] if score is None else f"{columns[col]} {score:.2f}"
            ax.set_title(title, fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="trained model (MODEL.WEIGHTS)")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--dataset", default="", help="test dataset (default: DATASETS.TEST[0])")
    parser.add_argument("--num-queries", type=int, default=6)
    parser.add_argument("--occluded-first", action="store_true")
    parser.add_argument("--dpi", type=int, default=100, help="resolution of the PNG")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.num_queries < 1 or args.dpi < 1:
        parser.error("--num-queries and --dpi must be >= 1")
    cfg = load_config(args.config_file, args.opts, add_sgsfa_config)
    model = ReIDTrainer.build_model(cfg)
    PersonSearchCheckpointer.from_config(cfg, model).load(args.weights)
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    pairs = collect_queries(cfg, model, dataset, args.num_queries, args.occluded_first)
    fig = draw(pairs, cfg.INPUT.REID.PARSING_PART_NAMES, cfg.INPUT.FORMAT)
    atomic_write(args.output, lambda f: fig.savefig(f, format="png", dpi=args.dpi), "wb")
    plt.close(fig)
    print(f"wrote {args.output} ({len(pairs)} queries of {dataset})")
    return args.output


if __name__ == "__main__":
    main(sys.argv[1:])
