#!/usr/bin/env python
"""Re-id demo: train the strong baseline on the synthetic toy re-id set, on CPU, in minutes.

    python tools/demo_reid.py --output output/demo_reid [KEY VALUE ...]

Generates the toy Market-1501-layout set under ``OUTPUT/data/toy_market1501`` (if missing;
seeded), evaluates the ``ReIDBaseline`` of ``configs/reid/toy_market1501.yaml`` as initialised
with the ReIDEvaluator, trains it with the task's trainer, evaluates it again, prints
rank-1 / mAP before and after side by side and writes ``OUTPUT/report.json`` and
``OUTPUT/report.md``. Exits with status 1 if training did not improve mAP. Trailing
``KEY VALUE`` pairs override the config (e.g. ``SOLVER.MAX_ITER 100``).
"""

from __future__ import annotations

import os
import sys

import person_search  # noqa: F401  (compat layer first: registers datasets, models, evaluators)

# isort: split
from person_search.engine.demo import (
    before_after_table,
    demo_argument_parser,
    demo_report,
    prepare_demo,
    train_before_after,
    write_report,
)

_DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "configs", "reid", "toy_market1501.yaml"
)
_TOY_DIR = "toy_market1501"  # folder the toy_market1501_* datasets are registered under
_METRICS = ("Rank-1", "Rank-5", "mAP", "mINP")


def _reid_metrics(results: dict) -> dict:
    """The ``{"Rank-1", ..., "mAP"}`` dict of the trainer's ``test`` results of one test set."""
    if "reid" not in results:
        raise KeyError(f"evaluation results hold no 'reid' metrics: {sorted(results)}")
    return dict(results["reid"])


def main(argv: list[str] | None = None) -> dict:
    parser = demo_argument_parser(__doc__.splitlines()[0], "output/demo_reid", _DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    setup = prepare_demo(args, "market1501", _TOY_DIR)
    cfg, output = setup.cfg, setup.output

    run = train_before_after(cfg)
    before, after = _reid_metrics(run.before), _reid_metrics(run.after)
    table = before_after_table([(k, before[k], after[k]) for k in _METRICS])
    report = demo_report(args, setup, run, before, after)
    summary = (
        f"{run.iterations} iterations in {run.train_seconds:.0f} s on {cfg.MODEL.DEVICE} "
        f"(demo total {report['total_seconds']:.0f} s); "
        f"{int(before['num_valid_queries'])} queries."
    )
    write_report(
        output,
        report,
        f"# Re-id demo: strong baseline on the toy Market-1501 set\n\n{summary}\n\n{table}\n",
    )
    print(f"{summary}\n{table}")
    print(f"report: {os.path.join(output, 'report.md')}")
    return report


if __name__ == "__main__":
    result = main()
    if result["trained"]["mAP"] <= result["untrained"]["mAP"]:
        print("training did not improve mAP", file=sys.stderr)
        sys.exit(1)
