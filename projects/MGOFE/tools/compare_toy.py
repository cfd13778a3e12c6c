#!/usr/bin/env python
"""Toy rows of the MGOFE README: MGOFE vs its baseline SeqNeXt on the toy CUHK-SYSU set, at
equal iterations, over several training seeds, with unoccluded and occluded queries.

    python projects/MGOFE/tools/compare_toy.py --output output/mgofe_toy --seeds 0 1 2
    python projects/MGOFE/tools/compare_toy.py --output out --seeds 0 --models seqnext mgofe \
        -- SOLVER.MAX_ITER 50

Generates (once, seed 0, the sizes of ``tools/demo.py``) the toy CUHK-SYSU set under
``OUTPUT/data/toy_cuhk_sysu``. For each seed and model it trains the model's toy config with
the library's ``PersonSearchTrainer`` and the same overrides (``SEED`` = the seed; MGOFE's toy
config is SeqNeXt's plus MGOFE's keys, so data, schedule and iterations are equal), then
evaluates it with the occluded-query evaluation on (``TEST.PERSON_SEARCH.OCCLUDED_QUERIES``:
each query re-embedded with its box partly covered, at the library's default grids and cell
probabilities). MGOFE is evaluated twice, in both test modes: without test-time copies (its
default, ``MODEL.MGOFE.TEST_COPIES`` False) and with them (True), from the same weights.

Writes ``OUTPUT/report.json``, ``OUTPUT/report.md`` (mean and sample standard deviation over the
seeds, per-seed values in the JSON) and ``OUTPUT/occluded_queries.png``: the seed-averaged
occluded-query curves of every evaluated model (error bars: standard deviation).
"""

from __future__ import annotations

import os

import person_search  # noqa: F401  (compat layer first: registers datasets, models, evaluators)

# isort: split
import numpy as np
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

from mgofe import add_mgofe_config
from person_search.engine import (
    PersonSearchTrainer,
    comparison_argument_parser,
    mean_std,
    parse_comparison_args,
    seeded_config,
    train_from_scratch,
)
from person_search.engine.demo import ensure_toy_dataset, write_report
from person_search.evaluation.occluded_queries import (
    OccludedQueryCurve,
    plot_occluded_query_curves,
)

_REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
_SEQNEXT = os.path.join(_REPO, "configs", "seqnext", "seqnext_toy_cuhk_sysu.yaml")
_MGOFE = os.path.join(_REPO, "projects", "MGOFE", "configs", "mgofe_toy_cuhk_sysu.yaml")
# name -> (label, config, overrides): the baseline, MGOFE, and the paper's ablation steps.
MODELS = {
    "seqnext": ("SeqNeXt (baseline)", _SEQNEXT, []),
    "mgofe": ("MGOFE", _MGOFE, []),
    "mgro_only": (
        "+MGRO only (copies' detection losses)",
        _MGOFE,
        [
            "MODEL.MGOFE.MGFFE.ENABLED",
            "False",
            "MODEL.MGOFE.MGFA.ENABLED",
            "False",
            "MODEL.MGOFE.COPY_DETECTION_LOSS.ENABLED",
            "True",
        ],
    ),
    "no_mgffe": ("MGOFE w/o MGFFE", _MGOFE, ["MODEL.MGOFE.MGFFE.ENABLED", "False"]),
    "no_mgfa": ("MGOFE w/o MGFA", _MGOFE, ["MODEL.MGOFE.MGFA.ENABLED", "False"]),
}
TEST_COPIES_SUFFIX = "+test copies"  # the second evaluation of a model with MGFFE
# The toy set of tools/demo.py (192 labelled training identities over 240 images).
TOY_SIZES = {"num_train_ids": 192, "num_train_images": 240}
_TOY_DIR = "toy_cuhk_sysu"
_COLUMNS = (  # (header, key of a run's metrics)
    ("mAP", "mAP"),
    ("top-1", "top1"),
    ("occluded-query mAP", "occluded_mAP"),
    ("occluded-query top-1", "occluded_top1"),
    ("detection AP", "det_AP"),
)


def _curve_from_metrics(metrics: dict, grids: list, coverages: list, variant: str, n: int):
    """An :class:`OccludedQueryCurve` back from the evaluator's flat ``occluded_query``
    metrics (to average curves over seeds)."""
    shape = (len(grids), len(coverages))
    arrays = {k: np.zeros(shape) for k in ("mAP", "top1", "covered")}
    for gi, g in enumerate(grids):
        for ci, c in enumerate(coverages):
            for k in arrays:
                arrays[k][gi, ci] = metrics[f"{g[0]}x{g[1]}@{c:.2f}/{k}"]
    return OccludedQueryCurve(
        variant=variant,
        num_queries=n,
        grids=[tuple(g) for g in grids],
        coverages=list(coverages),
        clean_map=metrics["clean/mAP"],
        clean_top1=metrics["clean/top1"],
        map=arrays["mAP"],
        top1=arrays["top1"],
        covered=arrays["covered"],
    )


def _evaluate(cfg, model, output_dir: str) -> dict:
    """Person-search metrics of ``model`` on the config's test set, flattened for the table."""
    name = cfg.DATASETS.TEST[0]
    evaluator = PersonSearchTrainer.build_evaluator(cfg, name, output_folder=output_dir)
    return _flatten(cfg, PersonSearchTrainer.test(cfg, model, evaluators=[evaluator]))


def _flatten(cfg, results: dict) -> dict:
    """The table's metrics from the evaluator's results (one test set)."""
    occluded = results["occluded_query"]
    q = cfg.TEST.PERSON_SEARCH.OCCLUDED_QUERIES
    settings = [k[: -len("/mAP")] for k in occluded if k.endswith("/mAP") and k != "clean/mAP"]
    return {
        "mAP": float(results["search"]["mAP"]),
        "top1": float(results["search"]["top1"]),
        "occlusion_variant_mAP": float(results["search"].get("occlusion/mAP", float("nan"))),
        "occluded_mAP": float(np.mean([occluded[f"{s}/mAP"] for s in settings])),
        "occluded_top1": float(np.mean([occluded[f"{s}/top1"] for s in settings])),
        "det_AP": float(results["detection"]["AP"]),
        "occluded_query": {k: float(v) for k, v in occluded.items()},
        "occluded_settings": {"grids": [list(g) for g in q.GRIDS], "coverages": list(q.COVERAGES)},
    }


def run_one(name: str, seed: int, output_dir: str, opts: list[str]) -> list[tuple[str, dict]]:
    """Train model ``name`` with ``SEED`` = ``seed`` and evaluate it (both test modes for a
    model with MGFFE); returns ``[(label, metrics)]``."""
    label, config_file, model_opts = MODELS[name]
    cfg = seeded_config(
        config_file,
        seed,
        output_dir,
        [*model_opts, *opts, "TEST.PERSON_SEARCH.OCCLUDED_QUERIES.ENABLED", "True"],
        add_mgofe_config,
    )
    trainer, seconds = train_from_scratch(cfg, PersonSearchTrainer)
    common = {"seed": seed, "iterations": cfg.SOLVER.MAX_ITER, "train_seconds": round(seconds, 1)}
    # Detectron2's EvalHook evaluates the trained model at the end of training: use its results.
    last = getattr(trainer, "_last_eval_results", None)
    metrics = _flatten(cfg, last) if last else _evaluate(cfg, trainer.model, output_dir)
    out = [(label, {**common, **metrics})]
    if cfg.MODEL.META_ARCHITECTURE == "MGOFERCNN" and cfg.MODEL.MGOFE.MGFFE.ENABLED:
        # The other test mode, from the same weights: copies made at test time too.
        other = cfg.clone()
        other.defrost()
        other.MODEL.MGOFE.TEST_COPIES = not cfg.MODEL.MGOFE.TEST_COPIES
        other.freeze()
        model = build_model(other)
        model.load_state_dict(trainer.model.state_dict())
        suffix = TEST_COPIES_SUFFIX if other.MODEL.MGOFE.TEST_COPIES else "-test copies"
        metrics = _evaluate(other, model, os.path.join(output_dir, "eval_other_test_mode"))
        out.append((f"{label} {suffix}", {**common, **metrics}))
    return out


def markdown(runs: dict[str, list[dict]], seeds: list[int], dataset: dict) -> str:
    head = ["model", "iterations"] + [h for h, _ in _COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
    for label, model_runs in runs.items():
        cells = [label, str(model_runs[0]["iterations"])]
        cells += [mean_std([r[k] for r in model_runs]) for _, k in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"Seeds {seeds} (mean ± sample std). Toy CUHK-SYSU test: {dataset['queries']} queries, "
        f"{dataset['test_images']} test images (gallery_100 = the default variant); "
        "occluded-query columns: mean over the occluded-query settings (grids x cell "
        "probabilities).\n\n" + "\n".join(lines) + "\n"
    )


def plot(runs: dict[str, list[dict]], path: str, variant: str, num_queries: int) -> None:
    """Seed-averaged occluded-query curves of every model into ``path``."""
    curves, spreads = {}, {}
    for label, model_runs in runs.items():
        per_seed = [
            _curve_from_metrics(
                r["occluded_query"],
                r["occluded_settings"]["grids"],
                r["occluded_settings"]["coverages"],
                variant,
                num_queries,
            )
            for r in model_runs
        ]
        mean = per_seed[0]
        for attr in ("map", "top1", "covered"):
            setattr(mean, attr, np.mean([getattr(c, attr) for c in per_seed], axis=0))
        mean.clean_map = float(np.mean([c.clean_map for c in per_seed]))
        mean.clean_top1 = float(np.mean([c.clean_top1 for c in per_seed]))
        curves[label] = mean
        spreads[label] = tuple(
            np.std([getattr(c, a) for c in per_seed], axis=0, ddof=1 if len(per_seed) > 1 else 0)
            for a in ("map", "top1")
        )
    plot_occluded_query_curves(
        curves, path, title="Toy CUHK-SYSU, occluded queries", spreads=spreads
    )


def main(argv: list[str] | None = None) -> dict:
    parser = comparison_argument_parser(__doc__.splitlines()[0], "output/mgofe_toy")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["seqnext", "mgofe"],
        choices=sorted(MODELS),
        help="models to train (default: the baseline and MGOFE)",
    )
    args = parse_comparison_args(parser, argv)
    output = os.path.abspath(args.output)
    data_root = os.path.join(output, "data")
    os.makedirs(output, exist_ok=True)
    setup_logger(output=output, name="person_search")
    setup_logger(output=output)
    dataset = ensure_toy_dataset(data_root, "cuhk_sysu", _TOY_DIR, 0, **TOY_SIZES)
    os.environ["DETECTRON2_DATASETS"] = data_root
    runs: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for name in args.models:
            out = os.path.join(output, f"{name}_seed{seed}")
            for label, metrics in run_one(name, seed, out, args.opts):
                runs.setdefault(label, []).append(metrics)
    report = {
        "seeds": args.seeds,
        "overrides": args.opts,
        "models": {n: [MODELS[n][0], os.path.relpath(MODELS[n][1], _REPO)] for n in args.models},
        "model_overrides": {n: MODELS[n][2] for n in args.models},
        "dataset": dataset,
        "runs": runs,
    }
    plot(runs, os.path.join(output, "occluded_queries.png"), "gallery_100", dataset["queries"])
    text = markdown(runs, args.seeds, dataset)
    write_report(output, report, "# MGOFE vs SeqNeXt on the toy set\n\n" + text)
    print(text)
    return report


if __name__ == "__main__":
    main()
