"""A finished footage index, loaded for search (format: :mod:`.index_format`).

The detection arrays are memory-mapped; the retrieval back-end the index records is built on
first use. :meth:`FootageIndex.search` ranks detections by similarity to a query embedding,
optionally only those of some cameras and of a time range.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .frames import read_frame
from .index_format import (
    CONFIG_FILE,
    DETECTION_FILES,
    FRAMES_FILE,
    INDEX_FILE,
    INDEX_FORMAT,
    INDEX_VERSION,
    MANIFEST_FILE,
    IndexFormatError,
    load_npy,
    manifest_sha256,
    read_json,
)
from .model import ModelFingerprint
from .retrieval import Retrieval, build_retrieval
from .sources import FootageSource, FrameTable

__all__ = ["FootageIndex", "SearchHit"]


@dataclass(frozen=True)
class SearchHit:
    """One ranked detection.

    Attributes:
        rank: 1-based.
        similarity: inner product of the query with the stored unit embedding (cosine).
        detection_id: row of the detection in the index (``--query-index-entry`` takes it).
        frame_id: the index's frame id.
        kind: ``"image"`` or ``"video"``.
        path: the image file, or the video file.
        frame: video frame number (``None`` for images).
        time: seconds from the video's start (``None`` for images or unknown frame rate).
        camera: camera name.
        box: XYXY in original frame pixels.
        score: detection score.
    """

    rank: int
    similarity: float
    detection_id: int
    frame_id: int
    kind: str
    path: str
    frame: int | None
    time: float | None
    camera: str
    box: tuple[float, float, float, float]
    score: float

    def to_json(self) -> dict:
        """The ``results.json`` record: rank, similarity, image or video, frame, time, box, ..."""
        return {
            "rank": self.rank,
            "similarity": round(self.similarity, 6),
            self.kind: self.path,
            "frame": self.frame,
            "time": None if self.time is None else round(self.time, 6),
            "camera": self.camera,
            "box": [round(v, 2) for v in self.box],
            "score": round(self.score, 6),
            "detection_id": self.detection_id,
        }


class FootageIndex:
    """A complete footage index folder, read-only."""

    def __init__(self, root: str):
        """Load ``root`` (see :meth:`load`)."""
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"index folder not found: {root}")
        self.manifest = read_json(os.path.join(self.root, MANIFEST_FILE), "index manifest")
        info_file = os.path.join(self.root, INDEX_FILE)
        if not os.path.isfile(info_file):
            raise IndexFormatError(
                f"{self.root} holds an unfinished index (no {INDEX_FILE}): run "
                "tools/index_gallery.py again with the same inputs to finish it"
            )
        self.info = read_json(info_file, "index file")
        if self.info.get("format") != INDEX_FORMAT or self.info.get("version") != INDEX_VERSION:
            raise IndexFormatError(
                f"{info_file}: not a footage index of format {INDEX_FORMAT!r} version "
                f"{INDEX_VERSION} (found {self.info.get('format')!r} {self.info.get('version')!r})"
            )
        if self.info.get("manifest_sha256") != manifest_sha256(self.manifest):
            raise IndexFormatError(
                f"{self.root}: {MANIFEST_FILE} was changed after the index was built"
            )
        sizes = self.info["files"]
        arrays = {
            k: load_npy(os.path.join(self.root, name), sizes.get(name))
            for k, name in DETECTION_FILES.items()
        }
        self.embeddings: np.ndarray = arrays["embeddings"]  # (N, D) float16
        self.boxes: np.ndarray = arrays["boxes"]  # (N, 4) float32
        self.scores: np.ndarray = arrays["scores"]  # (N,) float32
        self.frame_ids: np.ndarray = arrays["frame_ids"]  # (N,) int64
        num, dim = self.info["num_detections"], self.info["embedding_dim"]
        shapes = {k: a.shape for k, a in arrays.items()}
        if shapes != {
            "embeddings": (num, dim),
            "boxes": (num, 4),
            "scores": (num,),
            "frame_ids": (num,),
        }:
            raise IndexFormatError(f"{self.root}: arrays of unexpected shapes {shapes}")
        self.sources = [FootageSource.from_dict(s) for s in self.manifest["sources"]]
        self.frames = self._load_frames(sizes.get(FRAMES_FILE))
        self._retrieval: Retrieval | None = None

    @classmethod
    def load(cls, root: str) -> FootageIndex:
        """Open a complete index folder.

        Raises:
            FileNotFoundError: no such folder, or no manifest in it.
            IndexFormatError: an unfinished index, or a file that is truncated, changed or of
                another format.
        """
        return cls(root)

    def _load_frames(self, expected_size: int | None) -> FrameTable:
        path = os.path.join(self.root, FRAMES_FILE)
        if not os.path.isfile(path) or os.path.getsize(path) != expected_size:
            raise IndexFormatError(
                f"{path} is missing or not the size the index recorded ({expected_size} bytes): "
                "rebuild the index with tools/index_gallery.py"
            )
        with np.load(path, allow_pickle=False) as npz:
            table = FrameTable(
                source=npz["source"],
                frame=npz["frame"],
                camera=npz["camera"],
                time=npz["time"],
                camera_names=[str(c) for c in npz["camera_names"]],
            )
        if len(table) != self.manifest["num_frames"]:
            raise IndexFormatError(f"{path}: {len(table)} frames, the manifest says otherwise")
        return table

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return len(self.scores)

    @property
    def fingerprint(self) -> ModelFingerprint:
        """The model that built the index."""
        return ModelFingerprint.from_dict(self.manifest["model"])

    @property
    def config_file(self) -> str:
        """The model's config, as the index recorded it."""
        return os.path.join(self.root, CONFIG_FILE)

    @property
    def retrieval(self) -> Retrieval:
        """The recorded retrieval back-end (built on first use)."""
        if self._retrieval is None:
            spec = self.info["retrieval"]
            self._retrieval = build_retrieval(
                spec["name"], self.embeddings, self.root, spec["params"]
            )
        return self._retrieval

    # ------------------------------------------------------------------ search
    def allowed(
        self,
        cameras: Sequence[str] | None = None,
        time_range: tuple[float, float] | None = None,
        exclude: Sequence[int] = (),
    ) -> np.ndarray | None:
        """(N,) bool: detections of these cameras, in frames whose time lies in ``time_range``
        (seconds, inclusive; frames without a time, i.e. images, are left out), not in
        ``exclude``. ``None`` when nothing is filtered."""
        if not cameras and time_range is None and not exclude:
            return None
        keep_frame = np.ones(len(self.frames), dtype=bool)
        if cameras:
            names = self.frames.camera_names
            unknown = sorted(set(cameras) - set(names))
            if unknown:
                raise ValueError(f"cameras {unknown} are not in the index (it has {names})")
            ids = [names.index(c) for c in cameras]
            keep_frame &= np.isin(self.frames.camera, ids)
        if time_range is not None:
            start, end = time_range
            if not start <= end:
                raise ValueError(f"time range start {start} is after its end {end}")
            with np.errstate(invalid="ignore"):
                keep_frame &= (self.frames.time >= start) & (self.frames.time <= end)
        keep = keep_frame[self.frame_ids]
        keep[np.asarray(list(exclude), dtype=np.int64)] = False
        return keep

    def search(
        self,
        query: np.ndarray,
        top_k: int,
        *,
        cameras: Sequence[str] | None = None,
        time_range: tuple[float, float] | None = None,
        exclude: Sequence[int] = (),
    ) -> list[SearchHit]:
        """The ``top_k`` detections most similar to ``query`` ((D,) float32, L2-normalised),
        filtered by :meth:`allowed`."""
        query = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.embeddings.shape[1]:
            raise ValueError(
                f"query embedding of size {query.shape[1]}, the index holds size "
                f"{self.embeddings.shape[1]}"
            )
        allowed = self.allowed(cameras, time_range, exclude)
        sims, ids = self.retrieval.search(query, top_k, allowed)
        return [self.hit(int(i), r + 1, float(s)) for r, (s, i) in enumerate(zip(sims[0], ids[0]))]

    def hit(self, detection_id: int, rank: int = 0, similarity: float = math.nan) -> SearchHit:
        """The record of one detection."""
        if not 0 <= detection_id < len(self):
            raise IndexError(
                f"detection id {detection_id} is out of range: the index has {len(self)} detections"
            )
        frame_id = int(self.frame_ids[detection_id])
        source = self.sources[int(self.frames.source[frame_id])]
        frame = int(self.frames.frame[frame_id])
        time = float(self.frames.time[frame_id])
        is_image = source.kind == "images"
        return SearchHit(
            rank=rank,
            similarity=similarity,
            detection_id=detection_id,
            frame_id=frame_id,
            kind="image" if is_image else "video",
            path=source.describe(frame) if is_image else source.path,
            frame=None if is_image else frame,
            time=None if math.isnan(time) else time,
            camera=self.frames.camera_names[int(self.frames.camera[frame_id])],
            box=tuple(float(v) for v in self.boxes[detection_id]),
            score=float(self.scores[detection_id]),
        )

    def embedding(self, detection_id: int) -> np.ndarray:
        """(D,) float32 stored embedding of one detection."""
        self.hit(detection_id)  # range check
        return np.asarray(self.embeddings[detection_id], dtype=np.float32)

    def frame_image(self, frame_id: int, image_format: str = "RGB") -> np.ndarray:
        """Decode one indexed frame (for drawing)."""
        source = self.sources[int(self.frames.source[frame_id])]
        frame = int(self.frames.frame[frame_id])
        image, reason = read_frame(source, frame, image_format)
        if image is None:
            raise ValueError(f"cannot read {source.describe(frame)} any more: {reason}")
        return image
