"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li: "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017), written from the paper's description with torch ops.

With N = Q + G images and d the original distance (scaled by its largest finite value into
[0, 1]; pairs at +inf, e.g. without shared visible parts, count as 1):

1. N(i, k): the k + 1 nearest images of i (itself included); R(i, k) = {j in N(i, k) : i in
   N(j, k)}, the k-reciprocal neighbours.
2. R*(i) = R(i, k1) united with every R(c, k1/2), c in R(i, k1), that shares more than 2/3 of its
   elements with R(i, k1) (the paper's expansion).
3. V_i[j] = exp(-d(i, j)) for j in R*(i), 0 elsewhere, normalised to sum 1.
4. Local query expansion: V_i <- mean of V_j over the k2 nearest images j of i.
5. Jaccard distance d_J(i, j) = 1 - sum_k min(V_i[k], V_j[k]) / sum_k max(V_i[k], V_j[k]);
   final distance (1 - lambda) d_J + lambda d.

Memory is O(N^2) (dense N x N distance and V matrices): about 1.5 GB each at Market-1501 scale.
"""

from __future__ import annotations

import torch

__all__ = ["k_reciprocal_rerank"]

# Rows processed together in the neighbour-set steps (bounds the (B, k, k/2, k) buffers).
_ROW_CHUNK = 1024


def _scaled_full_distance(q_g: torch.Tensor, q_q: torch.Tensor, g_g: torch.Tensor) -> torch.Tensor:
    full = torch.cat([torch.cat([q_q, q_g], 1), torch.cat([q_g.T, g_g], 1)], 0).float()
    finite = torch.isfinite(full)
    if not finite.any():
        raise ValueError("re-ranking: every distance is infinite")
    scale = full[finite].max().clamp(min=torch.finfo(torch.float32).tiny)
    return torch.where(finite, full / scale, 1.0)


def _reciprocal(neighbours: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(B, k) mask: is row i among the neighbours of its own neighbour j ("i in N(j, k)")."""
    back = neighbours[neighbours[rows]]  # (B, k, k)
    return (back == rows[:, None, None]).any(-1)


def k_reciprocal_rerank(
    q_g: torch.Tensor,
    q_q: torch.Tensor,
    g_g: torch.Tensor,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> torch.Tensor:
    """Re-ranked (Q, G) distance from query-gallery (Q, G), query-query (Q, Q) and
    gallery-gallery (G, G) distances (see the module docstring)."""
    if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ValueError(
            f"re-ranking needs k1, k2 >= 1 and lambda in [0, 1]; got {k1}, {k2}, {lambda_value}"
        )
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
        raise ValueError(
            f"re-ranking: shapes q_g {tuple(q_g.shape)}, q_q {tuple(q_q.shape)}, "
            f"g_g {tuple(g_g.shape)} disagree"
        )
    dist = _scaled_full_distance(q_g, q_q, g_g)
    n = dist.shape[0]
    k_full = min(k1 + 1, n)
    k_half = min(round(k1 / 2) + 1, n)
    nearest = torch.empty(n, k_full, dtype=torch.int64)
    for s in range(0, n, _ROW_CHUNK):
        block = dist[s : s + _ROW_CHUNK]
        # Sort by (distance, index): the image itself comes first among exact ties.
        nearest[s : s + _ROW_CHUNK] = torch.sort(block, dim=1, stable=True).indices[:, :k_full]
    half = nearest[:, :k_half]

    v = torch.zeros(n, n)
    for s in range(0, n, _ROW_CHUNK):
        rows = torch.arange(s, min(s + _ROW_CHUNK, n))
        cand = nearest[rows]  # (B, k1+1)
        recip = _reciprocal(nearest, rows)  # (B, k1+1): R(i, k1) membership
        cand_half = half[cand]  # (B, k1+1, k/2+1): N(c, k1/2) of each candidate c
        recip_half = (half[cand_half] == cand[:, :, None, None]).any(-1)  # R(c, k1/2)
        in_r = ((cand_half[..., None] == cand[:, None, None, :]) & recip[:, None, None, :]).any(-1)
        overlap = (in_r & recip_half).sum(-1)
        accept = recip & (overlap.float() > 2.0 / 3.0 * recip_half.sum(-1).float())
        members = torch.zeros(len(rows), n, dtype=torch.bool)
        b_idx = torch.arange(len(rows))[:, None]
        members[b_idx.expand_as(cand)[recip], cand[recip]] = True
        take = accept[..., None] & recip_half
        members[b_idx[..., None].expand_as(cand_half)[take], cand_half[take]] = True
        weights = torch.where(members, torch.exp(-dist[rows]), 0.0)
        v[rows] = weights / weights.sum(1, keepdim=True)

    if k2 > 1:
        expanded = torch.empty_like(v)
        qe = nearest[:, : min(k2, k_full)] if k2 <= k_full else _topk_rows(dist, k2)
        for s in range(0, n, _ROW_CHUNK):
            expanded[s : s + _ROW_CHUNK] = v[qe[s : s + _ROW_CHUNK]].mean(1)
        v = expanded

    v_gallery = v[num_q:]  # (G, N)
    jaccard = torch.empty(num_q, num_g)
    for i in range(num_q):  # per query: only the columns where its V is non-zero matter
        cols = torch.nonzero(v[i]).squeeze(1)
        shared = torch.minimum(v_gallery[:, cols], v[i, cols][None, :]).sum(1)
        union = v[i].sum() + v_gallery.sum(1) - shared
        jaccard[i] = 1.0 - shared / union.clamp(min=torch.finfo(torch.float32).tiny)
    return (1.0 - lambda_value) * jaccard + lambda_value * dist[:num_q, num_q:]


def _topk_rows(dist: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, dist.shape[0])
    return torch.cat(
        [
            torch.sort(dist[s : s + _ROW_CHUNK], dim=1, stable=True).indices[:, :k]
            for s in range(0, dist.shape[0], _ROW_CHUNK)
        ]
    )
