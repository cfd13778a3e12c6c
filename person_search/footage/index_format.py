"""On-disk format of a footage index (``tools/index_gallery.py`` writes it, ``tools/search.py``
reads it). Every file is written atomically (temporary file, then rename).

Layout of ``INDEX_DIR``::

    manifest.json        what is indexed, how, with which model (written first)
    config.yaml          the model's full config (search rebuilds the model from it)
    chunks/chunk_000000.npz ...   one per CHUNK_SIZE frames, while indexing (removed once merged)
    frames.npz           per frame id: source, frame, camera, time (see FrameTable)
    embeddings.npy       (N, D) float16 detection embeddings, L2-normalised before the cast
    boxes.npy            (N, 4) float32 XYXY boxes in original frame pixels
    scores.npy           (N,) float32 detection scores (>= FOOTAGE.SCORE_THRESH)
    frame_ids.npy        (N,) int64 frame id of each detection
    <retrieval file>     written by retrieval back-ends that need one (FaissIVF: ivf.faiss)
    index.json           written last: the index is complete when it exists

Detections are in frame-id order. Embeddings are stored as float16 (half the size of float32;
a similarity computed from them differs from the float32 one by less than 1e-3): the
similarity of a query is its inner product with the stored unit vectors.

``manifest.json``: ``format``, ``version``, ``model`` (:class:`~.model.ModelFingerprint`),
``embedding_dim``, ``settings`` (score_thresh, chunk_size, every_n_frames), ``sources``
(:class:`~.sources.FootageSource` dicts), ``num_frames``, ``num_chunks``.

A chunk file (``np.savez``, no pickled objects): ``manifest_sha256`` (of the manifest it
belongs to), ``frame_range`` [start, stop), ``frame_ids``, ``boxes``, ``scores``,
``embeddings`` (as above, for its frames), ``skipped_frames`` and ``skipped_reasons``
(frames that could not be decoded).

``index.json``: ``format``, ``version``, ``manifest_sha256``, ``num_detections``,
``embedding_dim``, ``retrieval`` ({name, params}), ``files`` (name -> size in bytes, checked on
loading: a truncated file is an error), ``skipped`` ([{frame_id, frame, reason}]) and
``report`` (counts and timing of the run).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from person_search.utils.file_io import atomic_write

__all__ = [
    "CHUNK_DIR",
    "CONFIG_FILE",
    "DETECTION_FILES",
    "FRAMES_FILE",
    "INDEX_FILE",
    "INDEX_FORMAT",
    "INDEX_VERSION",
    "MANIFEST_FILE",
    "ChunkData",
    "IndexFormatError",
    "chunk_path",
    "file_sizes",
    "load_npy",
    "manifest_sha256",
    "read_chunk",
    "read_json",
    "write_chunk",
    "write_json",
    "write_npy",
]

INDEX_FORMAT = "person_search.footage_index"
INDEX_VERSION = 1
MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.yaml"
INDEX_FILE = "index.json"
CHUNK_DIR = "chunks"
FRAMES_FILE = "frames.npz"
# Merged detection arrays: field -> file.
DETECTION_FILES = {
    "embeddings": "embeddings.npy",
    "boxes": "boxes.npy",
    "scores": "scores.npy",
    "frame_ids": "frame_ids.npy",
}
_CHUNK_ARRAYS = (
    "manifest_sha256",
    "frame_range",
    "frame_ids",
    "boxes",
    "scores",
    "embeddings",
    "skipped_frames",
    "skipped_reasons",
)


class IndexFormatError(ValueError):
    """A file of an index is missing, truncated, or not what the index expects."""


def manifest_sha256(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def write_json(path: str, data: Mapping[str, Any]) -> None:
    atomic_write(path, lambda f: json.dump(data, f, indent=1, sort_keys=True), mode="w")


def read_json(path: str, what: str) -> dict:
    """A JSON object file; :class:`IndexFormatError` naming ``path`` when it is not one."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexFormatError(f"{path}: not a readable {what} ({e})") from e
    if not isinstance(data, dict):
        raise IndexFormatError(f"{path}: not a {what} (a JSON object expected)")
    return data


def write_npy(path: str, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False), mode="wb")


def load_npy(path: str, expected_size: int | None = None, mmap: bool = True) -> np.ndarray:
    """A ``.npy`` array (memory-mapped by default), checking the size recorded for it."""
    if not os.path.isfile(path):
        raise IndexFormatError(f"index file missing: {path}")
    size = os.path.getsize(path)
    if expected_size is not None and size != expected_size:
        raise IndexFormatError(
            f"{path} is {size} bytes, the index recorded {expected_size}: the file was "
            "truncated or replaced; rebuild the index with tools/index_gallery.py"
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise IndexFormatError(f"{path}: not a readable .npy array ({e})") from e


def file_sizes(root: str, names: list[str]) -> dict[str, int]:
    return {name: os.path.getsize(os.path.join(root, name)) for name in names}


def chunk_path(index_dir: str, chunk: int) -> str:
    return os.path.join(index_dir, CHUNK_DIR, f"chunk_{chunk:06d}.npz")


@dataclass
class ChunkData:
    """The detections of frames ``[start, stop)`` (see the module docstring for the fields)."""

    start: int
    stop: int
    frame_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray
    skipped_frames: np.ndarray
    skipped_reasons: np.ndarray

    @classmethod
    def from_lists(
        cls,
        start: int,
        stop: int,
        per_frame: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]],
        skipped: list[tuple[int, str]],
        embedding_dim: int,
    ) -> ChunkData:
        """From ``(frame_id, boxes, scores, embeddings (float32))`` per decoded frame and
        ``(frame_id, reason)`` per skipped one."""
        counts = [len(s) for _, _, s, _ in per_frame]
        ids = [np.full(n, f, dtype=np.int64) for n, (f, _, _, _) in zip(counts, per_frame)]

        def cat(parts, shape, dtype):
            parts = [np.asarray(p, dtype=dtype).reshape(-1, *shape) for p in parts]
            return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)

        return cls(
            start=start,
            stop=stop,
            frame_ids=cat(ids, (), np.int64),
            boxes=cat([b for _, b, _, _ in per_frame], (4,), np.float32),
            scores=cat([s for _, _, s, _ in per_frame], (), np.float32),
            embeddings=cat([e for _, _, _, e in per_frame], (embedding_dim,), np.float16),
            skipped_frames=np.asarray([f for f, _ in skipped], dtype=np.int64),
            skipped_reasons=np.asarray([r for _, r in skipped], dtype=np.str_),
        )


def write_chunk(path: str, chunk: ChunkData, manifest_sha: str) -> None:
    """Write a chunk file atomically."""
    arrays = {
        "manifest_sha256": np.asarray(manifest_sha),
        "frame_range": np.asarray([chunk.start, chunk.stop], dtype=np.int64),
        "frame_ids": chunk.frame_ids,
        "boxes": chunk.boxes,
        "scores": chunk.scores,
        "embeddings": chunk.embeddings,
        "skipped_frames": chunk.skipped_frames,
        "skipped_reasons": chunk.skipped_reasons.astype(np.str_).reshape(-1),
    }
    atomic_write(path, lambda f: np.savez(f, **arrays), mode="wb")


def read_chunk(
    path: str, *, manifest_sha: str, frame_range: tuple[int, int], embedding_dim: int
) -> ChunkData:
    """Read and check a chunk file.

    Raises:
        IndexFormatError: the file is truncated or corrupt, belongs to another manifest (an
            earlier index in the same folder), or covers other frames than ``frame_range``.
    """
    hint = "delete it and run tools/index_gallery.py again to recompute it"
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _CHUNK_ARRAYS if k not in npz.files]
            if missing:
                raise IndexFormatError(f"chunk file {path} lacks {missing}: {hint}")
            data = {k: npz[k] for k in _CHUNK_ARRAYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, IndexFormatError):
            raise
        raise IndexFormatError(
            f"chunk file {path} is truncated or corrupt ({type(e).__name__}: {e}): {hint}"
        ) from e
    if str(data["manifest_sha256"]) != manifest_sha:
        raise IndexFormatError(
            f"chunk file {path} belongs to another index (manifest differs): {hint}"
        )
    start, stop = (int(v) for v in data["frame_range"])
    if (start, stop) != tuple(frame_range):
        raise IndexFormatError(
            f"chunk file {path} covers frames [{start}, {stop}), expected {list(frame_range)}"
        )
    n = len(data["scores"])
    emb = data["embeddings"]
    if (
        data["frame_ids"].shape != (n,)
        or data["boxes"].shape != (n, 4)
        or emb.shape != (n, embedding_dim)
        or emb.dtype != np.float16
        or (n and (data["frame_ids"].min() < start or data["frame_ids"].max() >= stop))
    ):
        raise IndexFormatError(f"chunk file {path}: inconsistent arrays: {hint}")
    return ChunkData(
        start=start,
        stop=stop,
        frame_ids=data["frame_ids"],
        boxes=data["boxes"],
        scores=data["scores"],
        embeddings=emb,
        skipped_frames=data["skipped_frames"],
        skipped_reasons=data["skipped_reasons"],
    )
