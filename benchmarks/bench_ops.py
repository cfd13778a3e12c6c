#!/usr/bin/env python
"""Speed of the compiled ops of ``person_search._C`` against references measured in the
same run.

    python benchmarks/bench_ops.py [--device cpu|cuda] [--repeats 5] [--threads N]

(a) RoIAlign forward + backward, ours / ``torchvision.ops.roi_align``, on a detection-sized
    workload: 512 RoIs on the stride-16 map (1024 channels) of one 900x1500 image, 14x14
    output, adaptive sampling (ratio 0), aligned=True. Target on CPU: ratio <= 1.0.
(b) Multi-granularity occlusion of 6 images (3x900x1500, uint8 as Detectron2's mappers give
    them, then float32) x 10 boxes x 2 levels (halves, quarters), cell probability 0.5, mean
    fill; per-box loops / op. Two loops are timed: the plain-PyTorch per-box reference
    (:mod:`person_search.layers.occlusion_reference`, the same function: the run checks its
    output equals the op's), on which the target applies (>= 20x faster on CPU); and, for
    information, a per-box loop drawing its cells with torch's generator (other random
    numbers, no counter-based hash). The op is bound by writing its (L, N, C, H, W)
    output (4x the bytes for float32, so float32 ratios are lower); for scale, torch's own
    ``repeat`` of the images into a new tensor of that shape is timed too (it uses torch's
    allocator as is, whereas the op advises its output as huge-page memory, see
    ``occlusion_cpu.cpp``, and can be the faster of the two).

Every time is the median of ``--repeats`` rounds after one warm-up round; a round runs each
compared function once, in turn. On a machine whose cores are shared with other jobs, torch's
intra-op threads make the loops' many small ops wait for each other; ``--threads 1`` gives
a comparison free of that effect.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

from person_search.layers import multi_granularity_occlusion, roi_align
from person_search.layers.occlusion import FILL_MODES
from person_search.layers.occlusion_reference import multi_granularity_occlusion_reference

IMAGE_HW = (900, 1500)  # image height, width in pixels
STRIDE = 16  # feature-map stride of the RoIAlign workload
ROI_TARGET = 1.0  # ours / torchvision, at most (CPU)
OCCLUSION_TARGET = 20.0  # reference loop / op, at least (CPU)
GRIDS = [(2, 1), (2, 2)]  # the two occlusion levels: halves, quarters
CELL_PROB = 0.5


def _median_times(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median wall time in seconds of every function over ``repeats`` rounds, after one
    warm-up round; each round runs all functions in turn, so that a change of load on a
    shared machine affects them alike."""
    times = {name: [] for name in fns}
    for i in range(repeats + 1):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i > 0:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _verdict(met: bool, device: torch.device) -> str:
    if device.type != "cpu":
        return "(targets are for CPU)"
    return "target met" if met else "target missed"


def _person_boxes(gen: torch.Generator, count: int, lo_wh, hi_wh) -> torch.Tensor:
    """(count, 4) XYXY boxes of random sizes, clipped to the image."""
    h, w = IMAGE_HW
    size = torch.tensor(lo_wh) + torch.rand(count, 2, generator=gen) * torch.tensor(hi_wh)
    xy = torch.rand(count, 2, generator=gen) * (torch.tensor([w, h]) - size)
    boxes = torch.cat([xy, xy + size], dim=1)
    return torch.minimum(boxes, torch.tensor([w, h, w, h], dtype=boxes.dtype))


def bench_roi_align(device: torch.device, repeats: int, gen: torch.Generator) -> None:
    channels, num_rois = 1024, 512
    fh, fw = (math.ceil(v / STRIDE) for v in IMAGE_HW)
    features = torch.randn(1, channels, fh, fw, generator=gen).to(device)
    boxes = _person_boxes(gen, num_rois, (16.0, 32.0), (400.0, 800.0))
    rois = torch.cat([torch.zeros(num_rois, 1), boxes], dim=1).to(device)
    grad = torch.randn(num_rois, channels, 14, 14, generator=gen).to(device)
    params = {"output_size": 14, "spatial_scale": 1 / STRIDE, "sampling_ratio": 0, "aligned": True}

    def fwd_bwd(op):
        x = features.detach().requires_grad_()
        out = op(x, rois, **params)
        out.backward(grad)
        return out.detach(), x.grad

    ours_out, ours_grad = fwd_bwd(roi_align)
    ref_out, ref_grad = fwd_bwd(torchvision.ops.roi_align)
    diff = max(float((ours_out - ref_out).abs().max()), float((ours_grad - ref_grad).abs().max()))
    times = _median_times(
        {"ours": lambda: fwd_bwd(roi_align), "ref": lambda: fwd_bwd(torchvision.ops.roi_align)},
        repeats,
        device,
    )
    t_ours, t_ref = times["ours"], times["ref"]
    ratio = t_ours / t_ref
    print(
        f"RoIAlign fwd+bwd, {num_rois} RoIs, features (1, {channels}, {fh}, {fw}), 14x14, "
        f"sampling 0, aligned: max |ours - torchvision| = {diff:.2e}"
    )
    print(f"  ours {t_ours * 1e3:9.1f} ms   torchvision {t_ref * 1e3:9.1f} ms")
    print(
        f"  ratio ours / torchvision = {ratio:.3f} (target <= {ROI_TARGET}) "
        f"{_verdict(ratio <= ROI_TARGET, device)}"
    )


def occlusion_torch_rng_loop(
    images: torch.Tensor, boxes: torch.Tensor, grids, cell_prob: float, gen: torch.Generator
) -> torch.Tensor:
    """Per-box loop with torch's generator: the op's cell geometry and mean fill, other random
    numbers. Returns (L, N, C, H, W)."""
    _, _, height, width = images.shape
    means = images.mean(dim=(2, 3), dtype=torch.float64)
    means = (means.round() if images.dtype == torch.uint8 else means).to(images.dtype)
    out = torch.empty((len(grids), *images.shape), dtype=images.dtype, device=images.device)
    for level, (rows, cols) in enumerate(grids):
        out[level].copy_(images)
        for n, x1, y1, x2, y2 in boxes.tolist():
            n = int(n)
            xa, xb = (min(max(math.ceil(v - 0.5), 0), width) for v in (x1, x2))
            ya, yb = (min(max(math.ceil(v - 0.5), 0), height) for v in (y1, y2))
            h, w = yb - ya, xb - xa
            if h < rows or w < cols:
                continue
            covered = torch.rand(rows * cols, generator=gen) < cell_prob
            if bool(covered.all()):
                covered[int(torch.randint(rows * cols, (1,), generator=gen))] = False
            for k in torch.nonzero(covered).flatten().tolist():
                i, j = divmod(k, cols)
                cell = out[
                    level,
                    n,
                    :,
                    ya + i * h // rows : ya + (i + 1) * h // rows,
                    xa + j * w // cols : xa + (j + 1) * w // cols,
                ]
                cell.copy_(means[n, :, None, None].expand_as(cell))
    return out


def _bench_occlusion_dtype(
    images: torch.Tensor, boxes: torch.Tensor, device: torch.device, repeats: int
) -> None:
    """Times the op, the reference loop and the torch-generator loop on one batch."""
    mean = FILL_MODES["mean"]
    dev_images, dev_boxes = images.to(device), boxes.to(device)

    def op():
        return multi_granularity_occlusion(dev_images, dev_boxes, GRIDS, CELL_PROB, "mean", 0)

    def reference():
        return multi_granularity_occlusion_reference(images, boxes, GRIDS, CELL_PROB, mean, seed=0)

    loop_gen = torch.Generator().manual_seed(0)

    def torch_rng_loop():
        return occlusion_torch_rng_loop(dev_images, dev_boxes, GRIDS, CELL_PROB, loop_gen)

    def copy_only():  # for scale: torch repeats the images into a new (L, N, C, H, W) tensor
        return dev_images.unsqueeze(0).repeat(len(GRIDS), 1, 1, 1, 1)

    (op_images, op_masks), (ref_images, ref_masks) = op(), reference()
    same = torch.equal(op_images.cpu(), ref_images) and torch.equal(op_masks.cpu(), ref_masks)
    times = _median_times(
        {"op": op, "ref": reference, "loop": torch_rng_loop, "copy": copy_only}, repeats, device
    )
    t_op, t_ref, t_loop, t_copy = (times[k] for k in ("op", "ref", "loop", "copy"))
    ratio = t_ref / t_op
    print(
        f"  {str(images.dtype):13s} op {t_op * 1e3:8.1f} ms (for scale, torch's repeat into "
        f"a new output: {t_copy * 1e3:.1f} ms); op output == reference output: {same}"
    )
    print(
        f"    reference per-box loop (CPU) {t_ref * 1e3:8.1f} ms: ratio loop / op = "
        f"{ratio:.1f}x (target >= {OCCLUSION_TARGET:.0f}x) "
        f"{_verdict(ratio >= OCCLUSION_TARGET and same, device)}"
    )
    print(
        f"    torch-generator per-box loop {t_loop * 1e3:8.1f} ms: ratio loop / op = "
        f"{t_loop / t_op:.2f}x (information)"
    )


def bench_occlusion(device: torch.device, repeats: int, gen: torch.Generator) -> None:
    num_images, boxes_per_image = 6, 10
    per_image = [
        torch.cat(
            [
                torch.full((boxes_per_image, 1), float(n)),
                _person_boxes(gen, boxes_per_image, (40.0, 100.0), (160.0, 400.0)),
            ],
            dim=1,
        )
        for n in range(num_images)
    ]
    boxes = torch.cat(per_image).to(torch.float64)
    print(
        f"Occlusion, {num_images} images x {boxes_per_image} boxes x {len(GRIDS)} levels "
        f"{GRIDS}, cell_prob {CELL_PROB}, mean fill:"
    )
    for dtype in (torch.uint8, torch.float32):
        images = torch.randint(0, 256, (num_images, 3, *IMAGE_HW), generator=gen).to(dtype)
        _bench_occlusion_dtype(images, boxes, device, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per measurement")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    gen = torch.Generator().manual_seed(args.seed)
    bench_roi_align(device, args.repeats, gen)
    bench_occlusion(device, args.repeats, gen)


if __name__ == "__main__":
    main()
