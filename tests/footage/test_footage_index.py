"""The index format (person_search.footage.index_format), merging chunks (.indexer.merge_chunks)
and the loaded index (.index.FootageIndex): layout, filters, records, and every broken file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from person_search.footage import FootageIndex, IndexFormatError, IndexSettings, ModelFingerprint
from person_search.footage.index_format import (
    CHUNK_DIR,
    INDEX_FILE,
    MANIFEST_FILE,
    ChunkData,
    chunk_path,
    manifest_sha256,
    read_chunk,
    read_json,
    write_chunk,
    write_json,
)
from person_search.footage.indexer import build_manifest, merge_chunks
from person_search.footage.sources import FootageSource

DIM = 4
SETTINGS = IndexSettings(
    score_thresh=0.5,
    batch_size=1,
    chunk_size=2,
    retrieval="auto",
    auto_faiss_min=1000,
    ivf_nlist=0,
    ivf_nprobe=4,
)
FINGERPRINT = ModelFingerprint("model.pth", "a" * 64, "b" * 64)
SOURCES = [
    FootageSource("images", "/data/shop", None, files=("cam1/a.jpg", "cam2/b.jpg")),
    FootageSource("video", "/data/door.mp4", "door", fps=10.0, num_frames=30, frame_step=10),
]
# Frame ids: 0 cam1/a.jpg, 1 cam2/b.jpg, 2 door frame 0 (t 0 s), 3 door frame 10 (1 s),
# 4 door frame 20 (2 s). Detections per frame: 2, 1, 0, 1, and frame 4 could not be decoded.
DETECTIONS_PER_FRAME = {0: 2, 1: 1, 2: 0, 3: 1}


def _direction(i: int) -> np.ndarray:
    """Unit vector i of a fixed set: its similarity to _direction(0) falls with i."""
    angle = 0.3 * i
    return np.array([np.cos(angle), np.sin(angle), 0.0, 0.0], dtype=np.float32)


def _chunk(start: int, stop: int, first_detection: int) -> ChunkData:
    per_frame, skipped, d = [], [], first_detection
    for f in range(start, stop):
        if f not in DETECTIONS_PER_FRAME:
            skipped.append((f, "cannot decode frame 20"))
            continue
        n = DETECTIONS_PER_FRAME[f]
        boxes = np.array([[10.0 * (d + i), 5, 10.0 * (d + i) + 8, 30] for i in range(n)])
        scores = np.full(n, 0.9)
        emb = np.stack([_direction(d + i) for i in range(n)]) if n else np.zeros((0, DIM))
        per_frame.append((f, boxes, scores, emb))
        d += n
    return ChunkData.from_lists(start, stop, per_frame, skipped, DIM)


def _write_chunks(root: str) -> str:
    """The manifest and the three chunk files of the index described above; its sha."""
    manifest = build_manifest(SOURCES, FINGERPRINT, SETTINGS, every_n_frames=10, embedding_dim=DIM)
    assert (manifest["num_frames"], manifest["num_chunks"]) == (5, 3)
    os.makedirs(os.path.join(root, CHUNK_DIR))
    write_json(os.path.join(root, MANIFEST_FILE), manifest)
    sha = manifest_sha256(manifest)
    for k, (start, stop, first) in enumerate([(0, 2, 0), (2, 4, 3), (4, 5, 4)]):
        write_chunk(chunk_path(root, k), _chunk(start, stop, first), sha)
    return sha


@pytest.fixture
def index_dir(tmp_path) -> str:
    root = str(tmp_path / "index")
    _write_chunks(root)
    merge_chunks(root, SETTINGS)
    return root


def test_merge_writes_the_documented_layout(index_dir):
    assert sorted(os.listdir(index_dir)) == [
        "boxes.npy",
        "embeddings.npy",
        "frame_ids.npy",
        "frames.npz",
        "index.json",
        "manifest.json",
        "scores.npy",
    ]  # fmt: skip  (the chunks are gone once merged)
    info = read_json(os.path.join(index_dir, INDEX_FILE), "index")
    assert info["num_detections"] == 4 and info["embedding_dim"] == DIM
    assert info["retrieval"] == {"name": "TorchExact", "params": {}}  # auto, < 1000
    assert info["skipped"] == [
        {"frame_id": 4, "frame": "/data/door.mp4 frame 20", "reason": "cannot decode frame 20"}
    ]
    assert info["report"]["frames_indexed"] == 4 and info["report"]["frames_skipped"] == 1
    assert info["files"]["embeddings.npy"] == os.path.getsize(
        os.path.join(index_dir, "embeddings.npy")
    )
    index = FootageIndex.load(index_dir)
    assert index.embeddings.dtype == np.float16 and index.embeddings.shape == (4, DIM)
    assert index.frame_ids.tolist() == [0, 0, 1, 3]
    assert index.boxes[:, 0].tolist() == [0.0, 10.0, 20.0, 30.0]
    np.testing.assert_allclose(index.embeddings[3], _direction(3), atol=1e-3)
    assert index.frames.camera_names == ["cam1", "cam2", "door"]


def test_search_ranks_filters_and_describes_detections(index_dir):
    index = FootageIndex.load(index_dir)
    hits = index.search(_direction(0), top_k=3)
    assert [h.detection_id for h in hits] == [0, 1, 2]
    np.testing.assert_allclose([h.similarity for h in hits], np.cos([0, 0.3, 0.6]), atol=1e-3)
    first = hits[0]
    assert (first.kind, first.path, first.frame, first.time) == (
        "image", "/data/shop/cam1/a.jpg", None, None,
    )  # fmt: skip
    assert first.camera == "cam1" and first.box == (0.0, 5.0, 8.0, 30.0) and first.rank == 1
    record = first.to_json()
    assert record["image"] == "/data/shop/cam1/a.jpg" and "video" not in record

    video = index.search(_direction(0), top_k=5, cameras=["door"])
    assert [h.detection_id for h in video] == [3]
    assert (video[0].kind, video[0].path, video[0].frame, video[0].time) == (
        "video", "/data/door.mp4", 10, 1.0,
    )  # fmt: skip
    assert video[0].to_json()["video"] == "/data/door.mp4"
    assert [h.detection_id for h in index.search(_direction(0), 5, cameras=["cam2", "door"])] == [
        2, 3,
    ]  # fmt: skip
    # A time range keeps video frames in it (images have no time).
    assert [h.detection_id for h in index.search(_direction(0), 5, time_range=(0.5, 1.5))] == [3]
    assert index.search(_direction(0), 5, time_range=(1.5, 9)) == []
    assert [h.detection_id for h in index.search(_direction(0), 2, exclude=[0])] == [1, 2]
    with pytest.raises(ValueError, match=r"cameras \['cam9'\] are not in the index"):
        index.search(_direction(0), 5, cameras=["cam9"])
    with pytest.raises(ValueError, match="start 3.0 is after its end 1.0"):
        index.search(_direction(0), 5, time_range=(3.0, 1.0))
    with pytest.raises(ValueError, match="query embedding of size 3, the index holds size 4"):
        index.search(np.ones(3), 5)
    with pytest.raises(IndexError, match="detection id 4 is out of range"):
        index.hit(4)
    np.testing.assert_allclose(index.embedding(1), _direction(1), atol=1e-3)


def test_faiss_backend_recorded_and_used(tmp_path):
    root = str(tmp_path / "index")
    _write_chunks(root)
    settings = IndexSettings(**{**SETTINGS.__dict__, "retrieval": "FaissExact"})
    info = merge_chunks(root, settings)
    assert info["retrieval"]["name"] == "FaissExact"
    hits = FootageIndex.load(root).search(_direction(0), top_k=3)
    assert [h.detection_id for h in hits] == [0, 1, 2]


def test_broken_chunks_are_errors_naming_the_file(tmp_path):
    root = str(tmp_path / "index")
    sha = _write_chunks(root)
    path = chunk_path(root, 1)
    good = read_chunk(path, manifest_sha=sha, frame_range=(2, 4), embedding_dim=DIM)
    assert good.frame_ids.tolist() == [3] and good.embeddings.dtype == np.float16
    with pytest.raises(IndexFormatError, match="belongs to another index"):
        read_chunk(path, manifest_sha="0" * 64, frame_range=(2, 4), embedding_dim=DIM)
    with pytest.raises(IndexFormatError, match=r"covers frames \[2, 4\), expected \[4, 6\]"):
        read_chunk(path, manifest_sha=sha, frame_range=(4, 6), embedding_dim=DIM)
    with pytest.raises(IndexFormatError, match="inconsistent arrays"):
        read_chunk(path, manifest_sha=sha, frame_range=(2, 4), embedding_dim=8)
    data = Path(path).read_bytes()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match=f"chunk file {path} is truncated or corrupt"):
        merge_chunks(root, SETTINGS)
    assert not os.path.exists(os.path.join(root, INDEX_FILE))  # nothing half-written
    os.remove(path)
    with pytest.raises(IndexFormatError, match=f"chunk file missing: {path}"):
        merge_chunks(root, SETTINGS)


def test_broken_or_unfinished_indexes_are_errors(index_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="index folder not found"):
        FootageIndex.load(str(tmp_path / "nowhere"))
    unfinished = str(tmp_path / "unfinished")
    _write_chunks(unfinished)
    with pytest.raises(IndexFormatError, match="unfinished index .* run tools/index_gallery.py"):
        FootageIndex.load(unfinished)

    embeddings = os.path.join(index_dir, "embeddings.npy")
    data = Path(embeddings).read_bytes()
    with open(embeddings, "wb") as f:
        f.write(data[:-7])
    with pytest.raises(IndexFormatError, match=f"{embeddings} is {len(data) - 7} bytes, the index"):
        FootageIndex.load(index_dir)
    with open(embeddings, "wb") as f:
        f.write(data)
    FootageIndex.load(index_dir)  # intact again

    manifest_file = os.path.join(index_dir, MANIFEST_FILE)
    manifest = read_json(manifest_file, "manifest")
    manifest["settings"]["score_thresh"] = 0.1
    write_json(manifest_file, manifest)
    with pytest.raises(IndexFormatError, match="manifest.json was changed after the index"):
        FootageIndex.load(index_dir)
    with open(manifest_file, "w") as f:
        f.write("{not json")
    with pytest.raises(IndexFormatError, match="manifest.json: not a readable index manifest"):
        FootageIndex.load(index_dir)
