#!/usr/bin/env python
"""Person-search evaluation speed at the real protocols' sizes, on synthetic results (CPU).

    python benchmarks/bench_eval.py [--dets-per-image 10] [--dim 256] [--loop-queries 50]
    python benchmarks/bench_eval.py --only protocol [--protocol-sizes 50 100] [--queries 2900]

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

Protocol files (``--only protocol``, also part of the default run): it writes CUHK-SYSU-sized
``TestG<N>.mat`` files (2,900 queries, galleries of N of 6,978 images, the query person's images
first, numbers stored compactly as MATLAB does) and prints, in the same run: the cold read of
each (parse + cache entry written) against a plain ``scipy.io.loadmat`` of the same file (target
<= 1.0x); the warm read of all of them from the cache (target < 1 s in all); and the end-to-end
evaluation of gallery 100 (warm read + metrics) against SeqNet-style reference code written here
(``loadmat``, per-query and per-entry Python loops, scikit-learn's average precision; target >=
20x), with a check that both give the same numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import scipy.io

import person_search  # noqa: F401  (compat layer first)

# isort: split
from person_search.data.datasets.array_cache import ArrayCache
from person_search.data.datasets.cuhk_protocol import (
    ProtocolFile,
    query_galleries,
    read_protocol_file,
)
from person_search.data.datasets.matfile import xywh_to_xyxy
from person_search.data.search_protocol import QueryGalleries, SearchProtocol, SearchQuery
from person_search.data.toy.protocol_writer import write_protocol_file
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


CUHK_GALLERY_SIZES = (50, 100, 500, 1000, 2000, 4000)


def cuhk_protocol_files(rng, gt, num_queries: int, sizes) -> tuple[list[str], dict]:
    """CUHK-SYSU-like protocol files over the synthetic ground truth: one query per identity
    (a labelled box of an identity seen in >= 2 images), its gallery = the other images holding
    it (first, with its box there) then random images without it. Returns the image names and
    size -> :class:`ProtocolFile`."""
    num_images = len(gt.offsets) - 1
    names = np.asarray([f"s{i + 1}.jpg" for i in range(num_images)])
    image_of = np.repeat(np.arange(num_images), np.diff(gt.offsets))
    holders: dict[int, dict[int, int]] = {}  # pid -> image -> first gt index
    for g in np.flatnonzero(gt.person_ids >= 0).tolist():
        holders.setdefault(int(gt.person_ids[g]), {}).setdefault(int(image_of[g]), g)
    pids = np.asarray(sorted(p for p, imgs in holders.items() if len(imgs) >= 2))
    pids = rng.choice(pids, num_queries, replace=False)
    xywh = np.c_[gt.boxes[:, :2], gt.boxes[:, 2:] - gt.boxes[:, :2]]
    query_gt = np.asarray([next(iter(holders[int(p)].values())) for p in pids])
    files = {}
    for size in sizes:
        offsets, entries, has, boxes = [0], [], [], []
        for pid, g in zip(pids.tolist(), query_gt.tolist()):
            others = {i: k for i, k in holders[pid].items() if i != image_of[g]}
            positives = list(others)[:size]
            negatives = rng.choice(num_images, size + len(holders[pid]) + 1, replace=False)
            negatives = negatives[~np.isin(negatives, [image_of[g], *holders[pid]])]
            entries += positives + negatives[: size - len(positives)].tolist()
            has += [True] * len(positives) + [False] * (size - len(positives))
            boxes += [xywh[others[i]] for i in positives]
            offsets.append(len(entries))
        files[size] = ProtocolFile(
            path="",
            variable=f"TestG{size}",
            query_names=names[image_of[query_gt]],
            query_boxes=xywh[query_gt],
            query_person_ids=pids.astype(np.int64),
            names=names,
            gallery_offsets=np.asarray(offsets, dtype=np.int64),
            gallery_names=np.asarray(entries, dtype=np.int32),
            gallery_has_box=np.asarray(has),
            gallery_boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        )
    return names.tolist(), files


def _iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def seqnet_style_search(path, variable, names, dets, query_emb, det_thresh):
    """Reference: the community's structure (as in SeqNet's ``eval_search_cuhk``, written anew
    here): a plain ``loadmat`` of the protocol file, then per query and per gallery entry Python
    loops, scikit-learn's average precision. Returns (mAP, top-1)."""
    from sklearn.metrics import average_precision_score

    protoc = scipy.io.loadmat(path)[variable].squeeze()
    name_to_det = {}
    for i, name in enumerate(names):
        s, e = dets.offsets[i], dets.offsets[i + 1]
        keep = dets.scores[s:e] >= det_thresh
        if keep.any():
            name_to_det[name] = (dets.boxes[s:e][keep], dets.embeddings[s:e][keep])
    aps, top1 = [], []
    for i in range(len(protoc)):
        feat_q = query_emb[i]
        y_true, y_score = [], []
        count_gt = count_tp = 0
        name2sim, name2gt = {}, {}
        for item in protoc["Gallery"][i].squeeze():
            name = str(item[0][0])
            gt = item[1][0].astype(np.float64)
            count_gt += gt.size > 0
            if name not in name_to_det or name in name2sim:
                continue
            name2sim[name] = name_to_det[name][1] @ feat_q
            name2gt[name] = gt
        for name, sim in name2sim.items():
            gt, det = name2gt[name], name_to_det[name][0]
            label = np.zeros(len(sim), dtype=np.int32)
            if gt.size > 0:
                w, h = gt[2], gt[3]
                box = [gt[0], gt[1], gt[0] + w, gt[1] + h]
                thresh = min(0.5, (w * h) / ((w + 10) * (h + 10)))
                order = np.argsort(sim)[::-1]
                sim, det = sim[order], det[order]
                for j, roi in enumerate(det):
                    if _iou(roi, box) >= thresh:
                        label[j] = 1
                        count_tp += 1
                        break
            y_true.extend(label.tolist())
            y_score.extend(sim.tolist())
        ap = 0.0
        if count_tp:
            ap = average_precision_score(y_true, y_score) * count_tp / count_gt
        aps.append(ap)
        top1.append(float(y_true[int(np.argmax(y_score))]) if y_score else 0.0)
    return float(np.mean(aps)), float(np.mean(top1))


def bench_protocol_files(args) -> None:
    """Cold and warm reads of CUHK-SYSU-sized protocol files, end-to-end evaluation."""
    rng = np.random.default_rng(args.seed)
    gt, dets, identity = synthetic_results(rng, 6978, 5.3, args.dets_per_image, args.dim)
    names, files = cuhk_protocol_files(rng, gt, args.queries, args.protocol_sizes)
    print(
        f"\n== CUHK-SYSU protocol files (load average {os.getloadavg()[0]:.1f}): "
        f"{args.queries} queries, {len(names)} gallery images"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cache = ArrayCache(os.path.join(tmp, "cache"))
        paths = {}
        for size, pf in files.items():
            paths[size] = os.path.join(tmp, f"TestG{size}.mat")
            t0 = time.perf_counter()
            write_protocol_file(pf, paths[size], compact=True, level=args.zlib_level)
            mib = os.path.getsize(paths[size]) / 2**20
            took = time.perf_counter() - t0
            print(f"{'written':>14}: TestG{size}.mat, {mib:.1f} MiB in {took:.1f} s")
        for size, path in paths.items():
            t0 = time.perf_counter()
            ours = read_protocol_file(path, f"TestG{size}", cache)  # parse + cache entry
            cold = time.perf_counter() - t0
            del ours
            t0 = time.perf_counter()
            plain = scipy.io.loadmat(path)
            reference = time.perf_counter() - t0
            del plain
            print(
                f"{'cold read':>14}: TestG{size}.mat {cold:7.2f} s (parse + cache entry) | "
                f"plain loadmat {reference:7.2f} s -> {cold / reference:.2f}x (target <= 1.0x)"
            )
        t0 = time.perf_counter()
        warm = {
            size: read_protocol_file(path, f"TestG{size}", cache) for size, path in paths.items()
        }
        total = time.perf_counter() - t0
        print(
            f"{'warm read':>14}: all {len(paths)} files from the cache in {total:.2f} s "
            "(target < 1 s)"
        )
        if 100 not in paths:
            return
        emb = dets.embeddings / np.linalg.norm(dets.embeddings, axis=1, keepdims=True)
        dets = GalleryDetections(dets.offsets, dets.boxes, dets.scores, emb.astype(np.float32))
        pf = warm[100]
        query_emb = identity[pf.query_person_ids] + 1.5 * rng.standard_normal(
            (len(pf.query_person_ids), args.dim)
        ).astype(np.float32)
        query_emb /= np.linalg.norm(query_emb, axis=1, keepdims=True)
        queries = [
            SearchQuery(str(n), xywh_to_xyxy(b)[0], int(p))
            for n, b, p in zip(pf.query_names, pf.query_boxes, pf.query_person_ids)
        ]
        index = {name: i for i, name in enumerate(names)}
        t0 = time.perf_counter()
        pf = read_protocol_file(paths[100], "TestG100", cache)
        variant = query_galleries("gallery_100", pf, np.arange(len(queries)), index)
        protocol = SearchProtocol("cuhk_sysu_synthetic", names, np.full(len(names), -1), queries)
        res = evaluate_search(
            protocol, dets, query_emb, det_thresh=args.det_thresh, variants=[variant]
        )
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref_map, ref_top1 = seqnet_style_search(
            paths[100], "TestG100", names, dets, query_emb, args.det_thresh
        )
        reference = time.perf_counter() - t0
        s = res["gallery_100"].summary()
        same = abs(s["mAP"] - ref_map) < 1e-6 and abs(s["top1"] - ref_top1) < 1e-9
        print(
            f"{'end to end':>14}: gallery_100 warm read + metrics {ours:.2f} s | SeqNet-style "
            f"{reference:.2f} s -> {reference / ours:.1f}x faster (target >= 20x); mAP "
            f"{100 * s['mAP']:.2f}, top-1 {100 * s['top1']:.2f}; same numbers: {same}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="person-search evaluation benchmark")
    parser.add_argument("--dets-per-image", type=float, default=10.0)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--loop-queries", type=int, default=50)
    parser.add_argument("--det-thresh", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("all", "search", "protocol"), default="all")
    parser.add_argument("--queries", type=int, default=2900, help="protocol-file queries")
    parser.add_argument("--protocol-sizes", type=int, nargs="+", default=list(CUHK_GALLERY_SIZES))
    parser.add_argument("--zlib-level", type=int, default=6, help="of the written files")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    if args.only in ("all", "search"):
        bench("CUHK-SYSU size", *cuhk_like(rng, args.dim, args.dets_per_image), args)
        bench("PRW size", *prw_like(rng, args.dim, args.dets_per_image), args)
    if args.only in ("all", "protocol"):
        bench_protocol_files(args)


if __name__ == "__main__":
    main()
