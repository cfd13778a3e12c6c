"""Plain-PyTorch executable specification of ``multi_granularity_occlusion``.

A per-level, per-box, per-cell loop written for clarity, not speed: the tests require the
compiled op to equal it exactly, and ``benchmarks/bench_ops.py`` times it as the baseline.
It re-implements the counter-based hash (chained splitmix64) in int64 tensor arithmetic
(multiplication and addition wrap modulo 2**64; right shifts are made logical by masking).
Conventions are documented in :mod:`person_search.layers.occlusion`.
"""

import math

import torch
from torch import Tensor

__all__ = ["counter_hash", "hash_to_unit", "multi_granularity_occlusion_reference"]

_MASK64 = (1 << 64) - 1
CELL_STREAM, KEEP_STREAM, NOISE_STREAM = 1, 2, 3
_FILL_MEAN, _FILL_CONSTANT, _FILL_NOISE = 0, 1, 2


def _i64(value: int) -> int:
    """Two's-complement int64 of an unsigned 64-bit constant."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GAMMA = _i64(0x9E3779B97F4A7C15)
_MUL1 = _i64(0xBF58476D1CE4E5B9)
_MUL2 = _i64(0x94D049BB133111EB)


def _shr(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bit patterns."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def splitmix64(z: Tensor) -> Tensor:
    """splitmix64 finaliser on int64 bit patterns (any shape)."""
    z = z + _GAMMA
    z = (z ^ _shr(z, 30)) * _MUL1
    z = (z ^ _shr(z, 27)) * _MUL2
    return z ^ _shr(z, 31)


def counter_hash(seed: int, stream: int, level: int, image: int, a, b) -> Tensor:
    """Hash of (seed, stream, level, image, a, b); ``a``/``b`` may be broadcastable tensors."""
    h = splitmix64(torch.tensor(seed, dtype=torch.int64))
    for key in (stream, level, image, a, b):
        h = splitmix64(h ^ torch.as_tensor(key, dtype=torch.int64))
    return h


def hash_to_unit(h: Tensor) -> Tensor:
    """Uniform float64 in [0, 1) from the top 53 bits."""
    return _shr(h, 11).to(torch.float64) * 2.0**-53


def _pixel_edge(v: float, size: int) -> int:
    return int(min(max(math.ceil(v - 0.5), 0), size))


def _cells(x0: int, y0: int, x1: int, y1: int, rows: int, cols: int) -> list:
    h, w = max(y1 - y0, 0), max(x1 - x0, 0)
    out = []
    for i in range(rows):
        for j in range(cols):
            out.append(
                (
                    y0 + (i * h) // rows,
                    y0 + ((i + 1) * h) // rows,
                    x0 + (j * w) // cols,
                    x0 + ((j + 1) * w) // cols,
                )
            )
    return out


def _channel_means(images: Tensor) -> Tensor:
    """(N, C) means: rows summed left to right, then rows top to bottom, in float64."""
    h, w = images.shape[-2:]
    rows = images.to(torch.float64).cumsum(-1)[..., -1]
    total = rows.cumsum(-1)[..., -1]
    mean = total / float(h * w)
    if images.dtype == torch.uint8:
        return torch.round(mean).to(torch.uint8)
    return mean.to(images.dtype)


def multi_granularity_occlusion_reference(
    images: Tensor,
    boxes: Tensor,
    grids: list[tuple[int, int]],
    cell_prob: float,
    fill_mode: int,
    fill_value: float = 0.0,
    noise_low: float = 0.0,
    noise_high: float = 255.0,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Same contract as ``torch.ops.person_search.multi_granularity_occlusion`` (CPU tensors).

    Args:
        images: (N, C, H, W); boxes: (B, 5) ``[image_index, x1, y1, x2, y2]``.
        fill_mode: 0 mean, 1 constant, 2 noise.
    Returns:
        (L, N, C, H, W) occluded images and (L, B, max_cells) bool cell masks.
    """
    n_img, channels, height, width = images.shape
    boxes = boxes.to(torch.float64)
    max_cells = max(r * c for r, c in grids)
    masks = torch.zeros((len(grids), boxes.shape[0], max_cells), dtype=torch.bool)
    means = _channel_means(images) if fill_mode == _FILL_MEAN else None
    levels = []
    for level, (rows, cols) in enumerate(grids):
        out = images.clone()
        visible = []  # (image, cell rectangle) of every visible cell, restored at the end
        for b, box in enumerate(boxes.tolist()):
            n = int(box[0])
            x0, y0 = _pixel_edge(box[1], width), _pixel_edge(box[2], height)
            x1, y1 = _pixel_edge(box[3], width), _pixel_edge(box[4], height)
            cells = _cells(x0, y0, x1, y1, rows, cols)
            valid = [k for k, (a, b_, c, d) in enumerate(cells) if b_ > a and d > c]
            for k in valid:
                u = hash_to_unit(counter_hash(seed, CELL_STREAM, level, n, b, k))
                masks[level, b, k] = bool(u < cell_prob)
            if valid and all(masks[level, b, k] for k in valid):
                h = counter_hash(seed, KEEP_STREAM, level, n, b, 0)
                keep = (int(_shr(h, 32)) * len(valid)) >> 32
                masks[level, b, valid[keep]] = False
            for k in valid:
                if not masks[level, b, k]:
                    visible.append((n, cells[k]))
                    continue
                ya, yb, xa, xb = cells[k]
                region = out[n, :, ya:yb, xa:xb]
                if fill_mode == _FILL_MEAN:
                    region[...] = means[n][:, None, None]
                elif fill_mode == _FILL_CONSTANT:
                    region[...] = fill_value
                else:
                    ch = torch.arange(channels)[:, None, None]
                    pix = torch.arange(ya, yb)[:, None] * width + torch.arange(xa, xb)[None, :]
                    h = counter_hash(seed, NOISE_STREAM, level, n, ch, pix[None])
                    if images.dtype == torch.uint8:
                        region[...] = _shr(h, 56).to(torch.uint8)
                    else:
                        u = hash_to_unit(h)
                        region[...] = (noise_low + u * (noise_high - noise_low)).to(images.dtype)
        # visible cells take precedence over the covered cells of overlapping boxes
        for n, (ya, yb, xa, xb) in visible:
            out[n, :, ya:yb, xa:xb] = images[n, :, ya:yb, xa:xb]
        levels.append(out)
    return torch.stack(levels), masks
