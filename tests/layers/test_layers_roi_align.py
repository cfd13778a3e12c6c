"""RoIAlign of person_search._C against torchvision.ops.roi_align (values and gradients)."""

import pytest
import torch
import torchvision

from person_search.layers import ROIAlign, boxes_to_rois, load_extension, roi_align

NUM_CHUNKS = 8
CASES_PER_CHUNK = 30  # 240 random cases in all
TOLERANCE = {torch.float32: {"atol": 1e-5, "rtol": 1e-4}, torch.float64: {"atol": 1e-11, "rtol": 0}}


def _random_case(gen: torch.Generator, dtype: torch.dtype):
    """Features, RoIs (some partly outside, empty, inverted) and op parameters."""

    def randint(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=gen))

    params = {
        "output_size": (randint(1, 5), randint(1, 5)),
        "spatial_scale": [1.0, 0.5, 0.25, 0.125][randint(0, 3)],
        "sampling_ratio": [-1, 0, 1, 2, 3][randint(0, 4)],
        "aligned": bool(randint(0, 1)),
    }
    scale = params["spatial_scale"]
    # torchvision's CPU kernel crashes on an inverted box with aligned=True and adaptive
    # sampling (a negative sample count): those are covered by test_inverted_boxes_*.
    inverted_ok = not (params["aligned"] and params["sampling_ratio"] <= 0)
    n, c = randint(1, 3), randint(1, 4)
    h, w = randint(1, 12), randint(1, 12)
    k = randint(0, 8)
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    img_w, img_h = w / scale, h / scale
    lo = torch.tensor([-0.3 * img_w, -0.3 * img_h], dtype=torch.float64)
    span = torch.tensor([1.6 * img_w, 1.6 * img_h], dtype=torch.float64)
    p1 = lo + torch.rand(k, 2, generator=gen, dtype=torch.float64) * span
    p2 = lo + torch.rand(k, 2, generator=gen, dtype=torch.float64) * span
    kind = torch.randint(0, 10, (k,), generator=gen)
    p2 = torch.where((kind == 0)[:, None], p1, p2)  # zero-size boxes
    p2 = torch.where((kind == 1)[:, None], p1 + torch.tensor([0.0, 3.0]), p2)  # zero width
    ordered = ((kind != 2) | (not inverted_ok))[:, None]  # kind 2: inverted (x2 < x1 possible)
    first = torch.where(ordered, torch.minimum(p1, p2), p1)
    second = torch.where(ordered, torch.maximum(p1, p2), p2)
    batch = torch.randint(0, n, (k, 1), generator=gen).to(torch.float64)
    rois = torch.cat([batch, first, second], dim=1).to(dtype)
    return x, rois, params


@pytest.mark.parametrize("chunk", range(NUM_CHUNKS))
def test_matches_torchvision_values_and_gradients(chunk):
    gen = torch.Generator().manual_seed(1000 + chunk)
    for case in range(CASES_PER_CHUNK):
        dtype = torch.float64 if case % 2 else torch.float32
        x, rois, params = _random_case(gen, dtype)
        ours_in = x.clone().requires_grad_()
        ref_in = x.clone().requires_grad_()
        ours = roi_align(ours_in, rois, **params)
        ref = torchvision.ops.roi_align(ref_in, rois, **params)
        msg = f"chunk {chunk} case {case}: {params}, x {tuple(x.shape)}, rois {rois.tolist()}"
        torch.testing.assert_close(ours, ref, **TOLERANCE[dtype], msg=msg)
        grad = torch.randn(ref.shape, generator=gen, dtype=dtype)
        ours.backward(grad)
        ref.backward(grad)
        torch.testing.assert_close(ours_in.grad, ref_in.grad, **TOLERANCE[dtype], msg=msg)


def test_large_adaptive_rois_match_torchvision():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 16, 40, 60, generator=gen, requires_grad=True)
    rois = torch.tensor(
        [[0, -50.0, -20, 900, 700], [1, 10, 10, 500, 300], [1, 100.5, 40.25, 110.5, 400.75]]
    )
    for aligned in (False, True):
        ours = roi_align(x, rois, 7, 1 / 16, 0, aligned)
        ref = torchvision.ops.roi_align(x, rois, 7, 1 / 16, 0, aligned)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
        g_ours = torch.autograd.grad(ours.sum(), x)[0]
        g_ref = torch.autograd.grad(ref.sum(), x)[0]
        torch.testing.assert_close(g_ours, g_ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("sampling_ratio", [0, -1])
def test_inverted_boxes_aligned_adaptive_give_zeros(sampling_ratio):
    """x2 < x1 with aligned=True and adaptive sampling: no sample, zero output and gradient
    (torchvision's kernel crashes here; Detectron2 documents such boxes as invalid)."""
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 6.0, 1.0, 2.0, 7.0], [0, 1.0, 6.0, 7.0, 2.0]], dtype=torch.float64)
    out = roi_align(x, rois, (2, 3), 1.0, sampling_ratio, True)
    assert out.shape == (2, 3, 2, 3)
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_gradcheck(aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor(
        [[0, 0.3, 1.1, 4.7, 5.2], [1, -1.3, 2.2, 3.1, 9.4], [1, 2.05, 0.45, 6.35, 3.15]],
        dtype=torch.float64,
    )
    assert torch.autograd.gradcheck(
        lambda t: roi_align(t, rois, (3, 2), 1.0, sampling_ratio, aligned), (x,)
    )


def test_list_boxes_and_module():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 10, 10, generator=gen)
    boxes = [torch.tensor([[1.0, 1, 8, 9]]), torch.tensor([[0.0, 2, 5, 7], [3, 3, 9, 6]])]
    rois = boxes_to_rois(boxes)
    assert rois[:, 0].tolist() == [0, 1, 1]
    layer = ROIAlign((4, 3), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    assert "output_size=(4, 3)" in repr(layer)
    out = layer(x, boxes)
    assert out.shape == (3, 3, 4, 3)
    torch.testing.assert_close(out, torchvision.ops.roi_align(x, boxes, (4, 3), 1.0, 2, True))
    # float64 boxes are converted to the features' dtype (like Detectron2's ROIAlign)
    torch.testing.assert_close(layer(x, rois.double()), out)


def test_channels_last_and_non_contiguous_inputs():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 5, 9, 11, generator=gen)
    rois = torch.tensor([[0, 1.0, 1, 30, 20], [1, 4, 0, 12, 16]])
    expected = torchvision.ops.roi_align(x, rois, 3, 0.5, 2, True)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(roi_align(channels_last, rois, 3, 0.5, 2, True), expected)
    strided = torch.randn(2, 10, 9, 11, generator=gen)[:, ::2]
    torch.testing.assert_close(
        roi_align(strided, rois, 3, 0.5, 2, True),
        torchvision.ops.roi_align(strided.contiguous(), rois, 3, 0.5, 2, True),
    )


def test_empty_rois_and_zero_channels():
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    out = roi_align(x, torch.zeros(0, 5), 2, 1.0, 2, False)
    assert out.shape == (0, 4, 2, 2)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert roi_align(torch.randn(1, 0, 5, 5), torch.tensor([[0, 0.0, 0, 3, 3]]), 2).shape == (
        1,
        0,
        2,
        2,
    )


def test_validation_errors():
    x = torch.randn(1, 2, 5, 5)
    rois = torch.tensor([[0, 0.0, 0, 3, 3]])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        roi_align(x[0], rois, 2)
    with pytest.raises(TypeError, match="not supported on cpu"):
        roi_align(x.half(), rois, 2)
    with pytest.raises(TypeError, match="not supported on cpu"):
        roi_align(x.to(torch.int32), rois, 2)
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        roi_align(x, rois[:, 1:], 2)
    with pytest.raises(ValueError, match=r"boxes\[0\] must be a \(Ki, 4\)"):
        roi_align(x, [rois], 2)
    with pytest.raises(TypeError, match="floating point"):
        roi_align(x, rois.long(), 2)
    with pytest.raises(ValueError, match="output_size"):
        roi_align(x, rois, (2, 0))
    with pytest.raises(ValueError, match="output_size"):
        roi_align(x, rois, (2, 2, 2))
    with pytest.raises(ValueError, match="boxes are on meta"):
        roi_align(x, rois.to("meta"), 2)
    with pytest.raises(RuntimeError, match="batch index"):
        roi_align(x, torch.tensor([[1, 0.0, 0, 3, 3]]), 2)
    ops = torch.ops.person_search
    with pytest.raises(RuntimeError, match="same dtype"):
        ops.roi_align_forward(x, rois.double(), 1.0, 2, 2, 0, False)
    with pytest.raises(RuntimeError, match="output size must be positive"):
        ops.roi_align_forward(x, rois, 1.0, 0, 2, 0, False)
    with pytest.raises(RuntimeError, match="grad must have shape"):
        ops.roi_align_backward(torch.zeros(1, 2, 3, 3), rois, 1.0, 2, 2, 1, 2, 5, 5, 0, False)


def test_ops_registered_with_fake_kernels():
    load_extension()
    for name in ("roi_align_forward", "roi_align_backward", "multi_granularity_occlusion"):
        assert hasattr(torch.ops.person_search, name), name
    x = torch.empty(2, 8, 30, 40, device="meta")
    rois = torch.empty(5, 5, device="meta")
    out = torch.ops.person_search.roi_align_forward(x, rois, 0.25, 7, 6, 2, True)
    assert out.shape == (5, 8, 7, 6) and out.device.type == "meta"
    grad = torch.ops.person_search.roi_align_backward(out, rois, 0.25, 7, 6, 2, 8, 30, 40, 2, True)
    assert grad.shape == (2, 8, 30, 40)
