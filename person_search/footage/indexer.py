"""Build a footage index: detect and embed every frame of the inputs, chunk by chunk.

:func:`index_footage` runs in every process of a Detectron2 ``launch`` (one per GPU, on one or
several machines sharing ``INDEX_DIR``): the frames are cut into chunks of
``FOOTAGE.CHUNK_SIZE``; the chunks still missing are dealt out to the processes in turn
(chunk ``missing[i]`` to rank ``i % world_size``); each chunk file is written atomically; when
all are written, the main process merges them into the index (:mod:`.index_format`).

A run on a folder holding an unfinished index of the same inputs, settings and model resumes
at the first missing chunk; a batch never spans two chunks, so a chunk's content does not depend
on the run that computed it and a resumed index equals an uninterrupted one. Frames that cannot
be decoded are skipped and listed in ``index.json`` (``skipped``) and in the log.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass

import numpy as np
from detectron2.config import CfgNode
from detectron2.utils import comm
from tqdm import tqdm

from person_search.utils.file_io import atomic_write

from .frames import iter_frames, prefetch
from .index_format import (
    CHUNK_DIR,
    CONFIG_FILE,
    DETECTION_FILES,
    FRAMES_FILE,
    INDEX_FILE,
    INDEX_FORMAT,
    INDEX_VERSION,
    MANIFEST_FILE,
    ChunkData,
    IndexFormatError,
    chunk_path,
    file_sizes,
    manifest_sha256,
    read_chunk,
    read_json,
    write_chunk,
    write_json,
)
from .model import FootageModel, ModelFingerprint
from .retrieval import RETRIEVAL_REGISTRY, resolve_retrieval_name
from .sources import FootageSource, FrameTable, discover_sources

__all__ = ["IndexSettings", "build_manifest", "index_footage", "merge_chunks"]

logger = logging.getLogger(__name__)

# Frames decoded and resized ahead of the model, per chunk.
PREFETCH = 8


@dataclass(frozen=True)
class IndexSettings:
    """The ``FOOTAGE`` config of an indexing run (see ``add_footage_config``)."""

    score_thresh: float
    batch_size: int
    chunk_size: int
    retrieval: str
    auto_faiss_min: int
    ivf_nlist: int
    ivf_nprobe: int

    @classmethod
    def from_config(cls, cfg: CfgNode) -> IndexSettings:
        f = cfg.FOOTAGE
        settings = cls(
            score_thresh=float(f.SCORE_THRESH),
            batch_size=int(f.BATCH_SIZE),
            chunk_size=int(f.CHUNK_SIZE),
            retrieval=str(f.RETRIEVAL.NAME),
            auto_faiss_min=int(f.RETRIEVAL.AUTO_FAISS_MIN),
            ivf_nlist=int(f.RETRIEVAL.IVF_NLIST),
            ivf_nprobe=int(f.RETRIEVAL.IVF_NPROBE),
        )
        if not 0.0 <= settings.score_thresh <= 1.0:
            raise ValueError(f"FOOTAGE.SCORE_THRESH must be in [0, 1], got {f.SCORE_THRESH}")
        for key in ("BATCH_SIZE", "CHUNK_SIZE"):
            if f[key] < 1:
                raise ValueError(f"FOOTAGE.{key} must be >= 1, got {f[key]}")
        if settings.retrieval != "auto":
            resolve_retrieval_name(settings.retrieval, 0, 0)  # unknown name: KeyError
        return settings


def build_manifest(
    sources: Sequence[FootageSource],
    fingerprint: ModelFingerprint,
    settings: IndexSettings,
    *,
    every_n_frames: int,
    embedding_dim: int,
) -> dict:
    """The ``manifest.json`` of an index (see :mod:`.index_format`)."""
    num_frames = len(FrameTable.from_sources(sources))
    return {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "model": fingerprint.to_dict(),
        "embedding_dim": embedding_dim,
        "settings": {
            "score_thresh": settings.score_thresh,
            "chunk_size": settings.chunk_size,
            "every_n_frames": every_n_frames,
        },
        "sources": [s.to_dict() for s in sources],
        "num_frames": num_frames,
        "num_chunks": -(-num_frames // settings.chunk_size),
    }


def _embedding_dim(cfg: CfgNode) -> int:
    return int(cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM)


def _prepare_folder(index_dir: str, manifest: dict, cfg: CfgNode) -> dict | None:
    """Start or check the index folder (main process). Returns the finished index's
    ``index.json`` when the same index is already complete."""
    manifest_file = os.path.join(index_dir, MANIFEST_FILE)
    if not os.path.exists(manifest_file):
        if os.path.isdir(index_dir) and os.listdir(index_dir):
            raise FileExistsError(
                f"{index_dir} is not empty and holds no {MANIFEST_FILE}: not an index folder; "
                "choose a new or empty --output"
            )
        os.makedirs(os.path.join(index_dir, CHUNK_DIR), exist_ok=True)
        write_json(manifest_file, manifest)
        cfg = cfg.clone()
        cfg.defrost()
        if os.path.isfile(cfg.MODEL.WEIGHTS):  # search may run from another folder
            cfg.MODEL.WEIGHTS = os.path.abspath(cfg.MODEL.WEIGHTS)
        cfg_text = cfg.dump()
        atomic_write(os.path.join(index_dir, CONFIG_FILE), lambda f: f.write(cfg_text), "w")
        return None
    existing = read_json(manifest_file, "index manifest")
    if existing.get("format") != INDEX_FORMAT:
        raise IndexFormatError(f"{manifest_file} is not a footage index manifest")
    if manifest_sha256(existing) != manifest_sha256(manifest):
        _explain_difference(index_dir, existing, manifest)
    info_file = os.path.join(index_dir, INDEX_FILE)
    if os.path.exists(info_file):
        return read_json(info_file, "index file")
    os.makedirs(os.path.join(index_dir, CHUNK_DIR), exist_ok=True)
    return None


def _explain_difference(index_dir: str, existing: dict, manifest: dict) -> None:
    if existing.get("model") != manifest["model"]:
        ModelFingerprint.from_dict(existing["model"]).check_same(
            ModelFingerprint.from_dict(manifest["model"]), f"the index in {index_dir}"
        )
    differs = sorted(k for k in manifest if existing.get(k) != manifest[k])
    raise ValueError(
        f"{index_dir} holds an index of other inputs or settings ({', '.join(differs)} differ): "
        "resume it with the same inputs, --every-n-frames, --camera and FOOTAGE settings, or "
        "choose another --output"
    )


def _missing_chunks(index_dir: str, manifest: dict, sha: str) -> list[int]:
    """Chunks without a file; existing files are checked (a broken one is an error)."""
    missing = []
    size, total = manifest["settings"]["chunk_size"], manifest["num_frames"]
    for k in range(manifest["num_chunks"]):
        path = chunk_path(index_dir, k)
        if not os.path.exists(path):
            missing.append(k)
            continue
        read_chunk(
            path,
            manifest_sha=sha,
            frame_range=(k * size, min(total, (k + 1) * size)),
            embedding_dim=manifest["embedding_dim"],
        )
    return missing


def _index_chunk(
    model: FootageModel,
    sources: Sequence[FootageSource],
    table: FrameTable,
    start: int,
    stop: int,
    settings: IndexSettings,
    progress: tqdm,
) -> ChunkData:
    per_frame: list = []
    skipped: list[tuple[int, str]] = []
    batch: list[tuple[int, dict]] = []

    def flush() -> None:
        detections = model.detect([inputs for _, inputs in batch], settings.score_thresh)
        for (frame_id, _), d in zip(batch, detections):
            per_frame.append((frame_id, d.boxes, d.scores, d.embeddings))
        progress.update(len(batch))
        batch.clear()

    frames = iter_frames(
        sources, table.source[start:stop], table.frame[start:stop], model.image_format
    )
    # Decoded and resized by a background thread, PREFETCH frames ahead of the model.
    mapped = ((None if i is None else model.to_input(i)[0], reason) for i, reason in frames)
    with closing(prefetch(mapped, PREFETCH)) as ahead:
        for frame_id, (inputs, reason) in zip(range(start, stop), ahead):
            if inputs is None:
                source = sources[table.source[frame_id]]
                skipped.append((frame_id, reason))
                logger.warning(f"skipped {source.describe(int(table.frame[frame_id]))}: {reason}")
                progress.update(1)
                continue
            shape = inputs["image"].shape
            if batch and (len(batch) == settings.batch_size or batch[0][1]["image"].shape != shape):
                flush()
            batch.append((frame_id, inputs))
    if batch:
        flush()
    dim = _embedding_dim(model.cfg)
    return ChunkData.from_lists(start, stop, per_frame, skipped, dim)


def index_footage(
    cfg: CfgNode,
    inputs: Sequence[str],
    index_dir: str,
    *,
    every_n_frames: int = 1,
    cameras: Mapping[str, str] | None = None,
    model: FootageModel | None = None,
    show_progress: bool = True,
) -> dict | None:
    """Index (or finish indexing) ``inputs`` into ``index_dir``. Call it in every process.

    Args:
        cfg: the model's config with the ``FOOTAGE`` keys.
        inputs, every_n_frames, cameras: see :func:`~.sources.discover_sources`.
        model: the model to use (default: ``FootageModel.load(cfg)``).
        show_progress: a tqdm progress bar (main process) over this process's frames.

    Returns:
        the content of ``index.json`` in the main process, ``None`` in the others.
    """
    settings = IndexSettings.from_config(cfg)
    sources = discover_sources(inputs, every_n_frames=every_n_frames, cameras=cameras)
    table = FrameTable.from_sources(sources)
    model = model or FootageModel.load(cfg)
    manifest = build_manifest(
        sources,
        model.fingerprint,
        settings,
        every_n_frames=every_n_frames,
        embedding_dim=_embedding_dim(model.cfg),
    )
    sha = manifest_sha256(manifest)
    index_dir = os.path.abspath(index_dir)
    done = _prepare_folder(index_dir, manifest, model.cfg) if comm.is_main_process() else None
    if comm.all_gather(done is not None)[0]:  # what the main process found, in every process
        logger.info(f"{index_dir}: the index is complete, nothing to do")
        return done
    missing = _missing_chunks(index_dir, manifest, sha)
    comm.synchronize()  # every process has listed the chunks before any is written
    mine = missing[comm.get_rank() :: comm.get_world_size()]
    size, total = settings.chunk_size, len(table)
    ranges = [(k, k * size, min(total, (k + 1) * size)) for k in mine]
    logger.info(
        f"{len(table)} frames from {len(sources)} sources in {manifest['num_chunks']} chunks, "
        f"{len(missing)} to compute ({len(mine)} in this process)"
    )
    start_time = time.perf_counter()
    with tqdm(
        total=sum(stop - start for _, start, stop in ranges),
        unit="frame",
        desc="indexing",
        disable=not (show_progress and comm.is_main_process()),
        dynamic_ncols=True,
    ) as progress:
        for k, start, stop in ranges:
            chunk = _index_chunk(model, sources, table, start, stop, settings, progress)
            write_chunk(chunk_path(index_dir, k), chunk, sha)
    seconds = time.perf_counter() - start_time
    comm.synchronize()
    if not comm.is_main_process():
        return None
    frames_done = sum(stop - start for _, start, stop in ranges)
    return merge_chunks(
        index_dir,
        settings,
        run={"frames_computed_by_main_process": frames_done, "seconds": round(seconds, 3)},
    )


def _chunk_files(index_dir: str, manifest: dict, sha: str):
    size, total = manifest["settings"]["chunk_size"], manifest["num_frames"]
    for k in range(manifest["num_chunks"]):
        path = chunk_path(index_dir, k)
        if not os.path.exists(path):
            raise IndexFormatError(f"chunk file missing: {path} (the indexing did not finish)")
        yield read_chunk(
            path,
            manifest_sha=sha,
            frame_range=(k * size, min(total, (k + 1) * size)),
            embedding_dim=manifest["embedding_dim"],
        )


def merge_chunks(index_dir: str, settings: IndexSettings, run: dict | None = None) -> dict:
    """Merge the chunk files of ``index_dir`` into the index, write ``index.json`` last, then
    remove the chunks. Returns the content of ``index.json``."""
    manifest = read_json(os.path.join(index_dir, MANIFEST_FILE), "index manifest")
    sha = manifest_sha256(manifest)
    sources = [FootageSource.from_dict(s) for s in manifest["sources"]]
    table = FrameTable.from_sources(sources)
    dim = manifest["embedding_dim"]
    num = sum(len(c.scores) for c in _chunk_files(index_dir, manifest, sha))
    arrays = {
        "embeddings": ((num, dim), np.float16),
        "boxes": ((num, 4), np.float32),
        "scores": ((num,), np.float32),
        "frame_ids": ((num,), np.int64),
    }
    tmp = {k: os.path.join(index_dir, DETECTION_FILES[k] + ".tmp") for k in arrays}
    out = {
        k: np.lib.format.open_memmap(tmp[k], mode="w+", dtype=dtype, shape=shape)
        for k, (shape, dtype) in arrays.items()
    }
    skipped, pos = [], 0
    for chunk in _chunk_files(index_dir, manifest, sha):
        n = len(chunk.scores)
        for k in arrays:
            out[k][pos : pos + n] = getattr(chunk, k)
        pos += n
        for frame_id, reason in zip(chunk.skipped_frames.tolist(), chunk.skipped_reasons):
            source = sources[table.source[frame_id]]
            skipped.append(
                {
                    "frame_id": frame_id,
                    "frame": source.describe(int(table.frame[frame_id])),
                    "reason": str(reason),
                }
            )
    for array in out.values():
        array.flush()
    out.clear()  # closes the memory maps
    for k in arrays:
        os.replace(tmp[k], os.path.join(index_dir, DETECTION_FILES[k]))
    frames_tmp = os.path.join(index_dir, FRAMES_FILE + ".tmp")
    with open(frames_tmp, "wb") as f:
        np.savez(
            f,
            source=table.source,
            frame=table.frame,
            camera=table.camera,
            time=table.time,
            camera_names=np.asarray(table.camera_names, dtype=np.str_),
        )
    os.replace(frames_tmp, os.path.join(index_dir, FRAMES_FILE))

    embeddings = np.load(os.path.join(index_dir, DETECTION_FILES["embeddings"]), mmap_mode="r")
    name = resolve_retrieval_name(settings.retrieval, num, settings.auto_faiss_min)
    options = {"nlist": settings.ivf_nlist, "nprobe": settings.ivf_nprobe}
    params = RETRIEVAL_REGISTRY.get(name).prepare(embeddings, index_dir, options)
    names = [FRAMES_FILE, *DETECTION_FILES.values()]
    if "file" in params:  # a back-end's own file (FaissIVF)
        names.append(params["file"])
    info = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "manifest_sha256": sha,
        "num_detections": num,
        "embedding_dim": dim,
        "retrieval": {"name": name, "params": params},
        "files": file_sizes(index_dir, names),
        "skipped": skipped,
        "report": {
            "frames": len(table),
            "frames_indexed": len(table) - len(skipped),
            "frames_skipped": len(skipped),
            "detections": num,
            "cameras": table.camera_names,
            **(run or {}),
        },
    }
    write_json(os.path.join(index_dir, INDEX_FILE), info)
    shutil.rmtree(os.path.join(index_dir, CHUNK_DIR), ignore_errors=True)
    if skipped:
        logger.warning(
            f"{len(skipped)} frames could not be decoded and were skipped (listed in "
            f"{os.path.join(index_dir, INDEX_FILE)}, 'skipped')"
        )
    logger.info(f"index written to {index_dir}: {num} detections in {len(table)} frames")
    return info
