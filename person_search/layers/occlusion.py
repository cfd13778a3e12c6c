"""Multi-granularity box occlusion (MGOFE's "MGRO" augmentation) on the compiled op.

For every grid level ``(rows, cols)``, every box is split into ``rows x cols`` cells and each
cell is covered with probability ``cell_prob``; the covered pixels are replaced by the
image's per-channel mean, a constant or uniform noise. One call occludes all boxes of a
batch at all levels. Conventions (identical on CPU and CUDA, bit for bit):

* Box pixels: a box ``[x1, y1, x2, y2]`` (XYXY, pixels) owns the pixels whose centre
  ``(x + 0.5, y + 0.5)`` lies in ``[x1, x2) x [y1, y2)``, i.e. columns
  ``[ceil(x1 - 0.5), ceil(x2 - 0.5))`` clipped to the image (rows likewise). A box with no
  pixel (empty, degenerate or outside the image) is never occluded.
* Cells: with ``h`` pixel rows, cell row ``i`` spans ``[y0 + floor(i*h/rows),
  y0 + floor((i+1)*h/rows))`` (columns likewise); cells are numbered row-major. A cell
  with no pixel (box smaller than the grid) is never covered and is not counted.
* Randomness: a counter-based hash (chained splitmix64) of ``(seed, stream, level,
  image index, box row, cell)`` gives a uniform ``u`` in [0, 1) per cell; the cell is
  covered when ``u < cell_prob``. No generator state is used or consumed.
* A box is never fully covered: if every non-empty cell came out covered, the non-empty
  cell number ``k`` (row-major) is uncovered, ``k`` drawn from the same hash (own stream).
  A box with a single non-empty cell is therefore never occluded.
* Overlapping boxes: a pixel is filled if a covered cell of some box contains it and no
  visible (non-empty, uncovered) cell of any box of the image contains it. Visible cells take
  precedence, so every box with a pixel keeps at least one cell of untouched pixels, also
  when its neighbours' covered cells overlap it.
* Fill values: "mean" = per-image per-channel mean of the input (rounded half-to-even for
  uint8); "constant" = ``fill_value``; "noise" = per-pixel hash of (level, image, channel,
  pixel): ``floor(256 u)`` for uint8, ``low + u * (high - low)`` for float images.
* Not differentiable (a data augmentation): called on images or boxes that require grad
  with grad mode on, the op raises an error; the outputs never require grad.

The executable specification is :mod:`person_search.layers.occlusion_reference`.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._ext import ops

__all__ = ["FILL_MODES", "multi_granularity_occlusion", "boxes_to_indexed"]

# fill name -> fill_mode argument of the compiled op.
FILL_MODES = {"mean": 0, "constant": 1, "noise": 2}
# Value range of uint8 pixels (and default noise range of float images, Detectron2's 0..255).
PIXEL_RANGE = (0.0, 255.0)
_IMAGE_DTYPES = (torch.uint8, torch.float32, torch.float64)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def boxes_to_indexed(
    boxes: Tensor | Sequence[Tensor], num_images: int, device: torch.device | None = None
) -> Tensor:
    """Boxes as a (B, 5) ``[image_index, x1, y1, x2, y2]`` floating tensor.

    Args:
        boxes: a (B, 5) tensor, or a list of ``num_images`` (Bi, 4) XYXY tensors.
        device: device of the result when ``boxes`` is an empty list (default CPU).
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                "boxes given as a tensor must have shape (B, 5) [image_index, x1, y1, x2, y2], "
                f"got {tuple(boxes.shape)}"
            )
        indexed = boxes
    else:
        if not isinstance(boxes, Sequence) or len(boxes) != num_images:
            raise ValueError(
                f"boxes given as a list must hold one (Bi, 4) tensor per image ({num_images}), "
                f"got {type(boxes).__name__} of length "
                f"{len(boxes) if isinstance(boxes, Sequence) else 'n/a'}"
            )
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(f"boxes[{i}] must be a (Bi, 4) tensor, got {shape}")
        if len(boxes) == 0:
            return torch.zeros((0, 5), dtype=torch.float64, device=device)
        flat = torch.cat([b.to(torch.float64) for b in boxes], dim=0)
        sizes = torch.tensor([len(b) for b in boxes], device=flat.device)
        index = torch.repeat_interleave(torch.arange(num_images, device=flat.device), sizes)
        indexed = torch.cat([index.to(flat.dtype)[:, None], flat], dim=1)
    if not indexed.is_floating_point():
        indexed = indexed.to(torch.float64)
    elif indexed.dtype not in (torch.float32, torch.float64):
        indexed = indexed.to(torch.float32)
    return indexed


def _check_grids(grids: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    if isinstance(grids, Tensor):
        grids = grids.tolist()
    if not isinstance(grids, Sequence) or len(grids) == 0:
        raise ValueError(f"grids must be a non-empty list of (rows, cols), got {grids!r}")
    rows, cols = [], []
    for level, grid in enumerate(grids):
        if (
            not isinstance(grid, Sequence)
            or len(grid) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in grid)
        ):
            raise ValueError(f"grids[{level}] must be (rows, cols) with ints >= 1, got {grid!r}")
        rows.append(grid[0])
        cols.append(grid[1])
    return rows, cols


def multi_granularity_occlusion(
    images: Tensor,
    boxes: Tensor | Sequence[Tensor],
    grids: Sequence[Sequence[int]],
    cell_prob: float,
    fill: str = "mean",
    seed: int = 0,
    *,
    fill_value: float = 0.0,
    noise_range: tuple[float, float] | None = None,
) -> tuple[Tensor, Tensor]:
    """Occlude random grid cells of every box, at several granularities, in one call.

    Args:
        images: (N, C, H, W) uint8, float32 or float64, on CPU or CUDA (not modified).
        boxes: (B, 5) ``[image_index, x1, y1, x2, y2]`` or a list of N (Bi, 4) tensors,
            XYXY in pixels of ``images``; same device as ``images``.
        grids: L levels ``(rows, cols)``, e.g. ``[(2, 1), (2, 2)]`` (halves, quarters).
        cell_prob: probability that a cell is covered, in [0, 1].
        fill: "mean" (per-image per-channel mean), "constant" (``fill_value``) or "noise"
            (uniform: integers 0..255 for uint8, ``noise_range`` for float images).
        seed: int64 key of the counter-based random numbers (same seed, same result).
        fill_value: value of "constant" (an integer in [0, 255] for uint8 images).
        noise_range: ``(low, high)`` of "noise" for float images, default (0, 255); must be
            None for uint8 images.
    Raises:
        ValueError / TypeError: on a bad argument, naming it.
        RuntimeError: if ``images`` or ``boxes`` require grad under grad mode (not
            differentiable).
    Returns:
        occluded: (L, N, C, H, W), dtype of ``images``, level l in ``occluded[l]``.
        cell_masks: (L, B, max_l rows_l * cols_l) bool, True = cell covered; cells of level l
            are the first ``rows_l * cols_l`` entries (row-major), the rest are False.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (N, C, H, W) tensor, got {shape}")
    if images.dtype not in _IMAGE_DTYPES:
        raise TypeError(f"images must be uint8, float32 or float64, got {images.dtype}")
    indexed = boxes_to_indexed(boxes, images.shape[0], images.device)
    if indexed.device != images.device:
        raise ValueError(f"boxes are on {indexed.device} but images are on {images.device}")
    if indexed.numel() > 0:
        index = indexed[:, 0]
        if not bool(torch.isfinite(indexed).all()):
            raise ValueError("boxes contain non-finite values")
        if bool(((index != index.round()) | (index < 0) | (index >= images.shape[0])).any()):
            raise ValueError(
                f"box image indices must be integers in [0, {images.shape[0]}), got "
                f"{index.unique().tolist()}"
            )
    rows, cols = _check_grids(grids)
    if not (isinstance(cell_prob, (int, float)) and 0.0 <= cell_prob <= 1.0):
        raise ValueError(f"cell_prob must be a number in [0, 1], got {cell_prob!r}")
    if fill not in FILL_MODES:
        raise ValueError(f"fill must be one of {sorted(FILL_MODES)}, got {fill!r}")
    if not isinstance(seed, int) or not _INT64_MIN <= seed <= _INT64_MAX:
        raise ValueError(f"seed must be an int64, got {seed!r}")
    if fill == "constant":
        if not math.isfinite(fill_value):
            raise ValueError(f"fill_value must be finite, got {fill_value}")
        if images.dtype == torch.uint8 and not (
            float(fill_value).is_integer() and PIXEL_RANGE[0] <= fill_value <= PIXEL_RANGE[1]
        ):
            raise ValueError(
                f"fill_value for uint8 images must be an integer in [0, 255], got {fill_value}"
            )
    if images.dtype == torch.uint8 and noise_range is not None:
        raise ValueError("noise_range applies to float images; uint8 noise covers 0..255")
    low, high = PIXEL_RANGE if noise_range is None else (float(v) for v in noise_range)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"noise_range must be finite with low <= high, got {noise_range}")
    return ops().multi_granularity_occlusion(
        images,
        indexed,
        rows,
        cols,
        float(cell_prob),
        FILL_MODES[fill],
        float(fill_value),
        low,
        high,
        seed,
    )
