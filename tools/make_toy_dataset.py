#!/usr/bin/env python
"""Generate a synthetic dataset in a real dataset's file format.

    python tools/make_toy_dataset.py --format cuhk_sysu --out datasets/toy_cuhk_sysu --seed 0
    python tools/make_toy_dataset.py --format prw --out datasets/toy_prw --seed 0
    python tools/make_toy_dataset.py --format market1501 --out datasets/toy_market1501 --seed 0
    python tools/make_toy_dataset.py --format cuhk_sysu --out datasets/toy_cuhk_sysu --seed 0 \
        --mask-fraction 1.0     # + person masks (labelme and COCO layouts, datasets/README.md)

Size options left unset keep the writer's defaults (which train in minutes on a CPU). The output
directory is written atomically and must be empty unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import json

from person_search.data.toy import TOY_FORMATS, make_toy_dataset

# CLI option -> writer keyword, for the size options. Each writer takes its own subset.
_SIZE_OPTIONS = {
    "--num-train-ids": "num_train_ids",
    "--num-test-ids": "num_test_ids",
    "--num-ids": "num_ids",
    "--num-train-images": "num_train_images",
    "--num-test-images": "num_test_images",
    "--num-train-frames": "num_train_frames",
    "--num-test-frames": "num_test_frames",
    "--num-images": "num_images",
    "--num-cameras": "num_cameras",
    "--num-unlabelled-ids": "num_unlabelled_ids",
    "--queries-per-id": "queries_per_id",
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=sorted(TOY_FORMATS))
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    for option, dest in _SIZE_OPTIONS.items():
        parser.add_argument(option, dest=dest, type=int, default=None, help="size option")
    parser.add_argument(
        "--mask-fraction",
        type=float,
        default=None,
        help="cuhk_sysu: person masks on about this fraction of the training images (0 = none)",
    )
    args = parser.parse_args(argv)
    sizes = {dest: getattr(args, dest) for dest in (*_SIZE_OPTIONS.values(), "mask_fraction")}
    sizes = {k: v for k, v in sizes.items() if v is not None}
    try:
        summary = make_toy_dataset(
            args.format, args.out, args.seed, overwrite=args.overwrite, **sizes
        )
    except (FileExistsError, NotADirectoryError, TypeError, ImportError, ValueError) as e:
        parser.error(str(e))
    print(json.dumps(summary, indent=2, sort_keys=True))
    return summary


if __name__ == "__main__":
    main()
