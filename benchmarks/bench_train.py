#!/usr/bin/env python
"""Training and inference speed of every person-search baseline and every re-id model at the
toy size.

    python benchmarks/bench_train.py [--device cpu|cuda] [--iters 10] [--warmup 2]
    python benchmarks/bench_train.py --configs configs/oim/oim_toy_cuhk_sysu.yaml
    python benchmarks/bench_train.py --part reid --reid-models reid-baseline pan sgsfa

**Person search.** For each model of ``PS_MODELS`` (the toy configs
``configs/*/*_toy_cuhk_sysu.yaml``: OIM, SeqNet, SeqNeXt, HOIM, and the person-search projects'
toy configs: MaskGuidedPS, whose synthetic images all carry masks of their labelled persons, so
its ratio to OIM is the mask branch's cost per step) it builds the model from scratch and times,
after ``--warmup`` untimed steps:

* **training**: ``--iters`` steps of forward + backward + optimizer step (the config's optimizer)
  on batches of ``SOLVER.IMS_PER_BATCH`` synthetic scene images of the toy size (240 x 320,
  ``--persons`` person boxes each, identities drawn from ``--ids``); images/s (larger batches
  amortise more per-step overhead: the batch is printed).
* **gallery inference** (first, on the model as initialised): ``--iters`` scene images, one
  per forward pass as the test loader feeds them, detection + embedding; images/s, and the mean
  number of detections returned (an untrained model's detections, hence SeqNet's second-stage
  work, depend on its random init; a project built on a baseline from the same seed starts
  from the same weights, so MGOFE and SeqNeXt make the same detections).

Inputs are synthetic (uniform noise with flat-coloured person rectangles), so no dataset is
needed and every run sees the same tensors (``--seed``). Each speed is also printed as a ratio
to OIM's measured in the same run (the reference), and a project's to its baseline's
(``PS_BASELINES``: speed ratios, and the inference cost = baseline img/s / model img/s). A
config with ``INPUT.MGRO`` on trains on MGRO's occluded copies, made by the occlusion op as the
training mapper makes them, timed apart: its share of a training step (op + step) is printed.

**Re-id.** For each model of ``REID_MODELS`` (the library's BNNeck baseline and the projects'
heads, PAN and SGSFA, at their toy configs: 128x64 crops) it times ``--iters`` training steps on
P x K batches of ``SOLVER.IMS_PER_BATCH`` synthetic crops (``--ids`` identities) and inference
on ``--iters`` batches of ``TEST.REID.IMS_PER_BATCH`` crops (as the re-id test loader feeds
them); images/s, and the ratio to the baseline's measured in the same run.
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
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage
from tabulate import tabulate

from person_search.data.occlusion import MGRO
from person_search.engine import Trainer, build_optimizer, import_add_config, load_config

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOY_CONFIGS = sorted(glob.glob(os.path.join(_ROOT, "configs", "*", "*_toy_cuhk_sysu.yaml")))
IMAGE_SIZE = (240, 320)  # (height, width) of a toy image after the test resize
REFERENCE = "oim"  # the model whose speeds the ratios divide by
# Person-search models: name -> (toy config, "module:function" adding the project's config keys
# or None). The library's baselines, then one entry per project.
PS_MODELS = {os.path.basename(os.path.dirname(c)): (c, None) for c in TOY_CONFIGS}
# IIDFC beside HOIM; "iidfc-no-pam" (its Table V "+IRR+FC" step) gives PAM's share of a step.
_IIDFC_CONFIGS = os.path.join(_ROOT, "projects", "IIDFC", "configs")
PS_MODELS.update(
    {
        "iidfc": (
            os.path.join(_IIDFC_CONFIGS, "iidfc_toy_cuhk_sysu.yaml"),
            "iidfc:add_iidfc_config",
        ),
        "iidfc-no-pam": (
            os.path.join(_IIDFC_CONFIGS, "ablations", "iidfc_toy_cuhk_sysu_irr_fc.yaml"),
            "iidfc:add_iidfc_config",
        ),
    }
)
PS_MODELS["maskguided"] = (
    os.path.join(_ROOT, "projects", "MaskGuidedPS", "configs", "maskguided_toy_cuhk_sysu.yaml"),
    "maskguided:add_maskguided_config",
)
PS_MODELS["mgofe"] = (
    os.path.join(_ROOT, "projects", "MGOFE", "configs", "mgofe_toy_cuhk_sysu.yaml"),
    "mgofe:add_mgofe_config",
)
# Project -> the library baseline it is built on (ratios printed when both are timed).
PS_BASELINES = {"mgofe": "seqnext", "iidfc": "hoim", "iidfc-no-pam": "hoim", "maskguided": "oim"}
# Project -> its issue's target on the inference cost (baseline img/s / project img/s).
INFERENCE_COST_TARGETS = {"mgofe": 1.05}
# Re-id models: name -> (toy config, "module:function" adding the project's config keys).
REID_MODELS = {
    "reid-baseline": (os.path.join(_ROOT, "configs", "reid", "toy_market1501.yaml"), None),
    "pan": (
        os.path.join(_ROOT, "projects", "PAN", "configs", "pan_toy_market1501.yaml"),
        "pan:add_pan_config",
    ),
    "sgsfa": (
        os.path.join(_ROOT, "projects", "SGSFA", "configs", "toy_market1501.yaml"),
        "sgsfa:add_sgsfa_config",
    ),
}
REID_REFERENCE = "reid-baseline"
PARTS = ("all", "person_search", "reid")


def synthetic_scenes(
    num: int, rng: np.random.Generator, *, persons: int, ids: int, masks: bool = False
) -> list[dict]:
    """``num`` model inputs: ``image`` (3, H, W) uint8 noise with ``persons`` flat-coloured
    boxes, ``height``/``width``, and training ``instances`` (gt_boxes, gt_classes, gt_pids;
    the last person of each image unlabelled). With ``masks`` (a model with a mask branch) also
    ``gt_masks`` (each box as a polygon) and ``gt_has_mask`` (the labelled persons): every
    image carries masks, the mask branch's most costly step."""
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
        if masks:
            instances.gt_masks = PolygonMasks(
                [[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in boxes]
            )
            instances.gt_has_mask = instances.gt_pids >= 0
        out.append(
            {
                "image": torch.from_numpy(image),
                "height": height,
                "width": width,
                "instances": instances,
            }
        )
    return out


def add_mgro_copies(scenes: list[dict], cfg) -> float:
    """Give every training scene MGRO's ``occluded_images`` (``cfg.INPUT.MGRO``; image i at
    iteration i, as the training mapper makes them); returns the seconds the op took."""
    mgro = MGRO.from_config(cfg, base_seed=max(cfg.SEED, 0))
    start = time.perf_counter()
    for i, scene in enumerate(scenes):
        image = scene["image"].permute(1, 2, 0).numpy()
        copies = mgro.copies(image, scene["instances"].gt_boxes.tensor.numpy(), i, i)
        scene["occluded_images"] = torch.from_numpy(
            np.ascontiguousarray(copies.transpose(0, 3, 1, 2))
        )
    return time.perf_counter() - start


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(batches: list, step, warmup: int, device: str) -> tuple[float, list]:
    """Run ``step`` on each batch: the seconds the batches after the first ``warmup`` took,
    and their outputs."""
    outputs = []
    for i, inputs in enumerate(batches):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        out = step(inputs)
        if i >= warmup:
            outputs.append(out)
    _sync(device)
    return time.perf_counter() - start, outputs


def _train_speed(model, optimizer, batches: list[list[dict]], args: argparse.Namespace) -> float:
    """Images/s of training steps (forward, backward, optimizer step) on the timed batches."""

    def step(inputs):
        losses = model(inputs)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    model.train()
    with EventStorage(0):
        seconds, _ = _timed(batches, step, args.warmup, args.device)
    return args.iters * len(batches[0]) / seconds


def _inference_speed(model, batches: list[list[dict]], args: argparse.Namespace):
    """Images/s of inference on the timed batches, and their outputs."""
    model.eval()
    with torch.no_grad():
        seconds, outputs = _timed(batches, model, args.warmup, args.device)
    return args.iters * len(batches[0]) / seconds, outputs


def bench_config(
    config_file: str, args: argparse.Namespace, add_config: str | None = None, name: str = ""
) -> dict:
    """Train and inference images/s of one person-search config (see the module docstring);
    ``add_config``: "module:function" adding a project's keys."""
    cfg = load_config(
        config_file,
        ["MODEL.DEVICE", args.device, "MODEL.OIM.NUM_PERSON_IDS", str(args.ids)],
        _add_config(add_config),
    )
    seed_all_rng(args.seed)
    model = Trainer.build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    rng = np.random.default_rng(args.seed)
    batch = cfg.SOLVER.IMS_PER_BATCH
    scenes = synthetic_scenes(
        batch * (args.warmup + args.iters),
        rng,
        persons=args.persons,
        ids=args.ids,
        masks=cfg.MODEL.MASK_ON,
    )
    # Inference first, on the model as initialised: models that share their init (a project
    # and its baseline, built from the same seed) then make the same detections.
    gallery = [{"image": s["image"], "height": s["height"], "width": s["width"]} for s in scenes]
    infer_ips, outputs = _inference_speed(
        model, [[x] for x in gallery][: args.warmup + args.iters], args
    )
    mgro_seconds = add_mgro_copies(scenes, cfg) if cfg.INPUT.MGRO.ENABLED else None
    batches = [scenes[i : i + batch] for i in range(0, len(scenes), batch)]
    train_ips = _train_speed(model, optimizer, batches, args)
    detections = sum(len(out[0]["instances"]) for out in outputs)
    num_params = sum(p.numel() for p in model.parameters())
    return {
        "model": name or os.path.basename(os.path.dirname(config_file)),
        "config": os.path.relpath(config_file, _ROOT),
        "batch": batch,
        "train_ips": train_ips,
        "infer_ips": infer_ips,
        "dets_per_image": detections / args.iters,
        "params_m": num_params / 1e6,
        # the op's seconds per training step (batch images), None without MGRO
        "mgro_step_seconds": None if mgro_seconds is None else mgro_seconds / len(batches),
    }


def synthetic_crops(
    num: int, rng: np.random.Generator, *, size: tuple[int, int], ids: int, parts: int = 0
) -> list[dict]:
    """``num`` re-id inputs: ``image`` (3, H, W) uint8, a flat colour per identity and body
    third plus noise, and ``person_id`` cycling through ``ids`` identities in runs of 4 (P x K
    batches with K = 4); with ``parts`` > 0 also ``part_masks`` (1 + parts, H, W) float32: the
    whole crop as the body, then ``parts`` horizontal bands (for heads trained on parsing)."""
    height, width = size
    masks = None
    if parts:
        masks = torch.zeros(1 + parts, height, width)
        masks[0] = 1.0
        edges = np.linspace(0, height, parts + 1).round().astype(int)
        for p in range(parts):
            masks[1 + p, edges[p] : edges[p + 1]] = 1.0
    colours = rng.integers(0, 256, size=(ids, 3, 3, 1, 1))
    out = []
    for i in range(num):
        pid = (i // 4) % ids
        image = rng.integers(0, 60, size=(3, height, width)).astype(np.int64)
        for third in range(3):
            rows = slice(third * height // 3, (third + 1) * height // 3)
            image[:, rows] += colours[pid, third]
        image = np.clip(image, 0, 255).astype(np.uint8)
        item = {"image": torch.from_numpy(image), "person_id": pid}
        if masks is not None:
            item["part_masks"] = masks
        out.append(item)
    return out


def _add_config(spec: str | None):
    """A project's ``add_<name>_config`` from its "module:function" spec (None: no project)."""
    return None if spec is None else import_add_config(spec)


def bench_reid_model(name: str, args: argparse.Namespace) -> dict:
    """Train and inference images/s of one re-id model (see the module docstring)."""
    config_file, add_config = REID_MODELS[name]
    cfg = load_config(
        config_file,
        ["MODEL.DEVICE", args.device, "MODEL.REID.HEAD.NUM_CLASSES", str(args.ids)],
        _add_config(add_config),
    )
    seed_all_rng(args.seed)
    model = Trainer.build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    rng = np.random.default_rng(args.seed)
    batch = cfg.SOLVER.IMS_PER_BATCH
    steps = args.warmup + args.iters
    size = tuple(cfg.INPUT.REID.SIZE_TRAIN)
    # Heads supervised by parsing (SGSFA) train on part masks of the configured groups.
    parts = len(cfg.INPUT.REID.PARSING_GROUPS) if cfg.INPUT.REID.LOAD_PARSING else 0
    crops = synthetic_crops(batch * steps, rng, size=size, ids=args.ids, parts=parts)
    batches = [crops[i * batch : (i + 1) * batch] for i in range(steps)]
    train_ips = _train_speed(model, optimizer, batches, args)
    test_batch = cfg.TEST.REID.IMS_PER_BATCH
    size = tuple(cfg.INPUT.REID.SIZE_TEST)
    gallery = synthetic_crops(test_batch * steps, rng, size=size, ids=args.ids)
    batches = [gallery[i * test_batch : (i + 1) * test_batch] for i in range(steps)]
    infer_ips, outputs = _inference_speed(model, batches, args)
    return {
        "model": name,
        "config": os.path.relpath(config_file, _ROOT),
        "batch": batch,
        "test_batch": test_batch,
        "train_ips": train_ips,
        "infer_ips": infer_ips,
        "embedding": int(outputs[0][0]["features"].numel()),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def _print_table(
    title: str, rows: list[dict], reference: str, columns: list[tuple], trailing: list[tuple]
) -> None:
    """Print ``rows`` as a markdown table: the model, ``columns`` ((header, key) pairs), the
    train and inference speeds each followed by its ratio to the ``reference`` row's, then
    ``trailing`` columns."""
    ref = next((r for r in rows if r["model"] == reference), rows[0])
    headers = ["model", *(h for h, _ in columns)]
    headers += ["train img/s", f"x {ref['model']}", "infer img/s", f"x {ref['model']}"]
    headers += [h for h, _ in trailing]
    table = []
    for r in rows:
        row = [r["model"]] + [r[key] for _, key in columns]
        row += [r["train_ips"], r["train_ips"] / ref["train_ips"]]
        row += [r["infer_ips"], r["infer_ips"] / ref["infer_ips"]]
        table.append(row + [r[key] for _, key in trailing])
    print(title)
    print(tabulate(table, headers=headers, floatfmt=".2f", tablefmt="pipe"))


def _print_project_ratios(rows: list[dict]) -> None:
    """Each project beside its baseline (``PS_BASELINES``), and the occlusion op's share of a
    training step of every model trained with MGRO."""
    speeds = {r["model"]: r for r in rows}
    for model, base in PS_BASELINES.items():
        if model in speeds and base in speeds:
            m, b = speeds[model], speeds[base]
            target = INFERENCE_COST_TARGETS.get(model)
            print(
                f"{model} vs {base}: training x{m['train_ips'] / b['train_ips']:.2f} "
                f"img/s, gallery inference x{m['infer_ips'] / b['infer_ips']:.2f} img/s, "
                f"inference cost x{b['infer_ips'] / m['infer_ips']:.3f}"
                + ("" if target is None else f" (target <= {target:g})")
            )
    for r in rows:
        if r.get("mgro_step_seconds") is not None:
            step = r["batch"] / r["train_ips"]
            share = r["mgro_step_seconds"] / (r["mgro_step_seconds"] + step)
            print(
                f"{r['model']}: occlusion op (MGRO copies) {1e3 * r['mgro_step_seconds']:.2f} ms "
                f"per training step of {1e3 * step:.0f} ms: {100 * share:.2f}% (target < 2%)"
            )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", default="all", choices=PARTS, help="which models to time")
    parser.add_argument(
        "--ps-models",
        nargs="+",
        default=list(PS_MODELS),
        choices=list(PS_MODELS),
        help="person-search models of PS_MODELS to time",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help="time these person-search configs (library keys only) instead of --ps-models",
    )
    parser.add_argument(
        "--reid-models", nargs="+", default=list(REID_MODELS), choices=list(REID_MODELS)
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--iters", type=int, default=10, help="timed steps / images")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps / images first")
    parser.add_argument("--persons", type=int, default=3, help="person boxes per image")
    parser.add_argument("--ids", type=int, default=24, help="labelled identities (classifiers)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.persons < 2 or args.ids < 1:
        parser.error("need --iters >= 1, --warmup >= 0, --persons >= 2, --ids >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    missing = [c for c in args.configs or [] if not os.path.isfile(c)]
    if missing:
        parser.error(f"config files not found: {missing}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    steps = f"{args.iters} timed steps after {args.warmup} warm-up"

    rows = []
    if args.part in ("all", "person_search"):
        if args.configs:
            jobs = [(c, None, "") for c in args.configs]
        else:
            jobs = [(*PS_MODELS[name], name) for name in args.ps_models]
        ps_rows = [
            dict(bench_config(config, args, add, name), task="person_search")
            for config, add, name in jobs
        ]
        _print_table(
            f"Toy-size person search ({IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, {device}): {steps}",
            ps_rows,
            REFERENCE,
            [("batch", "batch"), ("params (M)", "params_m")],
            [("dets/img", "dets_per_image")],
        )
        _print_project_ratios(ps_rows)
        rows += ps_rows
    if args.part in ("all", "reid"):
        reid_rows = [dict(bench_reid_model(n, args), task="reid") for n in args.reid_models]
        _print_table(
            f"Toy-size re-id (128x64 crops, {device}): {steps}",
            reid_rows,
            REID_REFERENCE,
            [("batch", "batch"), ("test batch", "test_batch"), ("params (M)", "params_m")],
            [("embedding", "embedding")],
        )
        rows += reid_rows
    return rows


if __name__ == "__main__":
    main()
