#!/usr/bin/env python
"""Training and gallery-inference speed of every person-search baseline and re-id model at the
toy size.

    python benchmarks/bench_train.py [--device cpu|cuda] [--iters 10] [--warmup 2]
    python benchmarks/bench_train.py --configs configs/oim/oim_toy_cuhk_sysu.yaml --iters 1
    python benchmarks/bench_train.py --configs --reid-configs configs/reid/toy_market1501.yaml \
        projects/SGSFA/configs/toy_market1501.yaml          # the re-id part only

For each toy config (``configs/*/*_toy_cuhk_sysu.yaml``: OIM, SeqNet, SeqNeXt, HOIM) it builds
the model from scratch and times, after ``--warmup`` untimed steps:

* **training**: ``--iters`` steps of forward + backward + optimizer step (the config's optimizer)
  on batches of ``SOLVER.IMS_PER_BATCH`` synthetic scene images of the toy size (240 x 320,
  ``--persons`` person boxes each, identities drawn from ``--ids``); images/s (larger batches
  amortise more per-step overhead: the batch is printed).
* **gallery inference**: ``--iters`` scene images, one per forward pass as the test loader
  feeds them, detection + embedding; images/s, and the mean number of detections returned (an
  untrained model's detections, hence SeqNet's second-stage work, depend on its random init).

The re-id part does the same for each re-id toy config (``--reid-configs``: the strong
baseline ``configs/reid/toy_market1501.yaml`` and the projects' toy configs, e.g. SGSFA's):
training steps on P x K batches of synthetic person crops (with the part masks of a standing
person for models trained with parsing masks), and inference over batches of
``TEST.REID.IMS_PER_BATCH`` crops; speeds also as ratios to the baseline's. A project config
(``projects/<Name>/configs/...``) is built with its package's ``add_<name>_config``, imported
from the project folder (:data:`PROJECT_PACKAGES`).

Inputs are synthetic (uniform noise with flat-coloured person rectangles), so no dataset is
needed and every run sees the same tensors (``--seed``). Each speed is also printed as a ratio
to OIM's measured in the same run (the reference).
"""

from __future__ import annotations

import argparse
import glob
import importlib
import importlib.util
import os
import sys
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
REID_TOY_CONFIGS = [
    os.path.join(_ROOT, "configs", "reid", "toy_market1501.yaml"),
    os.path.join(_ROOT, "projects", "SGSFA", "configs", "toy_market1501.yaml"),
]
REID_REFERENCE = "reid"  # the re-id baseline (configs/reid)
# projects/<Name> -> (its package folder, the function adding its config keys)
PROJECT_PACKAGES = {"SGSFA": ("sgsfa", "add_sgsfa_config")}


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


def _time_training(model, optimizer, batches: list[list[dict]], args: argparse.Namespace) -> float:
    """Seconds of the training steps on ``batches`` after the first ``args.warmup``."""
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
    return time.perf_counter() - start


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

    train_ips = args.iters * batch / _time_training(model, optimizer, batches, args)

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


def _project_of(config_file: str) -> str | None:
    """``Name`` of a ``projects/<Name>/configs/...`` file, else None."""
    parts = os.path.relpath(os.path.abspath(config_file), os.path.abspath(_ROOT)).split(os.sep)
    return parts[1] if len(parts) > 2 and parts[0] == "projects" else None


def _project_add_config(project: str):
    """The ``add_<name>_config`` of a project, importing its package from its folder."""
    if project not in PROJECT_PACKAGES:
        raise ValueError(f"no package known for project {project!r}: add it to PROJECT_PACKAGES")
    package, function = PROJECT_PACKAGES[project]
    if package not in sys.modules:
        init = os.path.join(_ROOT, "projects", project, package, "__init__.py")
        spec = importlib.util.spec_from_file_location(
            package, init, submodule_search_locations=[os.path.dirname(init)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return getattr(importlib.import_module(package), function)


def _reid_model_name(config_file: str) -> str:
    project = _project_of(config_file)
    return project.lower() if project else os.path.basename(os.path.dirname(config_file))


def synthetic_crops(
    num: int, rng: np.random.Generator, *, size: tuple[int, int], ids: int, parts: int
) -> list[dict]:
    """``num`` re-id inputs: ``image`` (3, H, W) uint8 noise with a flat-coloured standing
    person, ``person_id`` (``ids`` identities, in turn: P x K batches) and, if ``parts`` > 0,
    ``part_masks`` (1 + parts, H, W): the person's box, then ``parts`` horizontal bands of it."""
    height, width = size
    out = []
    for i in range(num):
        image = rng.integers(0, 256, size=(3, height, width), dtype=np.uint8)
        y0, y1 = (int(v) for v in rng.integers(0, height // 8, size=2))
        x0, x1 = (int(v) for v in rng.integers(0, width // 4, size=2))
        y1, x1 = height - y1, width - x1
        image[:, y0:y1, x0:x1] = rng.integers(0, 256, size=(3, 1, 1))
        item = {"image": torch.from_numpy(image), "person_id": i % ids}
        if parts:
            masks = torch.zeros(1 + parts, height, width)
            edges = np.linspace(y0, y1, parts + 1).round().astype(int)
            for p in range(parts):
                masks[1 + p, edges[p] : edges[p + 1], x0:x1] = 1
            masks[0] = masks[1:].amax(0)
            item["part_masks"] = masks
        out.append(item)
    return out


def bench_reid_config(config_file: str, args: argparse.Namespace) -> dict:
    """Train and inference images/s of one re-id config (see the module docstring)."""
    project = _project_of(config_file)
    add_config = _project_add_config(project) if project else None
    cfg = load_config(
        config_file,
        ["MODEL.DEVICE", args.device, "MODEL.REID.HEAD.NUM_CLASSES", str(args.ids)],
        add_config,
    )
    seed_all_rng(args.seed)
    model = Trainer.build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    rng = np.random.default_rng(args.seed)
    batch = cfg.SOLVER.IMS_PER_BATCH
    parts = len(cfg.INPUT.REID.PARSING_GROUPS) if cfg.INPUT.REID.LOAD_PARSING else 0
    crops = synthetic_crops(
        batch * (args.warmup + args.iters),
        rng,
        size=tuple(cfg.INPUT.REID.SIZE_TRAIN),
        ids=min(args.ids, batch // cfg.DATALOADER.NUM_INSTANCES),
        parts=parts,
    )
    batches = [crops[i : i + batch] for i in range(0, len(crops), batch)]
    train_ips = args.iters * batch / _time_training(model, optimizer, batches, args)

    model.eval()
    test_batch = cfg.TEST.REID.IMS_PER_BATCH
    gallery = [{"image": c["image"]} for c in crops]
    gallery = (gallery * (1 + test_batch * (args.warmup + args.iters) // len(gallery)))[
        : test_batch * (args.warmup + args.iters)
    ]
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            if i == args.warmup:
                _sync(args.device)
                start = time.perf_counter()
            model(gallery[i * test_batch : (i + 1) * test_batch])
        _sync(args.device)
    infer_ips = args.iters * test_batch / (time.perf_counter() - start)
    return {
        "task": "reid",
        "model": _reid_model_name(config_file),
        "config": os.path.relpath(config_file, _ROOT),
        "batch": batch,
        "train_ips": train_ips,
        "infer_ips": infer_ips,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def _print_table(title: str, rows: list[dict], reference: str, extra: tuple[str, ...] = ()):
    ref = next((r for r in rows if r["model"] == reference), rows[0])
    table = [
        [
            r["model"],
            r["batch"],
            r["params_m"],
            r["train_ips"],
            r["train_ips"] / ref["train_ips"],
            r["infer_ips"],
            r["infer_ips"] / ref["infer_ips"],
            *(r[k] for k in extra),
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
        *(_EXTRA_HEADERS[k] for k in extra),
    ]
    print(title)
    print(tabulate(table, headers=headers, floatfmt=".2f", tablefmt="pipe"))


# Headers of the optional columns of the printed tables.
_EXTRA_HEADERS = {"dets_per_image": "dets/img"}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--configs", nargs="*", default=TOY_CONFIGS, help="person-search configs to time"
    )
    parser.add_argument(
        "--reid-configs", nargs="*", default=REID_TOY_CONFIGS, help="re-id configs to time"
    )
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
    missing = [c for c in args.configs + args.reid_configs if not os.path.isfile(c)]
    if missing:
        parser.error(f"config files not found: {missing}")
    if not args.configs and not args.reid_configs:
        parser.error("nothing to time: --configs and --reid-configs are both empty")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = args.device if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    steps = f"{args.iters} timed steps after {args.warmup} warm-up"
    rows = [dict(bench_config(c, args), task="person_search") for c in args.configs]
    if rows:
        title = f"Toy-size person search ({IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, {device}): {steps}"
        _print_table(title, rows, REFERENCE, extra=("dets_per_image",))
    reid_rows = [bench_reid_config(c, args) for c in args.reid_configs]
    if reid_rows:
        _print_table(f"Toy-size re-id ({device}): {steps}", reid_rows, REID_REFERENCE)
    return rows + reid_rows


if __name__ == "__main__":
    main()
