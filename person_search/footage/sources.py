"""Footage inputs: image folders (searched recursively) and video files, as one ordered list of
frames.

Every input becomes one or more :class:`FootageSource`: a folder gives one ``"images"`` source
(its image files, sorted by relative path) plus one ``"video"`` source per video file under
it; a video file gives one ``"video"`` source; a single image file gives an ``"images"`` source
of one file. The frames of all sources, in input order, are numbered 0, 1, ... (*frame ids*);
an index stores detections against these ids.

Camera of a frame: the name given for its input by the ``cameras`` map when there is one;
otherwise the name of the folder holding the image, or the video's file name without its
extension.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FootageSource",
    "FrameTable",
    "discover_sources",
]

# File name endings (lower case) read as images (PIL, as Detectron2's read_image) and as videos
# (OpenCV's VideoCapture, FFmpeg back-end).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv")


@dataclass(frozen=True)
class FootageSource:
    """One image collection or one video.

    Attributes:
        kind: ``"images"`` or ``"video"``.
        path: absolute path of the folder (images) or of the video file.
        camera: camera name of every frame, or ``None``: each image takes the name of its
            folder (a video always has one).
        files: images: the files, relative to ``path``, sorted.
        fps: video: frames per second reported by the container (0 when unknown: no times).
        num_frames: video: number of frames reported by the container.
        frame_step: video: every ``frame_step``-th frame is indexed (0, step, 2 step, ...).
    """

    kind: str
    path: str
    camera: str | None
    files: tuple[str, ...] = ()
    fps: float = 0.0
    num_frames: int = 0
    frame_step: int = 1

    def frame_numbers(self) -> np.ndarray:
        """(F,) int64: the indexed frames (images: position in ``files``; video: frame
        number)."""
        if self.kind == "images":
            return np.arange(len(self.files), dtype=np.int64)
        return np.arange(0, self.num_frames, self.frame_step, dtype=np.int64)

    def frame_cameras(self) -> list[str]:
        """Camera name of each indexed frame."""
        if self.camera is not None:
            return [self.camera] * len(self.frame_numbers())
        return [os.path.basename(os.path.dirname(os.path.join(self.path, f))) for f in self.files]

    def describe(self, frame: int) -> str:
        """Human-readable name of one frame: the image file, or ``video.mp4 frame N``."""
        if self.kind == "images":
            return os.path.join(self.path, self.files[frame])
        return f"{self.path} frame {frame}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["files"] = list(self.files)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> FootageSource:
        return cls(
            kind=str(d["kind"]),
            path=str(d["path"]),
            camera=None if d["camera"] is None else str(d["camera"]),
            files=tuple(d["files"]),
            fps=float(d["fps"]),
            num_frames=int(d["num_frames"]),
            frame_step=int(d["frame_step"]),
        )


@dataclass
class FrameTable:
    """Every indexed frame, by frame id.

    Attributes:
        source: (F,) int64 index into the sources.
        frame: (F,) int64 frame number in its source (images: position in ``files``).
        camera: (F,) int64 index into ``camera_names``.
        time: (F,) float64 seconds from the start of the video (``frame / fps``); NaN for images
            and videos of unknown frame rate.
        camera_names: sorted camera names.
    """

    source: np.ndarray
    frame: np.ndarray
    camera: np.ndarray
    time: np.ndarray
    camera_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.source)

    @classmethod
    def from_sources(cls, sources: Sequence[FootageSource]) -> FrameTable:
        parts, cams, times = [], [], []
        for s, source in enumerate(sources):
            frames = source.frame_numbers()
            parts.append(np.stack([np.full(len(frames), s, dtype=np.int64), frames], axis=1))
            cams.extend(source.frame_cameras())
            fps = source.fps if source.kind == "video" and source.fps > 0 else math.nan
            times.append(frames / fps)
        table = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
        names = sorted(set(cams))
        lookup = {name: i for i, name in enumerate(names)}
        return cls(
            source=table[:, 0],
            frame=table[:, 1],
            camera=np.asarray([lookup[c] for c in cams], dtype=np.int64),
            time=np.concatenate(times) if times else np.zeros(0),
            camera_names=names,
        )


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS)


def _video_source(path: str, camera: str | None, frame_step: int) -> FootageSource:
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise ValueError(
                f"cannot open video {path} with OpenCV's VideoCapture (not a video, an "
                "unsupported codec, or a damaged file)"
            )
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        num_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        capture.release()
    if num_frames <= 0:
        raise ValueError(f"video {path}: OpenCV reports no frames (frame count {num_frames})")
    if not math.isfinite(fps) or fps < 0:
        fps = 0.0
    name = camera if camera is not None else os.path.splitext(os.path.basename(path))[0]
    return FootageSource("video", path, name, fps=fps, num_frames=num_frames, frame_step=frame_step)


def _folder_sources(path: str, camera: str | None, frame_step: int) -> list[FootageSource]:
    images, videos = [], []
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            if _is_image(name):
                images.append(os.path.relpath(full, path))
            elif _is_video(name):
                videos.append(full)
    if not images and not videos:
        raise ValueError(
            f"input folder {path} holds no image ({', '.join(IMAGE_EXTENSIONS)}) or video "
            f"({', '.join(VIDEO_EXTENSIONS)}) file, in it or below"
        )
    sources = [FootageSource("images", path, camera, files=tuple(images))] if images else []
    return sources + [_video_source(v, camera, frame_step) for v in videos]


def discover_sources(
    inputs: Sequence[str],
    *,
    every_n_frames: int = 1,
    cameras: Mapping[str, str] | None = None,
) -> list[FootageSource]:
    """The sources of ``inputs`` (folders, videos, image files), in input order.

    Args:
        every_n_frames: index every N-th frame of each video (>= 1); images are all indexed.
        cameras: input path (as given, or any path naming the same file) -> camera name of
            every frame it contributes.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: no input, an empty folder, a video OpenCV cannot open, a file that is
            neither image nor video, a frame reached through two inputs, ``every_n_frames`` < 1,
            a ``cameras`` entry that names no input.
    """
    if not inputs:
        raise ValueError("no input given: pass image folders and/or video files")
    if every_n_frames < 1:
        raise ValueError(f"every_n_frames must be >= 1, got {every_n_frames}")
    camera_of = {os.path.realpath(k): v for k, v in (cameras or {}).items()}
    unknown = sorted(set(camera_of) - {os.path.realpath(p) for p in inputs})
    if unknown:
        raise ValueError(f"camera names given for paths that are not inputs: {unknown}")
    sources: list[FootageSource] = []
    for given in inputs:
        path = os.path.abspath(given)
        camera = camera_of.get(os.path.realpath(given))
        if os.path.isdir(path):
            sources.extend(_folder_sources(path, camera, every_n_frames))
        elif not os.path.exists(path):
            raise FileNotFoundError(f"input not found: {given}")
        elif _is_video(path):
            sources.append(_video_source(path, camera, every_n_frames))
        elif _is_image(path):
            folder, name = os.path.split(path)
            sources.append(FootageSource("images", folder, camera, files=(name,)))
        else:
            raise ValueError(
                f"input {given} is neither a folder, an image ({', '.join(IMAGE_EXTENSIONS)}) "
                f"nor a video ({', '.join(VIDEO_EXTENSIONS)})"
            )
    _check_no_duplicates(sources)
    return sources


def _check_no_duplicates(sources: Sequence[FootageSource]) -> None:
    seen: dict[str, int] = {}
    for i, source in enumerate(sources):
        files = [source.path] if source.kind == "video" else source.files
        for f in files:
            real = os.path.realpath(os.path.join(source.path, f))
            if real in seen:
                raise ValueError(f"{real} is reached through two inputs: pass each file once")
            seen[real] = i
