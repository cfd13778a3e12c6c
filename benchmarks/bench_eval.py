#!/usr/bin/env python
"""Person-search evaluation speed at the real protocols' sizes, on synthetic results (CPU).

    python benchmarks/bench_eval.py [--dets-per-image 10] [--dim 256] [--loop-queries 50]

CUHK-SYSU size: 6,978 gallery images, 2,900 queries, galleries of 100 and 4,000 images.
PRW size: 6,112 frames in 6 cameras, 2,057 queries, all frames (and cross-camera) as gallery.
Every image holds about ``--dets-per-image`` stored detections (scores uniform in [0.05, 1],
so about half pass the default 0.5 threshold), embeddings ``--dim``-d. For each variant it
prints the vectorised evaluation time (wall and process CPU time: on a shared machine the CPU
time is the steadier figure) and, measured in the same run, the time of the plain
per-query per-image loop specification (:mod:`person_search.evaluation.search_metrics_loop`) on
the first ``--loop-queries`` queries, with the speed ratio per query; it also checks that both
give the same numbers on those queries. Then detection metrics, CBGM, and save/load of the
results file.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import person_search  # noqa: F401  (compat layer first)

# isort: split
from person_search.data.search_protocol import QueryGalleries, SearchProtocol, SearchQuery
from person_search.evaluation.cbgm import CBGMParams
from person_search.evaluation.detection_metrics import GalleryGroundTruth, evaluate_detection
from person_search.evaluation.saved_results import load_search_results, save_search_results
from person_search.evaluation.search_metrics import GalleryDetections, evaluate_search
from person_search.evaluation.search_metrics_loop import evaluate_variant_loop

IMAGE_SIZE = (800.0, 600.0)  # synthetic frame width, height in pixels
MIN_SCORE = 0.05  # lowest stored detection score (a typical model test threshold)


def synthetic_results(rng, num_images, persons_per_image, dets_per_image, dim):
    """Ground truth (persons with ids) and detections around them, with identity embeddings."""
    n_gt = rng.poisson(persons_per_image, num_images).clip(1, None)
    gt_off = np.r_[0, np.cumsum(n_gt)]
    num_gt = int(gt_off[-1])
    xy = rng.uniform(0, 1, (num_gt, 2)) * (np.array(IMAGE_SIZE) - 100)
    wh = rng.uniform([20, 50], [100, 300], (num_gt, 2))
    gt_boxes = np.c_[xy, xy + wh]
    num_ids = max(num_gt // 8, 1)
    person_ids = rng.integers(0, num_ids, num_gt)
    person_ids[rng.random(num_gt) < 0.3] = -1  # unlabelled persons
    identity = rng.standard_normal((num_ids + 1, dim)).astype(np.float32)

    n_det = rng.poisson(dets_per_image, num_images)
    det_off = np.r_[0, np.cumsum(n_det)]
    num_det = int(det_off[-1])
    det_image = np.repeat(np.arange(num_images), n_det)
    # each detection sits on a random person of its image (with jitter) or on background
    pick = gt_off[det_image] + (rng.random(num_det) * n_gt[det_image]).astype(np.int64)
    boxes = gt_boxes[pick] + rng.normal(0, 8, (num_det, 4))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 5)
    scores = rng.uniform(MIN_SCORE, 1.0, num_det).astype(np.float32)
    emb = identity[person_ids[pick]] + 1.5 * rng.standard_normal((num_det, dim)).astype(np.float32)
    dets = GalleryDetections(det_off, boxes, scores, emb)
    gt = GalleryGroundTruth(gt_off, gt_boxes, person_ids)
    return gt, dets, identity


def cuhk_like(rng, dim, dets_per_image):
    num_images, num_queries = 6978, 2900
    gt, dets, identity = synthetic_results(rng, num_images, 5.3, dets_per_image, dim)
    gt_image = np.repeat(np.arange(num_images), np.diff(gt.offsets))
    labelled = np.flatnonzero(gt.person_ids >= 0)
    chosen = rng.choice(labelled, num_queries, replace=False)
    queries = [
        SearchQuery(f"{gt_image[g]:05d}.jpg", gt.boxes[g], int(gt.person_ids[g])) for g in chosen
    ]
    by_pid: dict[int, np.ndarray] = {}
    for pid in np.unique(gt.person_ids[chosen]):
        by_pid[int(pid)] = np.flatnonzero(gt.person_ids == pid)

    def variant(size: int) -> QueryGalleries:
        galleries, positives = [], []
        for q, g in zip(queries, chosen):
            occ = by_pid[q.person_id]
            occ = occ[gt_image[occ] != gt_image[g]][:5]  # its other images come first
            others = rng.choice(num_images, size, replace=False)
            others = others[~np.isin(others, np.r_[gt_image[occ], gt_image[g]])]
            galleries.append(np.r_[gt_image[occ], others][:size])
            positives.append((gt_image[occ], gt.boxes[occ]))
        return QueryGalleries(f"gallery_{size}", np.arange(num_queries), galleries, positives)

    variants = {f"gallery_{n}": (lambda n=n: variant(n)) for n in (100, 4000)}
    protocol = SearchProtocol(
        "cuhk_sysu_synthetic",
        [f"{i:05d}.jpg" for i in range(num_images)],
        np.full(num_images, -1),
        queries,
        variants,
        default_variant="gallery_100",
    )
    noise = rng.standard_normal((num_queries, dim)).astype(np.float32)
    query_emb = identity[gt.person_ids[chosen]] + 1.5 * noise
    return protocol, gt, dets, query_emb


def prw_like(rng, dim, dets_per_image):
    num_images, num_queries, num_cams = 6112, 2057, 6
    gt, dets, identity = synthetic_results(rng, num_images, 4.1, dets_per_image, dim)
    gt_image = np.repeat(np.arange(num_images), np.diff(gt.offsets))
    cams = rng.integers(1, num_cams + 1, num_images)
    labelled = np.flatnonzero(gt.person_ids >= 0)
    chosen = rng.choice(labelled, num_queries, replace=False)
    queries = [
        SearchQuery(f"{gt_image[g]:05d}.jpg", gt.boxes[g], int(gt.person_ids[g]), int(cams[i]))
        for g, i in zip(chosen, gt_image[chosen])
    ]
    positives = []
    for g in chosen:
        occ = np.flatnonzero(gt.person_ids == gt.person_ids[g])
        positives.append((gt_image[occ], gt.boxes[occ]))
    qidx = np.arange(num_queries)
    variants = {
        "all": lambda: QueryGalleries("all", qidx, None, positives),
        "cross_camera": lambda: QueryGalleries("cross_camera", qidx, None, positives, True),
    }
    protocol = SearchProtocol(
        "prw_synthetic", [f"{i:05d}.jpg" for i in range(num_images)], cams, queries, variants
    )
    noise = rng.standard_normal((num_queries, dim)).astype(np.float32)
    query_emb = identity[gt.person_ids[chosen]] + 1.5 * noise
    return protocol, gt, dets, query_emb


def query_contexts(protocol, dets, query_emb):
    """CBGM contexts as the model's query pass returns them: the query box (its embedding, score
    1), then the detections of the query image by decreasing score."""
    per_query = []
    for q, emb in zip(protocol.queries, query_emb):
        g = int(q.image_id.split(".")[0])
        rows = dets.offsets[g] + np.argsort(-dets.scores[dets.offsets[g] : dets.offsets[g + 1]])
        per_query.append(
            (
                np.r_[q.box[None], dets.boxes[rows]],
                np.r_[1.0, dets.scores[rows]],
                np.r_[emb[None], dets.embeddings[rows]],
            )
        )
    return GalleryDetections.from_per_image(per_query, dets.embeddings.shape[1])


def bench(name, protocol, gt, dets, query_emb, args):
    print(
        f"\n== {name} (load average {os.getloadavg()[0]:.1f}): {dets.num_images} images, "
        f"{len(dets.scores)} stored detections "
        f"({int((dets.scores >= args.det_thresh).sum())} >= {args.det_thresh}), "
        f"{len(protocol.queries)} queries, dim {dets.embeddings.shape[1]}"
    )
    for vname in protocol.variant_loaders:
        v = protocol.variant(vname)
        t0, c0 = time.perf_counter(), time.process_time()
        res = evaluate_search(protocol, dets, query_emb, det_thresh=args.det_thresh, variants=[v])
        fast, fast_cpu = time.perf_counter() - t0, time.process_time() - c0
        s = res[vname].summary()
        t0 = time.perf_counter()
        ref = evaluate_variant_loop(
            protocol, dets, query_emb, v, det_thresh=args.det_thresh, max_queries=args.loop_queries
        )
        loop = time.perf_counter() - t0
        n = args.loop_queries
        same = np.allclose(
            res[vname].average_precision[:n], ref.average_precision, atol=1e-6, equal_nan=True
        ) and np.array_equal(res[vname].topk_hits[:n], ref.topk_hits)
        ratio = (loop / n) / (fast / len(v.query_indices))
        print(
            f"{vname:>14}: vectorised {fast:6.2f} s (CPU {fast_cpu:.2f} s) for "
            f"{len(v.query_indices)} queries "
            f"(mAP {100 * s['mAP']:.2f}, top-1 {100 * s['top1']:.2f}) | loop {loop:6.2f} s for "
            f"{n} queries -> {ratio:,.0f}x faster per query; same numbers: {same}"
        )
    t0 = time.perf_counter()
    det = evaluate_detection(gt, dets, det_thresh=args.det_thresh)
    lab = evaluate_detection(gt, dets, det_thresh=args.det_thresh, labelled_only=True)
    print(
        f"{'detection':>14}: {time.perf_counter() - t0:6.2f} s (all + labelled; "
        f"AP {100 * det.ap:.2f}, recall {100 * det.recall:.2f}, labelled recall "
        f"{100 * lab.recall:.2f})"
    )
    default = protocol.variant(protocol.default_variant)
    contexts = query_contexts(protocol, dets, query_emb)
    t0 = time.perf_counter()
    evaluate_search(
        protocol,
        dets,
        query_emb,
        det_thresh=args.det_thresh,
        variants=[default],
        cbgm=CBGMParams(k1=10, k2=3),
        contexts=contexts,
    )
    print(f"{'CBGM ' + default.name:>14}: {time.perf_counter() - t0:6.2f} s (k1=10, k2=3)")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "search_results.pth")
        t0 = time.perf_counter()
        save_search_results(
            path,
            dataset_name=name,
            protocol=protocol,
            variants=[protocol.variant(n) for n in protocol.variant_loaders],
            ground_truth=gt,
            detections=dets,
            query_embeddings=query_emb,
            settings={"det_thresh": args.det_thresh, "cbgm_k1": None, "cbgm_k2": None},
        )
        t_save = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_search_results(path)
        t_load = time.perf_counter() - t0
        size = os.path.getsize(path) / 2**20
        print(f"{'results file':>14}: {size:.0f} MiB, save {t_save:.2f} s, load {t_load:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description="person-search evaluation benchmark")
    parser.add_argument("--dets-per-image", type=float, default=10.0)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--loop-queries", type=int, default=50)
    parser.add_argument("--det-thresh", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    bench("CUHK-SYSU size", *cuhk_like(rng, args.dim, args.dets_per_image), args)
    bench("PRW size", *prw_like(rng, args.dim, args.dets_per_image), args)


if __name__ == "__main__":
    main()
