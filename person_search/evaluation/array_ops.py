"""Small numpy helpers shared by the person-search metrics: paired box IoU, CSR offsets and range
expansion, row-wise L2 normalisation."""

from __future__ import annotations

import numpy as np

__all__ = ["csr_offsets", "expand_ranges", "l2_normalize", "paired_iou"]

_NORM_EPS = 1e-12  # smallest norm divided by (zero rows stay zero)


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a[i]`` with box ``b[i]``; a, b: (N, 4) XYXY (no +1). Returns (N,) float64.

    A pair whose union is empty (two degenerate boxes) has IoU 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0.0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0.0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    out = np.zeros(len(a), dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def expand_ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(starts[i], ends[i])`` for all i, without a Python loop. (sum,) int64."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(ends, dtype=np.int64) - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    firsts = np.cumsum(lengths) - lengths  # position of each range's first element in the output
    return np.repeat(starts - firsts, lengths) + np.arange(total, dtype=np.int64)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of an (N, D) array to float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, _NORM_EPS)


def csr_offsets(offsets: np.ndarray, num_rows: int, owner: str) -> np.ndarray:
    """``offsets`` as (G+1,) int64 rising from 0 to ``num_rows`` (rows of item g:
    ``offsets[g]:offsets[g+1]``); ``ValueError`` naming ``owner`` otherwise."""
    offsets = np.asarray(offsets, dtype=np.int64)
    if (
        offsets.ndim != 1
        or len(offsets) < 1
        or offsets[0] != 0
        or offsets[-1] != num_rows
        or np.any(np.diff(offsets) < 0)
    ):
        raise ValueError(f"{owner}: offsets must rise from 0 to {num_rows}")
    return offsets
