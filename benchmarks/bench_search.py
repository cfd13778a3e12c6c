#!/usr/bin/env python
"""Footage search speed and size: query latency at 10k / 100k / 1M detections, index bytes per
detection on disk, indexing throughput of the toy model.

    python benchmarks/bench_search.py                       # all three parts
    python benchmarks/bench_search.py --sizes 10000 100000 --queries 50 --threads 1
    python benchmarks/bench_search.py --skip-indexing --ivf

* **Query latency.** N synthetic unit embeddings of ``--dim`` (256, OIM's size), stored as an
  index stores them (float16), clustered by identity (50 appearances each); ``--queries``
  queries, new appearances of random identities, searched one at a time (a user's query) for
  the ``--top-k`` by inner product, by each retrieval back-end of
  ``person_search.footage`` (TorchExact, FaissExact; FaissIVF with ``--ivf``) and by a numpy
  brute force (float32 ``embeddings @ q``, ``argpartition``), the reference measured in the same
  run. Printed: mean ms per query, ratio to numpy, the back-end's build time (faiss: adding the
  vectors; IVF: also training its k-means), and whether each exact back-end returned
  numpy's top-k for every query (same ids; an id may differ only between entries whose
  similarities tie within 1e-5). IVF prints its recall of the exact top-k instead. The exact
  back-ends are asserted to agree with numpy.
* **Index size.** An index of ``--size-detections`` synthetic detections written through the
  chunk writer and the merge (every file of the index folder), divided by the detection count.
* **Indexing throughput.** ``index_footage`` with the toy OIM config (as initialised, weights
  saved to a file) over ``--index-images`` toy CUHK-SYSU images, images/s, against the
  evaluation's way of running the same model on the same files (test mapper, one
  ``model.inference`` per image) in the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import faiss
import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

import person_search  # noqa: F401  (compat layer first: registers models and datasets)

# isort: split
from detectron2.data import detection_utils as utils
from detectron2.modeling import build_model
from tabulate import tabulate

from person_search.data.build import build_person_search_mapper
from person_search.data.toy import make_toy_dataset
from person_search.engine import load_config
from person_search.footage import (
    RETRIEVAL_REGISTRY,
    FootageModel,
    IndexSettings,
    ModelFingerprint,
    build_retrieval,
    index_footage,
    merge_chunks,
)
from person_search.footage.index_format import (
    CHUNK_DIR,
    MANIFEST_FILE,
    ChunkData,
    chunk_path,
    manifest_sha256,
    write_chunk,
    write_json,
)
from person_search.footage.indexer import build_manifest
from person_search.footage.sources import FootageSource

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOY_CONFIG = os.path.join(_ROOT, "configs", "oim", "oim_toy_cuhk_sysu.yaml")
TIE_TOLERANCE = 1e-5  # similarities closer than this may come in either order
_BLOCK = 100_000  # rows generated / converted at a time
APPEARANCES = 50  # synthetic detections per identity
NOISE = 0.047  # per-dimension noise of an appearance: cosine ~0.8 to its identity at 256-d


def synthetic_embeddings(num: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """(num, dim) float16 unit vectors, as an index stores them (normalised in float32, then
    cast): appearances of ``num // APPEARANCES`` identities, each a random direction plus noise
    (cosine ~0.8 to its identity), so that a query's top-k are mostly its identity's."""
    centres = rng.standard_normal((max(1, num // APPEARANCES), dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((num, dim), dtype=np.float16)
    for start in range(0, num, _BLOCK):
        n = min(_BLOCK, num - start)
        out[start : start + n] = _appearances(centres[rng.integers(0, len(centres), n)], rng)
    return out


def _appearances(centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = centres + NOISE * rng.standard_normal(centres.shape, dtype=np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def near_queries(embeddings: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    """(num, dim) float32 unit queries: another appearance of the identity of random entries
    (approximated by an entry plus the same noise)."""
    return _appearances(embeddings[rng.integers(0, len(embeddings), num)].astype(np.float32), rng)


def numpy_top_k(emb32: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: brute-force similarities, ``argpartition`` then sort. (k,), (k,)."""
    sims = emb32 @ query
    part = np.argpartition(-sims, k - 1)[:k]
    order = part[np.argsort(-sims[part], kind="stable")]
    return sims[order], order


def same_top_k(ids: np.ndarray, ref_ids: np.ndarray, ref_sims: np.ndarray, sims_of) -> bool:
    """Whether ``ids`` is the reference top-k: the same ids, except entries whose reference
    similarity (``sims_of(ids) -> sims``) ties with the k-th within TIE_TOLERANCE."""
    swapped = np.asarray(sorted(set(ids.tolist()) ^ set(ref_ids.tolist())), dtype=np.int64)
    if len(swapped) == 0:
        return True
    return bool(np.all(np.abs(sims_of(swapped) - ref_sims[-1]) <= TIE_TOLERANCE))


def _time_queries(search, queries: np.ndarray) -> tuple[float, list]:
    search(queries[:1])  # warm-up
    results, start = [], time.perf_counter()
    for q in queries:
        results.append(search(q))
    return (time.perf_counter() - start) / len(queries) * 1000.0, results


def bench_latency(num: int, args: argparse.Namespace, rng: np.random.Generator) -> list[dict]:
    """Mean ms per query of every back-end and of numpy at ``num`` detections."""
    embeddings = synthetic_embeddings(num, args.dim, rng)
    queries = near_queries(embeddings, args.queries, rng)
    emb32 = embeddings.astype(np.float32)
    ref_ms, ref = _time_queries(lambda q: numpy_top_k(emb32, q.reshape(-1), args.top_k), queries)
    rows = [{"detections": num, "method": "numpy (reference)", "ms": ref_ms, "check": "-"}]
    names = ["TorchExact", "FaissExact"] + (["FaissIVF"] if args.ivf else [])
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            start = time.perf_counter()
            options = {"nlist": 0, "nprobe": args.nprobe}
            params = RETRIEVAL_REGISTRY.get(name).prepare(embeddings, tmp, options)
            backend = build_retrieval(name, embeddings, tmp, params)
            build_s = time.perf_counter() - start
            ms, got = _time_queries(
                lambda q, b=backend: b.search(q.reshape(1, -1), args.top_k), queries
            )
            if name == "FaissIVF":
                recall = np.mean(
                    [len(set(g[1][0]) & set(r[1])) / args.top_k for g, r in zip(got, ref)]
                )
                check = f"recall@{args.top_k} {recall:.3f} (nprobe {params['nprobe']})"
            else:
                same = all(
                    same_top_k(g[1][0], r[1], r[0], lambda i, q=q: emb32[i] @ q)
                    for g, r, q in zip(got, ref, queries)
                )
                assert same, f"{name} at {num}: top-{args.top_k} differs from numpy's"
                check = "same top-k"
            rows.append(
                {"detections": num, "method": name, "ms": ms, "check": check, "build_s": build_s}
            )
            del backend
    for row in rows:
        row["x numpy"] = ref_ms / row["ms"]
    return rows


def bench_index_size(num: int, dim: int, rng: np.random.Generator) -> dict:
    """Bytes on disk per detection of a merged index of ``num`` synthetic detections (10 per
    frame, in chunks of 512 frames)."""
    per_frame, chunk_frames = 10, 512
    frames = -(-num // per_frame)
    source = FootageSource(
        "images", "/footage", "cam", files=tuple(f"{i}.jpg" for i in range(frames))
    )
    settings = IndexSettings(0.5, 1, chunk_frames, "TorchExact", 0, 0, 1)
    fingerprint = ModelFingerprint("bench.pth", "0" * 64, "0" * 64)
    manifest = build_manifest([source], fingerprint, settings, every_n_frames=1, embedding_dim=dim)
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, CHUNK_DIR))
        write_json(os.path.join(root, MANIFEST_FILE), manifest)
        sha = manifest_sha256(manifest)
        for k in range(manifest["num_chunks"]):
            start, stop = k * chunk_frames, min(frames, (k + 1) * chunk_frames)
            dets = []
            for f in range(start, stop):
                n = min(per_frame, num - f * per_frame)
                boxes = rng.uniform(0, 500, (n, 4))
                emb = synthetic_embeddings(n, dim, rng).astype(np.float32)
                dets.append((f, boxes, rng.uniform(0.5, 1, n), emb))
            write_chunk(chunk_path(root, k), ChunkData.from_lists(start, stop, dets, [], dim), sha)
        info = merge_chunks(root, settings)
        total = sum(os.path.getsize(os.path.join(root, name)) for name in os.listdir(root))
    return {
        "detections": info["num_detections"],
        "bytes": total,
        "bytes_per_detection": total / info["num_detections"],
        "embedding_bytes": 2 * dim,
    }


def bench_indexing(args: argparse.Namespace) -> dict:
    """Images/s of index_footage and of the evaluation-style loop on the same toy images."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "toy_cuhk_sysu")
        make_toy_dataset(
            "cuhk_sysu", data, 0, num_train_ids=2, num_test_ids=2, num_train_images=2,
            num_test_images=max(51, args.index_images), num_unlabelled_ids=2,
        )  # fmt: skip
        image_dir = os.path.join(data, "Image", "SSM")
        files = sorted(os.listdir(image_dir))[: args.index_images]
        folder = os.path.join(tmp, "footage")
        os.makedirs(folder)
        for name in files:
            os.link(os.path.join(image_dir, name), os.path.join(folder, name))
        opts = ["MODEL.OIM.NUM_PERSON_IDS", "2", "MODEL.DEVICE", args.device]
        cfg = load_config(TOY_CONFIG, opts)
        torch.manual_seed(0)
        weights = os.path.join(tmp, "model.pth")
        torch.save({"model": build_model(cfg).state_dict()}, weights)
        cfg = load_config(TOY_CONFIG, [*opts, "MODEL.WEIGHTS", weights])
        cfg.freeze()
        model = FootageModel.load(cfg)

        # Reference: the evaluation's way, one image per forward pass through the test mapper.
        mapper = build_person_search_mapper(cfg, False)
        with torch.no_grad():
            model.model.inference([mapper({"file_name": os.path.join(folder, files[0])})])
            start = time.perf_counter()
            for name in files:
                path = os.path.join(folder, name)
                image = utils.read_image(path, format="BGR")
                d = mapper({"file_name": path, "height": image.shape[0], "width": image.shape[1]})
                model.model.inference([d])
            ref_s = time.perf_counter() - start
        start = time.perf_counter()
        info = index_footage(
            cfg, [folder], os.path.join(tmp, "index"), model=model, show_progress=False
        )
        index_s = time.perf_counter() - start
    return {
        "images": len(files),
        "index_ips": len(files) / index_s,
        "reference_ips": len(files) / ref_s,
        "detections": info["num_detections"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=256, help="embedding size (OIM: 256)")
    parser.add_argument("--queries", type=int, default=20, help="timed queries per size")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--ivf", action="store_true", help="also time FaissIVF (trains k-means)")
    parser.add_argument("--nprobe", type=int, default=32, help="FaissIVF cells visited")
    parser.add_argument("--size-detections", type=int, default=100_000)
    parser.add_argument("--index-images", type=int, default=40, help="toy images indexed")
    parser.add_argument("--skip-indexing", action="store_true", help="no toy-model part")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="torch/faiss threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.sizes) <= args.top_k or args.queries < 1 or args.index_images < 1:
        parser.error("need sizes > --top-k, --queries >= 1, --index-images >= 1")
    limits = threadpool_limits(args.threads) if args.threads else None  # numpy's BLAS too
    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    print(
        f"threads: torch {torch.get_num_threads()}, faiss {faiss.omp_get_max_threads()}, "
        f"numpy BLAS {threadpool_info()[0]['num_threads'] if threadpool_info() else '?'}; "
        f"device {args.device}"
    )

    latency = [row for num in args.sizes for row in bench_latency(num, args, rng)]
    print(f"\nQuery latency, one query at a time, top-{args.top_k}, {args.dim}-d float16 index:")
    print(
        tabulate(
            [
                [r["detections"], r["method"], r["ms"], r["x numpy"], r["check"], r.get("build_s")]
                for r in latency
            ],
            headers=["detections", "method", "ms/query", "x numpy", "top-k", "build s"],
            floatfmt=".2f",
            tablefmt="pipe",
        )
    )
    size = bench_index_size(args.size_detections, args.dim, rng)
    print(
        f"\nIndex on disk: {size['bytes_per_detection']:.1f} bytes per detection "
        f"({size['detections']} detections, {size['bytes'] / 2**20:.1f} MiB; the embedding "
        f"alone {size['embedding_bytes']} bytes)"
    )
    results = {"latency": latency, "size": size}
    if not args.skip_indexing:
        speed = bench_indexing(args)
        print(
            f"\nIndexing the toy model ({speed['images']} toy images): "
            f"{speed['index_ips']:.1f} images/s; the evaluation's loop on the same images "
            f"{speed['reference_ips']:.1f} images/s (ratio "
            f"{speed['index_ips'] / speed['reference_ips']:.2f})"
        )
        results["indexing"] = speed
    if limits is not None:
        limits.restore_original_limits()
    return results


if __name__ == "__main__":
    main()
