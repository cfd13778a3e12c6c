"""Benchmark of the re-id evaluation at Market-1501 scale.

Random 2048-d features for 3,368 queries x 15,913 gallery images with Market-1501-like ids and
cameras (750 test identities seen by 2-6 of 6 cameras, ~2,800 distractors with id 0, one query
per identity and camera); features = identity centre + noise, so metrics are not degenerate.
Times the distance matrix, :func:`evaluate_reid` on it, the whole :class:`ReIDEvaluator`
(``process`` in batches of 64, then ``evaluate``), and, on a subset of queries, a naive per-query
reference (one numpy sort and filter per query, like the classic evaluation scripts),
extrapolated to all queries for the speed ratio. Both evaluations are checked to agree on the
subset. Usage::

    python benchmarks/bench_eval_reid.py [--naive-queries 300] [--rerank-subset 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from person_search.evaluation import ReIDEvaluator
from person_search.evaluation.reid_metrics import evaluate_reid, feature_distance
from person_search.evaluation.rerank import k_reciprocal_rerank

NUM_IDS = 750
NUM_CAMERAS = 6
NUM_DISTRACTORS = 2798
# Feature noise (std per dimension) around unit-variance identity centres: rank-1 ~67%,
# mAP ~25% (far from degenerate, so every rank position is exercised).
NOISE = 4.0


def market_like_split(num_query: int, num_gallery: int, rng: np.random.Generator):
    """Ids and cameras with Market-1501's test-split statistics; returns numpy arrays."""
    q_pids, q_cams = [], []
    seen_cams = []
    for pid in range(1, NUM_IDS + 1):
        cams = rng.choice(NUM_CAMERAS, size=int(rng.integers(2, NUM_CAMERAS + 1)), replace=False)
        seen_cams.append(cams + 1)
        q_pids += [pid] * len(cams)
        q_cams += list(cams + 1)
    keep = rng.choice(len(q_pids), size=num_query, replace=len(q_pids) < num_query)
    q_pids, q_cams = np.asarray(q_pids)[keep], np.asarray(q_cams)[keep]
    num_real = num_gallery - NUM_DISTRACTORS
    g_pids = rng.integers(1, NUM_IDS + 1, size=num_real)
    g_cams = np.array([rng.choice(seen_cams[p - 1]) for p in g_pids])
    g_pids = np.concatenate([g_pids, np.zeros(NUM_DISTRACTORS, dtype=np.int64)])
    g_cams = np.concatenate([g_cams, rng.integers(1, NUM_CAMERAS + 1, size=NUM_DISTRACTORS)])
    return q_pids, q_cams, g_pids, g_cams


def naive_evaluate(dist: np.ndarray, q_pids, g_pids, q_cams, g_cams, max_rank: int = 10):
    """Reference: one argsort + boolean filtering per query (the classic per-query loop)."""
    cmc, aps = np.zeros(max_rank), []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        keep &= g_pids[order] != -1
        match = (g_pids[order] == q_pids[i])[keep]
        if not match.any():
            continue
        hits = np.cumsum(match)
        first = int(np.argmax(match))
        cmc[first:] += 1
        aps.append(float((hits[match] / (np.flatnonzero(match) + 1)).mean()))
    return cmc / len(aps), float(np.mean(aps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-query", type=int, default=3368)
    parser.add_argument("--num-gallery", type=int, default=15913)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--naive-queries", type=int, default=300)
    parser.add_argument("--rerank-subset", type=int, default=0, help="0: skip re-ranking timing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    q_pids, q_cams, g_pids, g_cams = market_like_split(args.num_query, args.num_gallery, rng)
    gen = torch.Generator().manual_seed(args.seed)
    centres = torch.randn(NUM_IDS + 1, args.dim, generator=gen)
    q_feat = centres[q_pids] + NOISE * torch.randn(len(q_pids), args.dim, generator=gen)
    g_feat = centres[g_pids] + NOISE * torch.randn(len(g_pids), args.dim, generator=gen)
    g_feat[g_pids == 0] = torch.randn(int((g_pids == 0).sum()), args.dim, generator=gen)
    print(
        f"queries {len(q_pids)}, gallery {len(g_pids)}, dim {args.dim}, "
        f"torch threads {torch.get_num_threads()}"
    )

    t0 = time.perf_counter()
    dist = feature_distance(q_feat, g_feat, "cosine")
    t_dist = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate_reid(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    t_eval = time.perf_counter() - t0
    print(f"distance (cosine)       {t_dist:7.2f} s")
    print(f"evaluate_reid (all)     {t_eval:7.2f} s")
    print(
        f"  Rank-1 {100 * res['cmc'][0]:.2f}  mAP {100 * res['mAP']:.2f}  "
        f"mINP {100 * res['mINP']:.2f}  valid queries {res['num_valid_queries']}"
    )

    evaluator = ReIDEvaluator("bench", metric="cosine", distributed=False)
    splits = [("query", q_feat, q_pids, q_cams), ("gallery", g_feat, g_pids, g_cams)]
    t0 = time.perf_counter()
    for split, feats, pids, cams in splits:
        for s in range(0, len(pids), 64):
            inputs = [
                {"split": split, "person_id": int(p), "camera_id": int(c)}
                for p, c in zip(pids[s : s + 64], cams[s : s + 64])
            ]
            evaluator.process(inputs, [{"features": f} for f in feats[s : s + 64]])
    full = evaluator.evaluate()["reid"]
    t_evaluator = time.perf_counter() - t0
    if not np.isclose(full["mAP"], 100 * res["mAP"], atol=1e-3):
        raise RuntimeError("ReIDEvaluator and evaluate_reid disagree")
    print(f"ReIDEvaluator (all)     {t_evaluator:7.2f} s  (process + distance + evaluate)")

    n = min(args.naive_queries, len(q_pids))
    sub = dist[:n].numpy()
    t0 = time.perf_counter()
    cmc_ref, map_ref = naive_evaluate(sub, q_pids[:n], g_pids, q_cams[:n], g_cams)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    check = evaluate_reid(dist[:n], q_pids[:n], g_pids, q_cams[:n], g_cams, max_rank=10)
    t_vec_sub = time.perf_counter() - t0
    if not (np.allclose(check["cmc"], cmc_ref) and np.isclose(check["mAP"], map_ref)):
        raise RuntimeError("vectorised and naive evaluations disagree")
    naive_full = t_naive / n * len(q_pids)
    print(f"naive per-query ({n} q)  {t_naive:7.2f} s -> {naive_full:.2f} s for all (extrapolated)")
    print(f"vectorised ({n} q)       {t_vec_sub:7.2f} s")
    print(
        f"speed ratio, same {n} queries: {t_naive / t_vec_sub:.1f}x; "
        f"all queries (extrapolated naive): {naive_full / t_eval:.1f}x"
    )

    if args.rerank_subset:
        m = args.rerank_subset
        qs, gs = q_feat[: m // 5], g_feat[:m]
        t0 = time.perf_counter()
        k_reciprocal_rerank(
            feature_distance(qs, gs, "cosine"),
            feature_distance(qs, qs, "cosine"),
            feature_distance(gs, gs, "cosine"),
        )
        print(f"re-ranking {len(qs)} x {len(gs)}  {time.perf_counter() - t0:7.2f} s")


if __name__ == "__main__":
    main()
