"""Spatial feature alignment (SFA): head top, body-proportion split and region pooling
(SGSFA Sec. 3.2.1).

The learned head mask is scanned from the top: its first row holding a set cell is the top of
the head; from there down to the bottom of the map the body is split 15% / 23% / 62% into
top / middle / bottom (ergonomic proportions); the regions are those three and
top+middle, middle+bottom (eq. 1). Rows above the head belong to no region.

Our readings where the text is unclear:

* "first position with non-zero": a sigmoid map is never exactly 0, so a cell counts as set
  when its value is > ``threshold`` (0.5).
* Sec. 3.3 adds "we choose line l_head + 1 as the starting position of the head feature",
  which contradicts Sec. 3.2.1's top-of-head scan (and "l_head is the maximum location" is
  undefined); we follow Sec. 3.2.1: the split starts at the first set row.
* An empty head mask (head occluded or missed): the split starts at row 0, the top of the
  crop (a detector's box starts at the head); the regions' visibility then says what is seen.
* Rows are rounded (half up) from the head top: boundaries ``t0 + round(0.15 L)`` and
  ``t0 + round(0.38 L)``, ``L = H - t0``, each region kept at least one row high (the head top
  is moved up to ``H - 3`` at most).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "BODY_PROPORTIONS",
    "REGIONS",
    "find_head_top",
    "region_fraction",
    "region_pool",
    "region_rows",
    "split_rows",
]

# Regions of eq. 1, in this order everywhere (features, classifiers, eq. 3's choice).
REGIONS = ("top", "middle", "bottom", "top+middle", "middle+bottom")
# Heights of head, upper body, lower body as fractions of the body (paper: 15%, 23%, 62%).
BODY_PROPORTIONS = (0.15, 0.23, 0.62)
# Rows of the smallest map that can be split (one per region).
_MIN_ROWS = 3


def find_head_top(head_mask: torch.Tensor, threshold: float = 0.5) -> tuple[torch.Tensor, ...]:
    """Top row of the head in each learned head mask.

    Args:
        head_mask: (N, H, W) mask values (probabilities).
        threshold: a cell is set when its value is > threshold.

    Returns:
        top: (N,) int64, the first row (top to bottom) with a set cell; 0 where none is set.
        found: (N,) bool, whether the mask has a set cell.
    """
    if head_mask.dim() != 3:
        raise ValueError(f"head mask must be (N, H, W), got {tuple(head_mask.shape)}")
    height = head_mask.shape[1]
    set_rows = (head_mask > threshold).any(dim=2)  # (N, H)
    rows = torch.arange(height, device=head_mask.device).expand_as(set_rows)
    first = torch.where(set_rows, rows, height).min(dim=1).values
    found = first < height
    return torch.where(found, first, 0), found


def split_rows(
    top: torch.Tensor, height: int, proportions: Sequence[float] = BODY_PROPORTIONS
) -> torch.Tensor:
    """Row boundaries of top / middle / bottom below each head top.

    Args:
        top: (N,) int64 head-top rows.
        height: rows H of the map (>= 3).
        proportions: (top, middle, bottom) fractions of the body height, positive, sum 1.

    Returns:
        (N, 4) int64 ``[t0, b1, b2, H]``: top = rows [t0, b1), middle [b1, b2), bottom [b2, H).
    """
    if len(proportions) != 3 or min(proportions) <= 0 or abs(sum(proportions) - 1.0) > 1e-6:
        raise ValueError(
            f"MODEL.SGSFA.SPLIT must be three positive fractions summing to 1, got {proportions}"
        )
    if height < _MIN_ROWS:
        raise ValueError(f"the SFA split needs a map at least {_MIN_ROWS} rows high, got {height}")
    t0 = top.long().clamp(0, height - _MIN_ROWS)
    body = (height - t0).double()
    b1 = t0 + torch.floor(proportions[0] * body + 0.5).long()
    b1 = torch.maximum(torch.minimum(b1, torch.full_like(b1, height - 2)), t0 + 1)
    b2 = t0 + torch.floor((proportions[0] + proportions[1]) * body + 0.5).long()
    b2 = torch.maximum(torch.minimum(b2, torch.full_like(b2, height - 1)), b1 + 1)
    return torch.stack([t0, b1, b2, torch.full_like(t0, height)], dim=1)


def region_rows(bounds: torch.Tensor, height: int) -> torch.Tensor:
    """Rows of each region of :data:`REGIONS`.

    Args:
        bounds: (N, 4) from :func:`split_rows`.
        height: rows H of the map.

    Returns:
        (N, 5, H) bool.
    """
    rows = torch.arange(height, device=bounds.device)[None, :]
    t0, b1, b2, end = (bounds[:, i, None] for i in range(4))
    top = (rows >= t0) & (rows < b1)
    middle = (rows >= b1) & (rows < b2)
    bottom = (rows >= b2) & (rows < end)
    return torch.stack([top, middle, bottom, top | middle, middle | bottom], dim=1)


def _row_average(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """values (N, ..., H), rows (N, R, H) bool -> (N, R, ...) mean of values over each region."""
    weights = rows.to(values.dtype)
    weights = weights / weights.sum(dim=2, keepdim=True).clamp(min=1.0)
    return torch.einsum("n...h,nrh->nr...", values, weights)


def region_pool(features: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Average pooling of a feature map over each region's rows (all columns).

    Args:
        features: (N, C, H, W).
        rows: (N, R, H) bool from :func:`region_rows`.

    Returns:
        (N, R, C).
    """
    return _row_average(features.mean(dim=3), rows)


def region_fraction(mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean of a mask over each region's cells (eq. 4 on the region).

    Args:
        mask: (N, H, W) values in [0, 1].
        rows: (N, R, H) bool.

    Returns:
        (N, R) float.
    """
    return _row_average(mask.mean(dim=2), rows)
