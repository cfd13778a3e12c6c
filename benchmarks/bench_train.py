#!/usr/bin/env python
"""Training and gallery-inference speed of every person-search baseline at the toy size.

    python benchmarks/bench_train.py [--device cpu|cuda] [--iters 10] [--warmup 2]
    python benchmarks/bench_train.py --configs configs/oim/oim_toy_cuhk_sysu.yaml --iters 1

For each toy config (``configs/*/*_toy_cuhk_sysu.yaml``: OIM, SeqNet, SeqNeXt, HOIM) it builds
the model from scratch and times, after ``--warmup`` untimed steps:

* **training**: ``--iters`` steps of forward + backward + optimizer step (the config's optimizer)
  on batches of ``SOLVER.IMS_PER_BATCH`` synthetic scene images of the toy size (240 x 320,
  ``--persons`` person boxes each, identities drawn from ``--ids``); images/s (larger batches
  amortise more per-step overhead: the batch is printed).
* **gallery inference**: ``--iters`` scene images, one per forward pass as the test loader
  feeds them, detection + embedding; images/s, and the mean number of detections returned (an
  untrained model's detections, hence SeqNet's second-stage work, depend on its random init).

Inputs are synthetic (uniform noise with flat-coloured person rectangles), so no dataset is
needed and every run sees the same tensors (``--seed``). Each speed is also printed as a ratio
to OIM's measured in the same run (the reference).
"""

from __future__ import annotations

import argparse
import glob
import os
import time

import numpy as np
import torch

import person_search  # noqa: F401  (compat layer first: registers models)

# isort: split
from detectron2.structures import Boxes, Instances
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage
from tabulate import tabulate

from person_search.engine import Trainer, build_optimizer, load_config

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOY_CONFIGS = sorted(glob.glob(os.path.join(_ROOT, "configs", "*", "*_toy_cuhk_sysu.yaml")))
IMAGE_SIZE = (240, 320)  # (height, width) of a toy image after the test resize
REFERENCE = "oim"  # the model whose speeds the ratios divide by


def synthetic_scenes(num: int, rng: np.random.Generator, *, persons: int, ids: int) -> list[dict]:
    """``num`` model inputs: ``image`` (3, H, W) uint8 noise with ``persons`` flat-coloured
    boxes, ``height``/``width``, and training ``instances`` (gt_boxes, gt_classes, gt_pids;
    the last person of each image unlabelled)."""
    height, width = IMAGE_SIZE
    out = []
    for _ in range(num):
        image = rng.integers(0, 256, size=(3, height, width), dtype=np.uint8)
        boxes = []
        for _ in range(persons):
            h = int(rng.integers(height // 4, height * 3 // 4))
            w = max(8, h // 3)
            x0 = int(rng.integers(0, width - w))
            y0 = int(rng.integers(0, height - h))
            image[:, y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, size=(3, 1, 1))
            boxes.append([x0, y0, x0 + w, y0 + h])
        instances = Instances((height, width))
        instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        instances.gt_classes = torch.zeros(persons, dtype=torch.int64)
        pids = rng.integers(0, ids, size=persons)
        pids[-1] = -1
        instances.gt_pids = torch.as_tensor(pids, dtype=torch.int64)
        out.append(
            {
                "image": torch.from_numpy(image),
                "height": height,
                "width": width,
                "instances": instances,
            }
        )
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_config(config_file: str, args: argparse.Namespace) -> dict:
    """Train and inference images/s of one config (see the module docstring)."""
    cfg = load_config(
        config_file,
        ["MODEL.DEVICE", args.device, "MODEL.OIM.NUM_PERSON_IDS", str(args.ids)],
    )
    seed_all_rng(args.seed)
    model = Trainer.build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    rng = np.random.default_rng(args.seed)
    batch = cfg.SOLVER.IMS_PER_BATCH
    scenes = synthetic_scenes(
        batch * (args.warmup + args.iters), rng, persons=args.persons, ids=args.ids
    )
    batches = [scenes[i : i + batch] for i in range(0, len(scenes), batch)]

    model.train()
    with EventStorage(0):
        for i, inputs in enumerate(batches):
            if i == args.warmup:
                _sync(args.device)
                start = time.perf_counter()
            losses = model(inputs)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
        _sync(args.device)
    train_ips = args.iters * batch / (time.perf_counter() - start)

    model.eval()
    gallery = [{k: v for k, v in s.items() if k != "instances"} for s in scenes]
    gallery = gallery[: args.warmup + args.iters]
    detections = 0
    with torch.no_grad():
        for i, x in enumerate(gallery):
            if i == args.warmup:
                _sync(args.device)
                start = time.perf_counter()
            out = model([x])[0]
            if i >= args.warmup:
                detections += len(out["instances"])
        _sync(args.device)
    infer_ips = args.iters / (time.perf_counter() - start)
    num_params = sum(p.numel() for p in model.parameters())
    return {
        "model": os.path.basename(os.path.dirname(config_file)),
        "config": os.path.relpath(config_file, _ROOT),
        "batch": batch,
        "train_ips": train_ips,
        "infer_ips": infer_ips,
        "dets_per_image": detections / args.iters,
        "params_m": num_params / 1e6,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=TOY_CONFIGS, help="configs to time")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--iters", type=int, default=10, help="timed steps / images")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps / images first")
    parser.add_argument("--persons", type=int, default=3, help="person boxes per image")
    parser.add_argument("--ids", type=int, default=24, help="labelled identities (OIM table)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.persons < 2 or args.ids < 1:
        parser.error("need --iters >= 1, --warmup >= 0, --persons >= 2, --ids >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    missing = [c for c in args.configs if not os.path.isfile(c)]
    if missing:
        parser.error(f"config files not found: {missing}")
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = [bench_config(c, args) for c in args.configs]
    ref = next((r for r in rows if r["model"] == REFERENCE), rows[0])
    table = [
        [
            r["model"],
            r["batch"],
            r["params_m"],
            r["train_ips"],
            r["train_ips"] / ref["train_ips"],
            r["infer_ips"],
            r["infer_ips"] / ref["infer_ips"],
            r["dets_per_image"],
        ]
        for r in rows
    ]
    headers = [
        "model",
        "batch",
        "params (M)",
        "train img/s",
        f"x {ref['model']}",
        "infer img/s",
        f"x {ref['model']}",
        "dets/img",
    ]
    device = args.device if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(
        f"Toy-size person search ({IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, {device}): "
        f"{args.iters} timed steps after {args.warmup} warm-up"
    )
    print(tabulate(table, headers=headers, floatfmt=".2f", tablefmt="pipe"))
    return rows


if __name__ == "__main__":
    main()
