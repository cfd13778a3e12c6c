#!/usr/bin/env python
"""Toy rows of the MaskGuidedPS README: OIM (no masks) vs MaskGuidedPS with masks on part of the
training images, on the toy CUHK-SYSU set, at equal iterations, over several training seeds.

    python projects/MaskGuidedPS/tools/compare_toy.py --output output/maskguided_toy --seeds 0 1 2
    python projects/MaskGuidedPS/tools/compare_toy.py --output out --seeds 0 -- SOLVER.MAX_ITER 20

Generates (once, seed 0) the toy CUHK-SYSU set with person masks under
``OUTPUT/data/toy_cuhk_sysu``, annotated as the paper annotated CUHK-SYSU: one image drawn from
each portion of 5 training images, those without a labelled person dropped
(``--mask-fraction 0.2`` of ``tools/make_toy_dataset.py``; ~13% of the training images, the
paper's "Full" is 16%). For each seed it trains, with the same overrides (``SEED`` = the seed):

* ``OIM``: ``configs/oim/oim_toy_cuhk_sysu.yaml`` (the paper's baseline, no mask branch);
* ``MaskGuidedPS alpha=5%``: the mask-fraction ablation, masks kept on 5% of the training images
  (``INPUT.MASKGUIDED.IMAGE_FRACTION 0.05``);
* ``MaskGuidedPS Full``: every annotated image keeps its masks,

then evaluates each (gallery 100 = the headline, gallery 50, occlusion and resolution subsets,
detection AP), writes ``OUTPUT/report.json`` / ``OUTPUT/report.md`` (mean and sample standard
deviation over the seeds, and the per-seed values) and the gallery-size curve of the first
seed's three models, ``OUTPUT/gallery_curve.png`` (the library's
``tools/plot_gallery_curve.py`` computation; the toy set has gallery sizes 50 and 100 only).
"""

from __future__ import annotations

import os

import person_search  # noqa: F401  (compat layer first: registers datasets, models, evaluators)

# isort: split
from detectron2.utils.logger import setup_logger

from maskguided import add_maskguided_config
from person_search.engine import (
    PersonSearchTrainer,
    comparison_argument_parser,
    mean_std,
    parse_comparison_args,
    seeded_config,
    train_from_scratch,
)
from person_search.engine.demo import ensure_toy_dataset, write_report
from person_search.evaluation.gallery_curve import gallery_size_curve
from person_search.evaluation.saved_results import load_search_results, resolve_cbgm
from person_search.visualization.gallery_curve import plot_gallery_curves

_REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
_PROJECT = os.path.join(_REPO, "projects", "MaskGuidedPS", "configs")
TOY = "toy_cuhk_sysu"
TEST = f"{TOY}_test"
# The paper's portions of 5 training images (one image drawn from each).
MASK_FRACTION = 0.2
MODELS = {
    "OIM": (os.path.join(_REPO, "configs", "oim", "oim_toy_cuhk_sysu.yaml"), []),
    "MaskGuidedPS alpha=5%": (
        os.path.join(_PROJECT, "maskguided_toy_cuhk_sysu.yaml"),
        ["INPUT.MASKGUIDED.IMAGE_FRACTION", "0.05"],
    ),
    "MaskGuidedPS Full": (os.path.join(_PROJECT, "maskguided_toy_cuhk_sysu.yaml"), []),
}
# Columns: (label, results group, metric).
COLUMNS = (
    ("mAP (gallery 100)", "search", "gallery_100/mAP"),
    ("top-1 (gallery 100)", "search", "gallery_100/top1"),
    ("mAP (occlusion)", "search", "occlusion/mAP"),
    ("mAP (low resolution)", "search", "resolution/mAP"),
    ("detection AP", "detection", "AP"),
)


def run_one(config_file: str, extra: list[str], seed: int, output_dir: str, opts: list[str]):
    """Train ``config_file`` with ``SEED`` = ``seed`` (the trainer evaluates at the end);
    returns the metrics, the iterations and times, and the results file."""
    overrides = [*extra, *opts, "DATASETS.TEST", str((TEST,))]
    cfg = seeded_config(config_file, seed, output_dir, overrides, add_maskguided_config)
    trainer, seconds = train_from_scratch(cfg, PersonSearchTrainer)
    results = getattr(trainer, "_last_eval_results", None)  # Detectron2's end-of-training eval
    if not results:
        raise RuntimeError(f"{config_file}: the trainer returned no evaluation results")
    return {
        "iterations": cfg.SOLVER.MAX_ITER,
        "images_per_batch": cfg.SOLVER.IMS_PER_BATCH,
        "seconds": round(seconds, 1),
        "metrics": {f"{g}/{m}": float(results[g][m]) for _, g, m in COLUMNS},
        "results_file": os.path.join(output_dir, "inference", TEST, "search_results.pth"),
    }


def markdown(runs: dict[str, list[dict]], seeds: list[int], summary: dict) -> str:
    first = next(iter(runs.values()))[0]
    head = ["model", "iterations x images"] + [label for label, _, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(COLUMNS)]
    for model, model_runs in runs.items():
        cells = [model, f"{first['iterations']} x {first['images_per_batch']}"]
        cells += [mean_std([r["metrics"][f"{g}/{m}"] for r in model_runs]) for _, g, m in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"Seeds {seeds} (mean ± sample std). Toy CUHK-SYSU: {summary['train_images']} training "
        f"images, {summary['mask_images']} with masks ({summary['mask_persons']} labelled "
        f"persons), {summary['queries']} queries, gallery sizes {summary['gallery_sizes']}.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = comparison_argument_parser(__doc__.splitlines()[0], "output/maskguided_toy")
    args = parse_comparison_args(parser, argv)
    output = os.path.abspath(args.output)
    data_root = os.path.join(output, "data")
    os.makedirs(output, exist_ok=True)
    setup_logger(output=output, name="person_search")
    setup_logger(output=output, name="maskguided")
    setup_logger(output=output)
    summary = ensure_toy_dataset(data_root, "cuhk_sysu", TOY, 0, mask_fraction=MASK_FRACTION)
    os.environ["DETECTRON2_DATASETS"] = data_root
    runs: dict[str, list[dict]] = {model: [] for model in MODELS}
    for seed in args.seeds:
        for model, (config_file, extra) in MODELS.items():
            slug = model.replace(" ", "_").replace("=", "").replace("%", "").lower()
            out = os.path.join(output, f"{slug}_seed{seed}")
            runs[model].append({"seed": seed, **run_one(config_file, extra, seed, out, args.opts)})
    curves = {}
    for model, model_runs in runs.items():
        saved = load_search_results(model_runs[0]["results_file"])
        curves[model] = gallery_size_curve(saved, cbgm=resolve_cbgm(saved))
    plot_gallery_curves(
        curves,
        os.path.join(output, "gallery_curve.png"),
        title=f"toy CUHK-SYSU, seed {args.seeds[0]}",
    )
    report = {
        "seeds": args.seeds,
        "overrides": args.opts,
        "configs": {m: [os.path.relpath(c, _REPO), e] for m, (c, e) in MODELS.items()},
        "dataset": summary,
        "runs": runs,
        "gallery_curve": {m: [vars(p) for p in c] for m, c in curves.items()},
    }
    text = markdown(runs, args.seeds, summary)
    write_report(output, report, "# MaskGuidedPS vs OIM on the toy CUHK-SYSU\n\n" + text)
    print(text)
    return report


if __name__ == "__main__":
    main()
