"""Multi-granularity occlusion op (person_search._C) against its plain-PyTorch reference,
its invariants, hand-computed cases and argument errors."""

import ast
import math

import pytest
import torch

from person_search.layers import boxes_to_indexed, multi_granularity_occlusion
from person_search.layers import occlusion_reference as reference
from person_search.layers.occlusion import FILL_MODES

NUM_CHUNKS = 6
CASES_PER_CHUNK = 25  # 150 random cases in all
GRID_LISTS = ([(2, 1)], [(2, 1), (2, 2)], [(1, 3), (3, 2), (4, 4)], [(1, 1), (5, 1)])
DTYPES = (torch.uint8, torch.float32, torch.float64)
MASK64 = (1 << 64) - 1


def _randint(gen: torch.Generator, lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def _random_images(gen: torch.Generator, dtype: torch.dtype, shape) -> torch.Tensor:
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 255).to(dtype)


def _random_boxes(gen: torch.Generator, num_images: int, height: int, width: int):
    """(B, 5) boxes: inside, partly outside, fully outside, empty, inverted, tiny; some
    images get none."""
    with_boxes = [n for n in range(num_images) if _randint(gen, 0, 3) > 0]
    rows = []
    for n in with_boxes:
        for _ in range(_randint(gen, 1, 6)):
            x1 = float(torch.empty(1).uniform_(-0.3 * width, 1.1 * width, generator=gen))
            y1 = float(torch.empty(1).uniform_(-0.3 * height, 1.1 * height, generator=gen))
            bw = float(torch.empty(1).uniform_(0, 0.8 * width, generator=gen))
            bh = float(torch.empty(1).uniform_(0, 0.9 * height, generator=gen))
            kind = _randint(gen, 0, 9)
            if kind == 0:
                bw = 0.0  # zero width
            elif kind == 1:
                bw, bh = -bw, -bh  # inverted
            elif kind == 2:
                bw, bh = 0.7, 1.3  # smaller than the grid
            elif kind == 3:
                x1, y1 = round(x1), round(y1)  # integer edges (pixel-centre ties)
                bw, bh = round(bw), round(bh)
            rows.append([n, x1, y1, x1 + bw, y1 + bh])
    order = torch.randperm(len(rows), generator=gen).tolist()  # images interleaved
    return torch.tensor([rows[i] for i in order], dtype=torch.float64).reshape(-1, 5)


def _random_case(gen: torch.Generator, case: int):
    dtype = DTYPES[case % 3]
    n, c = _randint(gen, 1, 3), _randint(gen, 1, 3)
    h, w = _randint(gen, 1, 24), _randint(gen, 1, 24)
    images = _random_images(gen, dtype, (n, c, h, w))
    boxes = _random_boxes(gen, n, h, w)
    if case % 4 == 0:
        boxes = boxes.to(torch.float32)
    fill = list(FILL_MODES)[case % len(FILL_MODES)]
    kwargs = {
        "grids": GRID_LISTS[_randint(gen, 0, len(GRID_LISTS) - 1)],
        "cell_prob": [0.0, 0.3, 0.5, 0.8, 1.0][_randint(gen, 0, 4)],
        "fill": fill,
        "seed": int(torch.randint(-(2**63), 2**63 - 1, (1,), generator=gen)),
    }
    if fill == "constant":
        kwargs["fill_value"] = float(_randint(gen, 0, 255)) if dtype == torch.uint8 else -1.25
    if fill == "noise" and dtype != torch.uint8 and case % 2:
        kwargs["noise_range"] = (-2.0, 3.5)
    return images, boxes, kwargs


def _run_reference(images, boxes, grids, cell_prob, fill, seed, fill_value=0.0, noise_range=None):
    low, high = noise_range if noise_range is not None else (0.0, 255.0)
    return reference.multi_granularity_occlusion_reference(
        images, boxes, grids, cell_prob, FILL_MODES[fill], fill_value, low, high, seed
    )


# ---------------------------------------------------------------- geometry of the test
def _pixel_range(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Pixels whose centre (i + 0.5) lies in [lo, hi), clipped to the image."""
    first = min(max(math.ceil(lo - 0.5), 0), size)
    last = min(max(math.ceil(hi - 0.5), 0), size)
    return first, max(first, last)


def _cell_rects(box, height, width, rows, cols):
    """Non-empty cells of a box as {cell index: (y0, y1, x0, x1)}."""
    x0, x1 = _pixel_range(box[1], box[3], width)
    y0, y1 = _pixel_range(box[2], box[4], height)
    h, w = y1 - y0, x1 - x0
    rects = {}
    for i in range(rows):
        for j in range(cols):
            ya, yb = y0 + i * h // rows, y0 + (i + 1) * h // rows
            xa, xb = x0 + j * w // cols, x0 + (j + 1) * w // cols
            if yb > ya and xb > xa:
                rects[i * cols + j] = (ya, yb, xa, xb)
    return rects


def _expected_mean(images: torch.Tensor) -> torch.Tensor:
    """(N, C) per-channel means as float64 (rounded half to even for uint8 images)."""
    mean = images.to(torch.float64).mean(dim=(2, 3))
    return torch.round(mean) if images.dtype == torch.uint8 else mean


def _check_invariants(images, boxes, kwargs, occluded, masks):
    n_img, channels, height, width = images.shape
    grids = kwargs["grids"]
    max_cells = max(r * c for r, c in grids)
    assert occluded.shape == (len(grids), *images.shape) and occluded.dtype == images.dtype
    assert masks.shape == (len(grids), boxes.shape[0], max_cells) and masks.dtype == torch.bool
    box_list = boxes.tolist()
    for level, (rows, cols) in enumerate(grids):
        covered = torch.zeros(n_img, height, width, dtype=torch.bool)
        visible = torch.zeros(n_img, height, width, dtype=torch.bool)
        rects_of_box = []
        for b, box in enumerate(box_list):
            n = int(box[0])
            rects = _cell_rects(box, height, width, rows, cols)
            rects_of_box.append((n, rects))
            drawn = masks[level, b]
            # only non-empty cells of the level can be covered
            assert set(torch.nonzero(drawn).flatten().tolist()) <= set(rects), (level, b)
            if rects:  # never all cells of a box
                assert not all(drawn[k] for k in rects), (level, b, rects)
            for k, (ya, yb, xa, xb) in rects.items():
                target = covered if drawn[k] else visible
                target[n, ya:yb, xa:xb] = True
        filled = covered & ~visible
        changed = (occluded[level] != images).any(dim=1)
        # pixels change only in covered cells, never in a visible cell of any box
        assert not (changed & ~filled).any(), level
        out = occluded[level].permute(0, 2, 3, 1)[filled]  # (P, C)
        if kwargs["fill"] == "mean":
            expected = _expected_mean(images)[filled.nonzero()[:, 0]]
            atol = {torch.uint8: 0.0, torch.float32: 3e-5, torch.float64: 1e-10}[images.dtype]
            torch.testing.assert_close(out.double(), expected, rtol=0, atol=atol)
        elif kwargs["fill"] == "constant":
            assert bool((out == kwargs.get("fill_value", 0.0)).all())
        elif images.dtype != torch.uint8:
            low, high = kwargs.get("noise_range", (0.0, 255.0))
            assert bool(((out >= low) & (out <= high)).all())
        # pixel level: every box with a pixel keeps a cell with untouched pixels
        for n, rects in rects_of_box:
            if rects:
                assert any(
                    torch.equal(occluded[level, n, :, ya:yb, xa:xb], images[n, :, ya:yb, xa:xb])
                    for ya, yb, xa, xb in rects.values()
                ), (level, rects)


# ---------------------------------------------------------------- reference itself
def _splitmix64_int(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _to_unsigned(t: torch.Tensor) -> int:
    return int(t) & MASK64


def test_reference_hash_matches_python_integers():
    """The reference's int64 tensor arithmetic equals splitmix64 on Python integers (whose
    first output from state 0 is the published 0xE220A8397B1DCDAF)."""
    assert _splitmix64_int(0) == 0xE220A8397B1DCDAF
    assert _to_unsigned(reference.splitmix64(torch.tensor(0))) == 0xE220A8397B1DCDAF
    for seed, key in [
        (0, (1, 0, 0, 0, 0)),
        (-5, (3, 1, 7, 2, 123456)),
        (2**62 + 17, (2, 4, 1, 9, 0)),
    ]:
        h = _splitmix64_int(seed & MASK64)
        for k in key:
            h = _splitmix64_int(h ^ k)
        assert _to_unsigned(reference.counter_hash(seed, *key)) == h
        u = float(reference.hash_to_unit(reference.counter_hash(seed, *key)))
        assert u == (h >> 11) / 2.0**53 and 0.0 <= u < 1.0


def test_reference_is_plain_pytorch():
    """The reference must not use the op it checks: it imports only math and torch and never
    touches ``torch.ops`` (checked on its syntax tree, docstrings aside)."""
    with open(reference.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert imported == {"math", "torch"}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "ops" not in attributes and "_C" not in attributes


# ---------------------------------------------------------------- op == reference
@pytest.mark.parametrize("chunk", range(NUM_CHUNKS))
def test_matches_reference_on_random_cases(chunk):
    gen = torch.Generator().manual_seed(500 + chunk)
    for case in range(CASES_PER_CHUNK):
        images, boxes, kwargs = _random_case(gen, case)
        before = images.clone()
        occluded, masks = multi_granularity_occlusion(images, boxes, **kwargs)
        ref_occluded, ref_masks = _run_reference(images, boxes, **kwargs)
        msg = f"chunk {chunk} case {case}: {kwargs}, images {tuple(images.shape)}"
        assert torch.equal(masks, ref_masks), msg
        assert torch.equal(occluded, ref_occluded), msg
        assert torch.equal(images, before), "the input images were modified"
        _check_invariants(images, boxes.to(torch.float64), kwargs, occluded, masks)


def test_matches_reference_on_crowded_overlapping_boxes():
    """Many overlapping boxes per image: visible cells win over neighbours' covered cells."""
    gen = torch.Generator().manual_seed(11)
    images = _random_images(gen, torch.float32, (2, 3, 40, 30))
    xy = torch.rand(40, 2, generator=gen) * torch.tensor([20.0, 25.0])
    wh = torch.rand(40, 2, generator=gen) * 12 + 4
    index = torch.arange(40)[:, None] % 2
    boxes = torch.cat([index, xy, xy + wh], dim=1).double()
    for fill in FILL_MODES:
        kwargs = {"grids": [(2, 1), (2, 2), (3, 3)], "cell_prob": 0.7, "fill": fill, "seed": 4}
        occluded, masks = multi_granularity_occlusion(images, boxes, **kwargs)
        ref_occluded, ref_masks = _run_reference(images, boxes, **kwargs)
        assert torch.equal(masks, ref_masks) and torch.equal(occluded, ref_occluded)
        _check_invariants(images, boxes, kwargs, occluded, masks)
        # the precedence rule is exercised: some covered cell pixels stayed visible
        level0 = torch.zeros(2, 40, 30, dtype=torch.bool)
        for b, box in enumerate(boxes.tolist()):
            for k, (ya, yb, xa, xb) in _cell_rects(box, 40, 30, 2, 1).items():
                if masks[0, b, k]:
                    level0[int(box[0]), ya:yb, xa:xb] = True
        unchanged = (occluded[0] == images).all(dim=1)
        assert bool((level0 & unchanged).any())


def test_list_boxes_equal_indexed_boxes():
    gen = torch.Generator().manual_seed(3)
    images = _random_images(gen, torch.uint8, (3, 3, 20, 16))
    per_image = [
        torch.tensor([[1.0, 2, 12, 18], [4, 0, 15, 9]]),
        torch.zeros(0, 4),
        torch.tensor([[0.5, 0.5, 10.5, 19.5]], dtype=torch.float64),
    ]
    indexed = boxes_to_indexed(per_image, 3)
    assert indexed.dtype == torch.float64
    assert indexed[:, 0].tolist() == [0, 0, 2]
    a = multi_granularity_occlusion(images, per_image, [(2, 2)], 0.5, "noise", seed=9)
    b = multi_granularity_occlusion(images, indexed, [(2, 2)], 0.5, "noise", seed=9)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ---------------------------------------------------------------- hand-computed cases
def test_hand_computed_quadrants_with_cell_prob_one():
    """cell_prob 1 on a 2x2 grid of a 4x4 box: exactly three quadrants are covered."""
    images = torch.full((1, 2, 4, 4), 7.0)
    boxes = torch.tensor([[0, 0.0, 0, 4, 4]])
    occluded, masks = multi_granularity_occlusion(
        images, boxes, [(2, 2)], 1.0, "constant", seed=1, fill_value=0.0
    )
    assert int(masks.sum()) == 3
    kept = int(torch.nonzero(~masks[0, 0])[0])
    for cell in range(4):
        i, j = divmod(cell, 2)
        quadrant = occluded[0, 0, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
        assert bool((quadrant == (7.0 if cell == kept else 0.0)).all()), cell


def test_hand_computed_pixel_centre_convention():
    """Box x in [0.6, 3.4) owns columns 1 and 2 (centres 1.5, 2.5): one of them is covered,
    columns 0 and 3 never; rows [0.5, 2.5) own rows 0 and 1 only (centres 0.5 and 1.5)."""
    images = torch.full((1, 1, 4, 4), 200, dtype=torch.uint8)
    boxes = torch.tensor([[0, 0.6, 0.5, 3.4, 2.5]])
    for seed in range(8):
        occluded, masks = multi_granularity_occlusion(
            images, boxes, [(1, 2)], 1.0, "constant", seed=seed, fill_value=3
        )
        changed = occluded[0, 0, 0] != 200
        assert masks[0, 0].tolist().count(True) == 1
        covered_col = 1 + masks[0, 0].tolist().index(True)
        expected = torch.zeros(4, 4, dtype=torch.bool)
        expected[0:2, covered_col] = True
        assert torch.equal(changed, expected), seed


def test_single_cell_and_empty_boxes_are_never_occluded():
    images = torch.rand(1, 3, 10, 10, dtype=torch.float64)
    boxes = torch.tensor(
        [
            [0, 2.0, 2, 5, 8],  # grid (1, 1): one cell -> kept visible
            [0, 4.0, 4, 4, 9],  # zero width
            [0, 7.0, 7, 3, 3],  # inverted
            [0, 20.0, 20, 30, 30],  # outside the image
            [0, 5.2, 5.2, 5.4, 5.4],  # no pixel centre inside
        ],
        dtype=torch.float64,
    )
    occluded, masks = multi_granularity_occlusion(images, boxes, [(1, 1), (1, 2)], 1.0)
    assert not masks[0].any()
    assert not masks[1, 1:].any()
    assert int(masks[1, 0].sum()) == 1  # the first box has 2 cells at level 1
    assert torch.equal(occluded[0, 0], images[0])


def test_mean_fill_rounds_half_to_even_for_uint8():
    """Means 1.5 -> 2 and 2.5 -> 2 (round half to even); the covered pixel gets it."""
    images = torch.tensor([[[[1, 2]], [[2, 3]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    boxes = torch.tensor([[0, 0.0, 0, 2, 1]])
    occluded, masks = multi_granularity_occlusion(images, boxes, [(1, 2)], 1.0, "mean", seed=5)
    col = masks[0, 0].tolist().index(True)
    assert occluded[0, 0, :, 0, col].tolist() == [2, 2]
    assert occluded[0, 0, :, 0, 1 - col].tolist() == images[0, :, 0, 1 - col].tolist()


def test_cell_prob_zero_is_identity_and_copies_per_level():
    images = torch.rand(2, 3, 8, 9)
    boxes = torch.tensor([[0, 0.0, 0, 9, 8], [1, 1.0, 1, 7, 7]])
    occluded, masks = multi_granularity_occlusion(images, boxes, [(2, 1), (2, 2)], 0.0)
    assert not masks.any()
    assert torch.equal(occluded, images.expand(2, -1, -1, -1, -1))
    occluded[0].zero_()  # the output owns its memory
    assert bool((images != 0).any())


def test_images_without_boxes():
    images = torch.randint(0, 256, (2, 3, 5, 6), dtype=torch.uint8)
    occluded, masks = multi_granularity_occlusion(images, torch.zeros(0, 5), [(2, 2)], 0.9)
    assert masks.shape == (1, 0, 4)
    assert torch.equal(occluded[0], images)
    occluded, masks = multi_granularity_occlusion(images, [torch.zeros(0, 4)] * 2, [(3, 1)], 0.9)
    assert masks.shape == (1, 0, 3) and torch.equal(occluded[0], images)


def test_uint8_noise_uses_full_range():
    images = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    boxes = torch.tensor([[0, 0.0, 0, 64, 64]])
    occluded, masks = multi_granularity_occlusion(images, boxes, [(8, 8)], 0.9, "noise", seed=2)
    values = occluded[0][occluded[0] != 0]
    assert values.numel() > 5000
    assert int(values.max()) >= 250 and int(values.unique().numel()) > 200


# ---------------------------------------------------------------- determinism
def test_same_seed_same_output_different_seed_different_output():
    gen = torch.Generator().manual_seed(21)
    images = _random_images(gen, torch.float32, (3, 3, 30, 30))
    boxes = _random_boxes(gen, 3, 30, 30)
    boxes = torch.cat([boxes, torch.tensor([[0, 0.0, 0, 30, 30], [1, 2.0, 3, 28, 29]])])
    args = (images, boxes, [(2, 1), (3, 3)], 0.5, "noise")
    first = multi_granularity_occlusion(*args, seed=123)
    again = multi_granularity_occlusion(*args, seed=123)
    other = multi_granularity_occlusion(*args, seed=124)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])
    assert not torch.equal(first[0], other[0])
    # no generator state is used or consumed
    state = torch.get_rng_state()
    torch.manual_seed(999)
    assert torch.equal(multi_granularity_occlusion(*args, seed=123)[0], first[0])
    torch.set_rng_state(state)


def test_result_independent_of_threads_and_memory_layout():
    gen = torch.Generator().manual_seed(8)
    images = _random_images(gen, torch.float64, (4, 3, 33, 27))
    boxes = torch.cat([_random_boxes(gen, 4, 33, 27), torch.tensor([[3, 0.0, 0, 27, 33]])])
    args = (boxes, [(2, 2), (4, 1)], 0.6, "noise")
    expected = multi_granularity_occlusion(images, *args, seed=77)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = multi_granularity_occlusion(images, *args, seed=77)
    finally:
        torch.set_num_threads(threads)
    channels_last = images.contiguous(memory_format=torch.channels_last)
    strided = multi_granularity_occlusion(channels_last, *args, seed=77)
    for got in (single, strided):
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


# ---------------------------------------------------------------- autograd, meta, errors
def test_not_differentiable():
    images = torch.rand(1, 3, 8, 8, requires_grad=True)
    boxes = torch.tensor([[0, 0.0, 0, 8, 8]])
    with pytest.raises(RuntimeError, match="not differentiable"):
        multi_granularity_occlusion(images, boxes, [(2, 2)], 0.5)
    with pytest.raises(RuntimeError, match="not differentiable"):
        multi_granularity_occlusion(images.detach(), boxes.requires_grad_(), [(2, 2)], 0.5)
    with torch.no_grad():
        occluded, masks = multi_granularity_occlusion(images, boxes, [(2, 2)], 0.5)
    assert not occluded.requires_grad and not masks.requires_grad
    occluded, _ = multi_granularity_occlusion(images.detach(), boxes.detach(), [(2, 2)], 0.5)
    assert not occluded.requires_grad


def test_meta_tensors_give_shapes():
    images = torch.empty(2, 3, 10, 12, device="meta", dtype=torch.uint8)
    boxes = torch.empty(5, 5, device="meta", dtype=torch.float64)
    occluded, masks = torch.ops.person_search.multi_granularity_occlusion(
        images, boxes, [2, 3], [1, 3], 0.5, 0, 0.0, 0.0, 255.0, 0
    )
    assert occluded.shape == (2, 2, 3, 10, 12) and occluded.dtype == torch.uint8
    assert masks.shape == (2, 5, 9) and masks.dtype == torch.bool


def test_argument_errors():
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    boxes = torch.tensor([[0, 0.0, 0, 8, 8]])
    occ = multi_granularity_occlusion
    grids = [(2, 2)]
    cases = [
        (ValueError, r"images must be a \(N, C, H, W\)", (images[0], boxes, grids, 0.5), {}),
        (TypeError, "uint8, float32 or float64", (images.half(), boxes, grids, 0.5), {}),
        (TypeError, "uint8, float32 or float64", (images.int(), boxes, grids, 0.5), {}),
        (ValueError, r"shape \(B, 5\)", (images, boxes[:, 1:], grids, 0.5), {}),
        (ValueError, "one \\(Bi, 4\\) tensor per image \\(2\\)", (images, [boxes], grids, 0.5), {}),
        (
            ValueError,
            r"boxes\[1\] must be a \(Bi, 4\)",
            (images, [boxes[:, 1:], boxes], grids, 0.5),
            {},
        ),
        (ValueError, "boxes are on meta", (images, boxes.to("meta"), grids, 0.5), {}),
        (
            ValueError,
            "non-finite",
            (images, torch.tensor([[0, 0.0, 0, math.nan, 8]]), grids, 0.5),
            {},
        ),
        (
            ValueError,
            r"indices must be integers in \[0, 2\)",
            (images, torch.tensor([[2, 0.0, 0, 8, 8]]), grids, 0.5),
            {},
        ),
        (
            ValueError,
            r"indices must be integers in \[0, 2\)",
            (images, torch.tensor([[0.5, 0.0, 0, 8, 8]]), grids, 0.5),
            {},
        ),
        (ValueError, "grids must be a non-empty list", (images, boxes, [], 0.5), {}),
        (
            ValueError,
            r"grids\[1\] must be \(rows, cols\)",
            (images, boxes, [(2, 2), (0, 2)], 0.5),
            {},
        ),
        (ValueError, r"grids\[0\] must be \(rows, cols\)", (images, boxes, [(2, 2, 2)], 0.5), {}),
        (ValueError, r"grids\[0\] must be \(rows, cols\)", (images, boxes, [(2.0, 2)], 0.5), {}),
        (ValueError, "cell_prob must be a number in", (images, boxes, grids, 1.5), {}),
        (ValueError, "cell_prob must be a number in", (images, boxes, grids, math.nan), {}),
        (ValueError, "fill must be one of", (images, boxes, grids, 0.5, "zeros"), {}),
        (ValueError, "seed must be an int64", (images, boxes, grids, 0.5, "mean", 2**63), {}),
        (ValueError, "seed must be an int64", (images, boxes, grids, 0.5, "mean", 1.0), {}),
        (
            ValueError,
            "integer in \\[0, 255\\], got 3.5",
            (images, boxes, grids, 0.5, "constant"),
            {"fill_value": 3.5},
        ),
        (
            ValueError,
            "integer in \\[0, 255\\], got 256",
            (images, boxes, grids, 0.5, "constant"),
            {"fill_value": 256},
        ),
        (
            ValueError,
            "fill_value must be finite",
            (images.float(), boxes, grids, 0.5, "constant"),
            {"fill_value": math.inf},
        ),
        (
            ValueError,
            "noise_range applies to float images",
            (images, boxes, grids, 0.5, "noise"),
            {"noise_range": (0, 1)},
        ),
        (
            ValueError,
            "noise_range must be finite with low <= high",
            (images.float(), boxes, grids, 0.5, "noise"),
            {"noise_range": (2.0, 1.0)},
        ),
    ]
    for error, pattern, args, kwargs in cases:
        with pytest.raises(error, match=pattern):
            occ(*args, **kwargs)
    with pytest.raises(RuntimeError, match="more than 4096 cells"):
        occ(images, boxes, [(65, 64)], 0.5)


def test_compiled_op_checks_its_arguments():
    """Direct calls of torch.ops.person_search.multi_granularity_occlusion (no wrapper)."""
    op = torch.ops.person_search.multi_granularity_occlusion
    images = torch.zeros(1, 3, 8, 8)
    boxes = torch.tensor([[0, 0.0, 0, 8, 8]], dtype=torch.float64)
    ok = (images, boxes, [2], [2], 0.5, 0, 0.0, 0.0, 255.0, 0)

    def call(**changes):
        names = ["images", "boxes", "rows", "cols", "p", "mode", "value", "low", "high", "seed"]
        args = dict(zip(names, ok))
        args.update(changes)
        return op(*args.values())

    call()
    cases = [
        (
            "image index 1, expected an integer in \\[0, 1\\)",
            {"boxes": boxes + torch.tensor([1.0, 0, 0, 0, 0])},
        ),
        ("box 0 has a non-finite value", {"boxes": torch.tensor([[0, 0.0, math.inf, 8, 8]])}),
        ("boxes must be float32 or float64", {"boxes": boxes.long()}),
        ("boxes must have shape \\(B, 5\\)", {"boxes": boxes[:, :4]}),
        ("grid_rows and grid_cols must be non-empty and of equal length", {"cols": [2, 2]}),
        ("grid of level 0 must have rows, cols >= 1", {"rows": [0]}),
        ("cell_prob must be in \\[0, 1\\]", {"p": -0.1}),
        ("fill_mode must be 0 \\(mean\\), 1 \\(constant\\) or 2 \\(noise\\)", {"mode": 3}),
        ("noise range must be finite with low <= high", {"mode": 2, "low": 1.0, "high": 0.0}),
        (
            "fill_value for uint8 images must be an integer",
            {"images": images.byte(), "mode": 1, "value": 0.5},
        ),
    ]
    for pattern, changes in cases:
        with pytest.raises(RuntimeError, match=pattern):
            call(**changes)
