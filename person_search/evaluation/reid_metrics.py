"""Re-id metrics and distances, vectorised (tensors or numpy arrays accepted).

Protocol (single query, see ``reid-protocol.md``): for each query the gallery is sorted by
increasing distance (ties keep gallery order: a stable sort); gallery entries with the query's
id *and* camera, and junk entries (id -1), are removed; a query with no true match left is skipped
and counted. On the remaining list:

* CMC@k = 1 if the first true match is at rank <= k;
* AP = mean over the true matches of the precision at their ranks;
* INP = (number of true matches) / (rank of the last true match) (Ye et al., TPAMI 2021);

``evaluate_reid`` returns the means over valid queries, as fractions in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["JUNK_PERSON_ID", "evaluate_reid", "feature_distance", "part_distance"]

# Person id of junk gallery images (Market-1501's "-1"): ignored, neither match nor distractor.
JUNK_PERSON_ID = -1
# Queries processed together (bounds the (chunk, G) int64 key buffer to ~65 MB at Market scale).
_QUERY_CHUNK = 512
_METRICS = ("cosine", "euclidean")
# Category of a gallery entry for one query, stored in the two lowest bits of its sort key.
_KEPT, _MATCH, _REMOVED = 0, 1, 2
_CATEGORY_BITS = 2
# Bits of the order-preserving image of a float32 distance in a sort key.
_DISTANCE_BITS = 32


def _sort_keys(dist: np.ndarray, category: np.ndarray) -> np.ndarray:
    """(C, G) int64 keys whose order is (distance, gallery index) and that carry ``category``.

    Key = ordered(distance) * 2^(b + 2) + index * 4 + category, with ordered() the
    order-preserving map of float32 bit patterns to int32 (negative floats have their magnitude
    bits flipped) and b the bits of a gallery index. Keys are unique per row, so a plain (fast,
    unstable) sort gives the exact tie order "smaller gallery index first", and the category
    of every entry is read back from the sorted keys without a gather.
    """
    num_g = dist.shape[1]
    index_bits = max(1, (num_g - 1).bit_length())
    if _DISTANCE_BITS + index_bits + _CATEGORY_BITS > 63:
        raise ValueError(f"gallery of {num_g} entries is too large to rank")
    bits = (dist + np.float32(0.0)).view(np.int32)  # a copy; + 0.0 turns -0.0 into +0.0
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)  # negative floats: flip the magnitude bits
    keys = bits.astype(np.int64)
    keys <<= index_bits + _CATEGORY_BITS
    keys += np.arange(num_g, dtype=np.int64) << _CATEGORY_BITS
    keys += category
    return keys


def _ranked_categories(dist: np.ndarray, category: np.ndarray) -> np.ndarray:
    """(C, G) int8: each row's categories in ranked order (by distance, ties by gallery index).

    float32 rows sort packed keys (:func:`_sort_keys`); float64 ones, whose bits do not fit a
    key, a stable argsort.
    """
    if dist.dtype == np.float64:
        order = np.argsort(dist, axis=1, kind="stable")
        return np.take_along_axis(category, order, axis=1)
    keys = _sort_keys(dist, category)
    keys.sort(axis=1)
    ranked = np.empty(keys.shape, dtype=np.int8)
    np.bitwise_and(keys, 2**_CATEGORY_BITS - 1, out=ranked, casting="unsafe")
    return ranked


def _is_float64(x) -> bool:
    return getattr(x, "dtype", None) in (np.float64, torch.float64)


def _as_tensor(x, dtype=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t if dtype is None else t.to(dtype)


def _as_numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=dtype)


def feature_distance(query: torch.Tensor, gallery: torch.Tensor, metric: str) -> torch.Tensor:
    """Pairwise distance between (Q, D) and (G, D) features -> (Q, G) float32.

    "cosine": 1 - cosine similarity (features are L2-normalised here), in [0, 2].
    "euclidean": L2 distance (not squared).
    """
    if metric not in _METRICS:
        raise ValueError(f"TEST.REID.METRIC must be one of {_METRICS}, got {metric!r}")
    q = _as_tensor(query, torch.float32)
    g = _as_tensor(gallery, torch.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(
            f"features must be (Q, D) and (G, D), got {tuple(q.shape)}, {tuple(g.shape)}"
        )
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        g = torch.nn.functional.normalize(g, dim=1)
        return (1.0 - q @ g.T).clamp_(min=0.0)
    sq = (q * q).sum(1, keepdim=True) + (g * g).sum(1)[None, :] - 2.0 * (q @ g.T)
    return sq.clamp_(min=0.0).sqrt_()


def part_distance(
    query_parts: torch.Tensor,
    query_visibility: torch.Tensor,
    gallery_parts: torch.Tensor,
    gallery_visibility: torch.Tensor,
    *,
    metric: str,
    threshold: float = 0.5,
    normalize: bool = True,
) -> torch.Tensor:
    """Distance over the parts visible in both images -> (Q, G) float32.

    Args:
        query_parts, gallery_parts: (Q, P, d) and (G, P, d) part features.
        query_visibility, gallery_visibility: (Q, P) and (G, P) scores; part i of an image is
            visible when its score is > ``threshold`` (SGSFA eq. 5).
        metric: per-part distance, as in :func:`feature_distance`.
        normalize: True: sum over shared visible parts of the part distances divided by the
            number of shared visible parts (``reid-protocol.md``); False: the plain sum (SGSFA
            eq. 7, which favours pairs sharing few parts).

    Pairs sharing no visible part get distance +inf (ranked after every other pair).
    """
    qp = _as_tensor(query_parts, torch.float32)
    gp = _as_tensor(gallery_parts, torch.float32)
    if qp.ndim != 3 or gp.ndim != 3 or qp.shape[1:] != gp.shape[1:]:
        raise ValueError(
            "part features must be (Q, P, d) and (G, P, d), "
            f"got {tuple(qp.shape)}, {tuple(gp.shape)}"
        )
    qv = _as_tensor(query_visibility, torch.float32) > threshold
    gv = _as_tensor(gallery_visibility, torch.float32) > threshold
    if qv.shape != qp.shape[:2] or gv.shape != gp.shape[:2]:
        raise ValueError(
            f"part visibility must be (Q, P) and (G, P), got {tuple(qv.shape)}, {tuple(gv.shape)}"
        )
    total = torch.zeros(qp.shape[0], gp.shape[0])
    for i in range(qp.shape[1]):  # P is small (<= ~16): one (Q, G) matrix per part
        shared = qv[:, i, None] & gv[None, :, i]
        total += torch.where(shared, feature_distance(qp[:, i], gp[:, i], metric), 0.0)
    count = qv.float() @ gv.float().T
    if normalize:
        total = total / count.clamp(min=1.0)
    return total.masked_fill_(count == 0, float("inf"))


def evaluate_reid(
    dist,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 10,
) -> dict:
    """CMC, mAP and mINP of a (Q, G) distance matrix under the single-query protocol.

    Vectorised over chunks of queries: one sort per row of packed (distance, index, category)
    keys; the rank of a true match is its sorted position less the removed entries before it.

    Args:
        dist: (Q, G) distances (smaller = more similar), tensor or array; +inf allowed (ranked
            last, ties in gallery order), NaN refused. Ranked in their own precision: float64
            stays float64 (casting to float32 would tie close distances and reorder them).
        q_pids, g_pids: (Q,), (G,) person ids; gallery id -1 = junk (ignored).
        q_camids, g_camids: (Q,), (G,) camera ids.
        max_rank: length of the returned CMC curve.

    Returns:
        {"cmc": (max_rank,) float64 numpy, "mAP": float, "mINP": float,
         "num_valid_queries": int, "num_skipped_queries": int, "AP": (Q,) numpy (nan for skipped
         queries)} -- fractions in [0, 1].
    """
    dist = _as_numpy(dist, np.float64 if _is_float64(dist) else np.float32)
    q_pids, g_pids = _as_numpy(q_pids, np.int64), _as_numpy(g_pids, np.int64)
    q_cams, g_cams = _as_numpy(q_camids, np.int64), _as_numpy(g_camids, np.int64)
    num_q, num_g = dist.shape if dist.ndim == 2 else (-1, -1)
    if dist.ndim != 2 or q_pids.shape != (num_q,) or q_cams.shape != (num_q,):
        raise ValueError(f"dist (Q, G) and query ids (Q,) disagree: {dist.shape}, {q_pids.shape}")
    if g_pids.shape != (num_g,) or g_cams.shape != (num_g,):
        raise ValueError(f"dist (Q, G) and gallery ids (G,) disagree: {dist.shape}, {g_pids.shape}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if np.isnan(dist).any():
        raise ValueError("the distance matrix contains NaN")
    ap = np.full(num_q, np.nan)
    inp = np.full(num_q, np.nan)
    first = np.full(num_q, -1, dtype=np.int64)  # 0-based rank of the first true match
    junk = g_pids == JUNK_PERSON_ID
    for start in range(0, num_q, _QUERY_CHUNK):
        sl = slice(start, min(start + _QUERY_CHUNK, num_q))
        same_pid = g_pids[None, :] == q_pids[sl, None]
        removed = junk[None, :] | (same_pid & (g_cams[None, :] == q_cams[sl, None]))
        category = np.where(removed, np.int8(_REMOVED), same_pid.astype(np.int8) * np.int8(_MATCH))
        category = _ranked_categories(dist[sl], category)
        rows, cols = np.nonzero(category == _MATCH)  # row-major: matches in rank order
        # 1-based rank among the kept entries = sorted position + 1 - removed entries before.
        removed_rows, removed_cols = np.nonzero(category == _REMOVED)
        removed_flat = removed_rows * num_g + removed_cols  # sorted, like rows * num_g + cols
        removed_per_row = np.bincount(removed_rows, minlength=category.shape[0])
        removed_before = (
            np.searchsorted(removed_flat, rows * num_g + cols)
            - (np.cumsum(removed_per_row) - removed_per_row)[rows]
        )
        ranks = cols + 1 - removed_before
        num_match = np.bincount(rows, minlength=category.shape[0])
        offsets = np.cumsum(num_match) - num_match  # index of each row's first match
        nth = np.arange(len(rows)) - offsets[rows] + 1  # 1-based match number within its row
        valid = num_match > 0
        ap_sum = np.bincount(rows, weights=nth / ranks, minlength=category.shape[0])
        ap[sl][valid] = ap_sum[valid] / num_match[valid]
        last = ranks[(offsets + num_match - 1)[valid]]
        inp[sl][valid] = num_match[valid] / last
        first[sl][valid] = ranks[offsets[valid]] - 1
    valid = first >= 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError("no query has a valid match in the gallery (after same-camera removal)")
    cmc = (first[valid, None] <= np.arange(max_rank)[None, :]).mean(0)
    return {
        "cmc": cmc.astype(np.float64),
        "mAP": float(ap[valid].mean()),
        "mINP": float(inp[valid].mean()),
        "num_valid_queries": num_valid,
        "num_skipped_queries": num_q - num_valid,
        "AP": ap,
    }
