"""CUDA kernels of person_search._C against the CPU kernels and torchvision (need a GPU;
tests/conftest.py skips them without one)."""

import pytest
import torch
import torchvision

import person_search  # noqa: F401  (Detectron2 compat layer before detectron2 imports)

# isort: split
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes

from person_search.layers import MultiLevelROIPooler, multi_granularity_occlusion, roi_align
from person_search.layers.occlusion import FILL_MODES

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
TOLERANCE = {
    torch.float32: {"atol": 1e-5, "rtol": 1e-4},
    torch.float64: {"atol": 1e-10, "rtol": 1e-10},
}


def _roi_case(gen: torch.Generator, dtype: torch.dtype, max_size: int = 16):
    """CPU features and RoIs (partly outside, empty) and RoIAlign parameters."""

    def randint(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=gen))

    params = {
        "output_size": (randint(1, 7), randint(1, 7)),
        "spatial_scale": [1.0, 0.5, 0.25, 1 / 16][randint(0, 3)],
        "sampling_ratio": [0, -1, 1, 2][randint(0, 3)],
        "aligned": bool(randint(0, 1)),
    }
    n, c = randint(1, 3), randint(1, 8)
    h, w = randint(1, max_size), randint(1, max_size)
    k = randint(0, 10)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    img = torch.tensor([w, h], dtype=torch.float64) / params["spatial_scale"]
    p1 = -0.3 * img + torch.rand(k, 2, generator=gen, dtype=torch.float64) * 1.6 * img
    p2 = -0.3 * img + torch.rand(k, 2, generator=gen, dtype=torch.float64) * 1.6 * img
    p2[: k // 4] = p1[: k // 4]  # empty boxes
    batch = torch.randint(0, n, (k, 1), generator=gen).to(torch.float64)
    rois = torch.cat([batch, torch.minimum(p1, p2), torch.maximum(p1, p2)], dim=1)
    return x.to(dtype), rois.to(dtype), params


def _values_and_grads(fn, x, rois, grad, params):
    x = x.clone().requires_grad_()
    out = fn(x, rois, **params)
    out.backward(grad)
    return out.detach(), x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roi_align_cuda_matches_cpu_and_torchvision(dtype):
    gen = torch.Generator().manual_seed(40)
    for case in range(60):
        x, rois, params = _roi_case(gen, dtype)
        out_cpu = roi_align(x, rois, **params)
        grad = torch.randn(out_cpu.shape, generator=gen, dtype=dtype)
        cpu = _values_and_grads(roi_align, x, rois, grad, params)
        cuda = _values_and_grads(roi_align, x.to(CUDA), rois.to(CUDA), grad.to(CUDA), params)
        tv = _values_and_grads(
            torchvision.ops.roi_align, x.to(CUDA), rois.to(CUDA), grad.to(CUDA), params
        )
        msg = f"case {case}: {params}, x {tuple(x.shape)}, rois {rois.tolist()}"
        for got_cuda, want_cpu, want_tv in zip(cuda, cpu, tv):
            assert got_cuda.is_cuda
            torch.testing.assert_close(got_cuda.cpu(), want_cpu, **TOLERANCE[dtype], msg=msg)
            torch.testing.assert_close(got_cuda, want_tv, **TOLERANCE[dtype], msg=msg)


def test_roi_align_cuda_half_matches_float32_cpu():
    """Half inputs accumulate in float: compare with the float32 CPU kernel on the same
    half-rounded features and boxes (half rounding of the output, half atomics for the
    gradient)."""
    gen = torch.Generator().manual_seed(41)
    for case in range(20):
        x, rois, params = _roi_case(gen, torch.float32)
        params["sampling_ratio"] = 2  # bounded number of samples per bin
        x16, rois16 = x.half(), rois.half()
        grad = torch.randn((rois.shape[0], x.shape[1], *params["output_size"]), generator=gen)
        grad16 = grad.half()
        cpu = _values_and_grads(roi_align, x16.float(), rois16.float(), grad16.float(), params)
        cuda = _values_and_grads(roi_align, x16.to(CUDA), rois16.to(CUDA), grad16.to(CUDA), params)
        msg = f"case {case}: {params}"
        assert cuda[0].dtype == torch.float16 and cuda[1].dtype == torch.float16
        torch.testing.assert_close(cuda[0].float().cpu(), cpu[0], atol=2e-3, rtol=2e-3, msg=msg)
        # each contribution is rounded to half and added atomically in half
        torch.testing.assert_close(cuda[1].float().cpu(), cpu[1], atol=3e-2, rtol=2e-2, msg=msg)


def test_roi_align_cuda_detection_sized_and_layouts():
    gen = torch.Generator().manual_seed(42)
    x = torch.randn(2, 64, 57, 94, generator=gen)
    xy = torch.rand(128, 2, generator=gen) * torch.tensor([1400.0, 800.0])
    wh = torch.rand(128, 2, generator=gen) * torch.tensor([300.0, 500.0]) + 2
    rois = torch.cat([torch.randint(0, 2, (128, 1), generator=gen).float(), xy, xy + wh], 1)
    want = roi_align(x, rois, 14, 1 / 16, 0, True)
    for layout in (x.to(CUDA), x.to(CUDA).contiguous(memory_format=torch.channels_last)):
        got = roi_align(layout, rois.to(CUDA), 14, 1 / 16, 0, True)
        torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-4)
    empty = roi_align(x.to(CUDA), torch.zeros(0, 5, device=CUDA), 7, 1 / 16, 0, True)
    assert empty.shape == (0, 64, 7, 7) and empty.is_cuda


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align_cuda_gradcheck(aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(43)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64).to(CUDA).requires_grad_()
    rois = torch.tensor(
        [[0, 0.3, 1.1, 4.7, 5.2], [1, -1.3, 2.2, 3.1, 9.4], [1, 2.05, 0.45, 6.35, 3.15]],
        dtype=torch.float64,
        device=CUDA,
    )
    assert torch.autograd.gradcheck(
        lambda t: roi_align(t, rois, (3, 2), 1.0, sampling_ratio, aligned),
        (x,),
        nondet_tol=1e-12,  # atomic adds: summation order may vary between runs
    )


@pytest.mark.parametrize("pooler_type", ["ROIAlign", "ROIAlignV2"])
def test_multi_level_pooler_cuda_matches_detectron2(pooler_type):
    gen = torch.Generator().manual_seed(44)
    scales = (1 / 4, 1 / 8, 1 / 16, 1 / 32)
    feats = [torch.randn(2, 8, 240 // int(1 / s), 320 // int(1 / s), generator=gen) for s in scales]
    feats = [f.to(CUDA) for f in feats]
    xy = torch.rand(2, 20, 2, generator=gen) * 200
    wh = torch.exp(torch.rand(2, 20, 2, generator=gen) * 5.5) + 1
    box_lists = [Boxes(torch.cat([xy[i], xy[i] + wh[i]], 1).to(CUDA)) for i in range(2)]
    ours = MultiLevelROIPooler(7, scales, 0, pooler_type)(feats, box_lists)
    ref = ROIPooler(7, scales, 0, pooler_type)(feats, box_lists)
    assert ours.is_cuda
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def _occlusion_case(gen: torch.Generator, case: int):
    dtype = (torch.uint8, torch.float32, torch.float64)[case % 3]
    n, c = int(torch.randint(1, 4, (1,), generator=gen)), 3
    h, w = (int(v) for v in torch.randint(1, 60, (2,), generator=gen))
    if dtype == torch.uint8:
        images = torch.randint(0, 256, (n, c, h, w), generator=gen, dtype=torch.uint8)
    else:
        images = (torch.rand(n, c, h, w, generator=gen, dtype=torch.float64) * 255).to(dtype)
    k = int(torch.randint(0, 12, (1,), generator=gen))
    p1 = torch.rand(k, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.2
    p2 = torch.rand(k, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.2
    size = torch.tensor([w, h], dtype=torch.float64)
    index = torch.randint(0, n, (k, 1), generator=gen).to(torch.float64)
    boxes = torch.cat([index, torch.minimum(p1, p2) * size, torch.maximum(p1, p2) * size], 1)
    fill = list(FILL_MODES)[case % 3 if case % 2 else (case // 2) % 3]
    kwargs = {
        "grids": [[(2, 1), (2, 2)], [(1, 3), (3, 3), (4, 2)], [(1, 1)]][case % 3],
        "cell_prob": [0.3, 0.6, 1.0][(case // 3) % 3],
        "fill": fill,
        "seed": int(torch.randint(-(2**62), 2**62, (1,), generator=gen)),
    }
    if fill == "constant":
        kwargs["fill_value"] = 17.0
    if fill == "noise" and dtype != torch.uint8:
        kwargs["noise_range"] = (-1.0, 2.0)
    return images, boxes, kwargs


def test_occlusion_cuda_identical_to_cpu():
    gen = torch.Generator().manual_seed(45)
    for case in range(90):
        images, boxes, kwargs = _occlusion_case(gen, case)
        cpu = multi_granularity_occlusion(images, boxes, **kwargs)
        cuda = multi_granularity_occlusion(images.to(CUDA), boxes.to(CUDA), **kwargs)
        msg = f"case {case}: {kwargs}, images {tuple(images.shape)}, {images.dtype}"
        assert cuda[0].is_cuda and cuda[1].is_cuda, msg
        assert torch.equal(cuda[1].cpu(), cpu[1]), msg
        assert torch.equal(cuda[0].cpu(), cpu[0]), msg


def test_occlusion_cuda_overlapping_boxes_and_errors():
    gen = torch.Generator().manual_seed(46)
    images = torch.rand(2, 3, 50, 40, generator=gen)
    xy = torch.rand(30, 2, generator=gen) * 30
    boxes = torch.cat([torch.arange(30)[:, None] % 2, xy, xy + 15], 1).to(torch.float64)
    for fill in FILL_MODES:
        args = (boxes, [(2, 1), (3, 3)], 0.7, fill, 5)
        cpu = multi_granularity_occlusion(images, *args)
        cuda = multi_granularity_occlusion(images.to(CUDA), args[0].to(CUDA), *args[1:])
        assert torch.equal(cuda[0].cpu(), cpu[0]) and torch.equal(cuda[1].cpu(), cpu[1])
    op = torch.ops.person_search.multi_granularity_occlusion
    bad = torch.tensor([[2, 0.0, 0, 5, 5]], dtype=torch.float64, device=CUDA)
    with pytest.raises(RuntimeError, match="image index 2"):
        op(images.to(CUDA), bad, [2], [2], 0.5, 0, 0.0, 0.0, 255.0, 0)
