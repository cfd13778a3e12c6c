"""Indexing (person_search.footage.indexer) with a tiny model: what is stored, resuming, skipped
frames, and every error leaving nothing half-written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from footage_testutils import (
    interrupt_after_chunks,
    perturbed_weights,
    tiny_cfg,
    write_toy_video,
)

from person_search.footage import (
    FootageIndex,
    IndexFormatError,
    ModelMismatchError,
    index_footage,
)
from person_search.footage.frames import read_frame
from person_search.footage.index_format import CHUNK_DIR, INDEX_FILE, chunk_path


@pytest.fixture(scope="module")
def footage(tiny_cuhk_root, tmp_path_factory):
    """4 toy images in footage/cam_a/ and a 6-frame video cam_b.avi (5 fps) of 6 others."""
    images = sorted(os.listdir(os.path.join(tiny_cuhk_root, "toy_cuhk_sysu", "Image", "SSM")))
    source = os.path.join(tiny_cuhk_root, "toy_cuhk_sysu", "Image", "SSM")
    root = tmp_path_factory.mktemp("footage")
    (root / "cam_a").mkdir()
    for name in images[:4]:
        shutil.copy(os.path.join(source, name), root / "cam_a" / name)
    video = root / "cam_b.avi"
    write_toy_video(video, [os.path.join(source, n) for n in images[4:10]], fps=5.0)
    return {"folder": str(root / "cam_a"), "video": str(video), "root": root}


def _cfg(weights: str, chunk_size: int = 3):
    return tiny_cfg(weights, "FOOTAGE.CHUNK_SIZE", str(chunk_size), "FOOTAGE.BATCH_SIZE", "2")


def _index(out, footage, model, weights, **kwargs):
    return index_footage(
        _cfg(weights, kwargs.pop("chunk_size", 3)),
        [footage["folder"], footage["video"]],
        str(out),
        every_n_frames=kwargs.pop("every_n_frames", 2),
        model=model,
        show_progress=False,
        **kwargs,
    )


def _index_one_chunk(out, footage, model, weights) -> None:
    """An indexing run interrupted after its first chunk file."""
    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        interrupt_after_chunks(patch, model, 1)
        _index(out, footage, model, weights)


def test_index_stores_each_frames_detections(
    footage, trained_model, trained_weights, tmp_path, single_thread
):
    info = _index(tmp_path / "idx", footage, trained_model, trained_weights)
    index = FootageIndex.load(str(tmp_path / "idx"))
    assert info["report"]["frames"] == 7 and info["skipped"] == []  # 4 images + frames 0, 2, 4
    assert index.frames.camera_names == ["cam_a", "cam_b"]
    assert index.frames.frame.tolist() == [0, 1, 2, 3, 0, 2, 4]
    np.testing.assert_allclose(index.frames.time[4:], [0.0, 0.4, 0.8])
    assert info["retrieval"]["name"] == "TorchExact"
    assert not os.path.exists(tmp_path / "idx" / CHUNK_DIR)
    assert len(np.unique(index.frame_ids)) >= 5  # most frames have detections
    for frame_id in range(7):
        source = index.sources[index.frames.source[frame_id]]
        image, _ = read_frame(source, int(index.frames.frame[frame_id]), trained_model.image_format)
        (expected,) = trained_model.detect([trained_model.to_input(image)[0]], 0.0)
        rows = index.frame_ids == frame_id
        assert rows.sum() == len(expected.scores)
        # Video frames were batched by two (same size): equal up to float rounding.
        np.testing.assert_allclose(index.boxes[rows], expected.boxes, atol=1e-3)
        np.testing.assert_allclose(index.scores[rows], expected.scores, rtol=1e-3, atol=1e-30)
        np.testing.assert_allclose(
            index.embeddings[rows].astype(np.float32), expected.embeddings, atol=2e-3
        )
    # Each detection is its own best match.
    for d in (0, len(index) - 1):
        (hit,) = index.search(index.embedding(d), 1)
        assert hit.detection_id == d and hit.similarity == pytest.approx(1.0, abs=2e-3)


def test_complete_index_is_left_alone(
    footage, trained_model, trained_weights, tmp_path, monkeypatch, single_thread
):
    info = _index(tmp_path / "idx", footage, trained_model, trained_weights)
    interrupt_after_chunks(monkeypatch, trained_model, 0)  # any model call would now fail
    assert _index(tmp_path / "idx", footage, trained_model, trained_weights) == info


def test_resume_with_other_inputs_or_model_is_refused(
    footage, trained_model, trained_weights, tmp_path, single_thread
):
    out = tmp_path / "idx"
    _index_one_chunk(out, footage, trained_model, trained_weights)
    assert os.listdir(out / CHUNK_DIR) == ["chunk_000000.npz"]
    with pytest.raises(ValueError, match="holds an index of other inputs or settings"):
        _index(out, footage, trained_model, trained_weights, every_n_frames=3)

    other = perturbed_weights(trained_weights, tmp_path / "other_model.pth")
    with pytest.raises(ModelMismatchError, match="weights differ") as e:
        _index(out, footage, None, str(other))
    assert trained_weights in str(e.value) and str(other) in str(e.value)
    assert not os.path.exists(out / INDEX_FILE)


def test_a_truncated_chunk_stops_the_resume(
    footage, trained_model, trained_weights, tmp_path, single_thread
):
    out = tmp_path / "idx"
    _index_one_chunk(out, footage, trained_model, trained_weights)
    path = chunk_path(str(out), 0)
    data = Path(path).read_bytes()
    with open(path, "wb") as f:
        f.write(data[:100])
    with pytest.raises(IndexFormatError, match=f"chunk file {path} is truncated or corrupt"):
        _index(out, footage, trained_model, trained_weights)
    assert not os.path.exists(out / INDEX_FILE)
    assert not [n for n in os.listdir(out / CHUNK_DIR) if n.endswith(".tmp")]


def test_undecodable_frames_are_skipped_and_listed(
    footage, trained_model, trained_weights, tmp_path, single_thread
):
    folder = tmp_path / "cam_c"
    shutil.copytree(footage["folder"], folder)
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    data = Path(footage["video"]).read_bytes()
    video = tmp_path / "cut.avi"
    video.write_bytes(data[: int(len(data) * 0.6)])
    info = index_footage(
        _cfg(trained_weights),
        [str(folder), str(video)],
        str(tmp_path / "idx"),
        model=trained_model,
        show_progress=False,
    )
    skipped = info["skipped"]
    assert skipped[0]["frame"] == str(folder / "zz_broken.jpg")
    assert skipped[0]["reason"].startswith("cannot read image")
    video_skips = skipped[1:]
    assert video_skips and all(s["frame"].startswith(f"{video} frame ") for s in video_skips)
    assert all(s["reason"].startswith("cannot decode frame") for s in video_skips)
    assert info["report"]["frames_skipped"] == len(skipped)
    index = FootageIndex.load(str(tmp_path / "idx"))
    assert not np.isin([s["frame_id"] for s in skipped], index.frame_ids).any()


def test_bad_inputs_and_folders_write_nothing(footage, trained_model, trained_weights, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "idx"
    with pytest.raises(ValueError, match="holds no image"):
        index_footage(_cfg(trained_weights), [str(empty)], str(out), model=trained_model)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match=f"cannot open video {broken}"):
        index_footage(_cfg(trained_weights), [str(broken)], str(out), model=trained_model)
    assert not out.exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("x")
    with pytest.raises(FileExistsError, match="not empty and holds no manifest.json"):
        _index(busy, footage, trained_model, trained_weights)
    assert os.listdir(busy) == ["thesis.tex"]
    with pytest.raises(ValueError, match="FOOTAGE.CHUNK_SIZE must be >= 1"):
        index_footage(
            tiny_cfg(trained_weights, "FOOTAGE.CHUNK_SIZE", "0"),
            [footage["folder"]],
            str(out),
            model=trained_model,
        )
    with pytest.raises(KeyError, match="FOOTAGE.RETRIEVAL.NAME='Annoy'"):
        index_footage(
            tiny_cfg(trained_weights, "FOOTAGE.RETRIEVAL.NAME", "Annoy"),
            [footage["folder"]],
            str(out),
            model=trained_model,
        )
