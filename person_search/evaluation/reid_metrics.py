"""Re-id metrics and distances, vectorised (torch; numpy arrays accepted).

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
# Queries processed together (bounds the (chunk, G) sort buffers to a few hundred MB).
_QUERY_CHUNK = 256
_METRICS = ("cosine", "euclidean")
# Sort key of absent entries (after every real key).
_KEY_PAD = torch.iinfo(torch.int64).max


def _rank_keys(dist: torch.Tensor) -> torch.Tensor:
    """(Q, G) int64 keys ordered exactly like (distance, gallery index): ties keep gallery order.

    The float32 bit pattern is mapped to an order-preserving int32 (negative floats have their
    magnitude bits flipped), then combined with the column index, so keys are unique per row and
    rank positions never depend on a sort's tie handling.
    """
    if torch.isnan(dist).any():
        raise ValueError("the distance matrix contains NaN")
    bits = (dist.float() + 0.0).contiguous().view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(torch.int64)
    return ordered * dist.shape[1] + torch.arange(dist.shape[1])[None, :]


def _as_tensor(x, dtype=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t if dtype is None else t.to(dtype)


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

    Args:
        dist: (Q, G) distances (smaller = more similar), tensor or array.
        q_pids, g_pids: (Q,), (G,) person ids; gallery id -1 = junk (ignored).
        q_camids, g_camids: (Q,), (G,) camera ids.
        max_rank: length of the returned CMC curve.

    Returns:
        {"cmc": (max_rank,) float64 numpy, "mAP": float, "mINP": float,
         "num_valid_queries": int, "num_skipped_queries": int, "AP": (Q,) numpy (nan for skipped
         queries)} -- fractions in [0, 1].
    """
    dist = _as_tensor(dist, torch.float32)
    q_pids, g_pids = _as_tensor(q_pids, torch.int64), _as_tensor(g_pids, torch.int64)
    q_cams, g_cams = _as_tensor(q_camids, torch.int64), _as_tensor(g_camids, torch.int64)
    num_q, num_g = dist.shape if dist.ndim == 2 else (-1, -1)
    if dist.ndim != 2 or q_pids.shape != (num_q,) or q_cams.shape != (num_q,):
        raise ValueError(
            f"dist (Q, G) and query ids (Q,) disagree: {tuple(dist.shape)}, {q_pids.shape}"
        )
    if g_pids.shape != (num_g,) or g_cams.shape != (num_g,):
        raise ValueError(
            f"dist (Q, G) and gallery ids (G,) disagree: {tuple(dist.shape)}, {g_pids.shape}"
        )
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    ap = torch.full((num_q,), float("nan"), dtype=torch.float64)
    inp = torch.full((num_q,), float("nan"), dtype=torch.float64)
    first = torch.full((num_q,), -1, dtype=torch.int64)  # 0-based rank of the first match
    for start in range(0, num_q, _QUERY_CHUNK):
        sl = slice(start, min(start + _QUERY_CHUNK, num_q))
        keys = _rank_keys(dist[sl])  # (C, G) int64, unique per row, ordered like (dist, index)
        same_pid = g_pids[None, :] == q_pids[sl, None]
        removed = (g_pids[None, :] == JUNK_PERSON_ID) | (
            same_pid & (g_cams[None, :] == q_cams[sl, None])
        )
        match = same_pid & ~removed
        num_match = match.sum(1)
        valid = num_match > 0
        if not valid.any():
            continue
        m_max = int(num_match.max())
        # Keys of the true matches in rank order (padding: the largest int64).
        match_keys = torch.where(match, keys, _KEY_PAD).topk(m_max, dim=1, largest=False).values
        # For every other kept entry, how many matches rank before it; removed entries -> m_max.
        before = torch.searchsorted(match_keys, keys)
        before = torch.where(match | removed, m_max, before)
        hist = torch.zeros(before.shape[0], m_max + 1, dtype=torch.int64)
        hist.scatter_add_(1, before, torch.ones_like(before))
        # 1-based rank of the i-th match = i + 1 + (non-matches ranked before it).
        nth = torch.arange(1, m_max + 1)
        rank = nth[None, :] + hist[:, :m_max].cumsum(1)
        is_match = nth[None, :] <= num_match[:, None]
        precision = torch.where(is_match, nth[None, :].double() / rank.double(), 0.0)
        n = num_match.clamp(min=1)
        ap[sl] = torch.where(valid, precision.sum(1) / n, float("nan"))
        last_rank = rank.gather(1, (n - 1)[:, None]).squeeze(1)
        inp[sl] = torch.where(valid, num_match.double() / last_rank, float("nan"))
        first[sl] = torch.where(valid, rank[:, 0] - 1, -1)
    valid = first >= 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError("no query has a valid match in the gallery (after same-camera removal)")
    ranks = torch.arange(max_rank)
    cmc = (first[valid, None] <= ranks[None, :]).double().mean(0)
    return {
        "cmc": cmc.numpy(),
        "mAP": float(ap[valid].mean()),
        "mINP": float(inp[valid].mean()),
        "num_valid_queries": num_valid,
        "num_skipped_queries": num_q - num_valid,
        "AP": ap.numpy(),
    }
