"""Decoding the frames of a footage index: image files and video frames, in a given image format.

Images are read with Detectron2's ``read_image`` (PIL, EXIF orientation applied), as the
person-search mappers read dataset images. Video frames come from OpenCV's ``VideoCapture``
(BGR) and are converted through PIL the same way, so a frame and the same picture saved as an
image file give the same array. A frame that cannot be decoded is reported with its reason,
never dropped silently.

Video positioning: a reader seeks (``CAP_PROP_POS_FRAMES``) to the first frame it is asked for
and to any frame after a decoding failure, and otherwise moves forward frame by frame
(``grab``), so a run of frames is decoded the same way whatever was read before it.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import cv2
import numpy as np
from detectron2.data import detection_utils as utils
from PIL import Image

from .sources import FootageSource

__all__ = ["VideoReader", "convert_bgr", "frame_time", "iter_frames", "prefetch", "read_frame"]

T = TypeVar("T")

# Errors PIL / Detectron2 raise for a file that is not a readable image.
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def convert_bgr(frame: np.ndarray, image_format: str) -> np.ndarray:
    """An OpenCV (H, W, 3) uint8 BGR frame in ``image_format`` (Detectron2's ``INPUT.FORMAT``:
    "BGR", "RGB", "L", ...), converted as ``read_image`` converts a PIL image."""
    return utils.convert_PIL_to_numpy(Image.fromarray(frame[:, :, ::-1]), image_format)


class VideoReader:
    """Frames of one video by frame number, in increasing order (see the module docstring)."""

    def __init__(self, path: str, image_format: str):
        self.path = path
        self.image_format = image_format
        self._capture = cv2.VideoCapture(path)
        if not self._capture.isOpened():
            raise ValueError(f"cannot open video {path} with OpenCV's VideoCapture")
        self._next: int | None = None  # frame the next read() returns; None: seek first

    def read(self, frame: int) -> tuple[np.ndarray | None, str | None]:
        """``(image, None)``, or ``(None, reason)`` when the frame cannot be decoded."""
        if self._next is not None and frame < self._next:
            raise ValueError(f"{self.path}: frames must be read in increasing order")
        if self._next is None or (frame > self._next and not self._skip_to(frame)):
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, frame)
            self._next = frame
        ok, image = self._capture.read()
        if not ok or image is None:
            self._next = None
            return None, f"cannot decode frame {frame}"
        self._next = frame + 1
        return convert_bgr(image, self.image_format), None

    def _skip_to(self, frame: int) -> bool:
        while self._next < frame:
            if not self._capture.grab():
                return False
            self._next += 1
        return True

    def close(self) -> None:
        self._capture.release()


def read_frame(
    source: FootageSource, frame: int, image_format: str
) -> tuple[np.ndarray | None, str | None]:
    """One frame of a source, or ``(None, reason)``. Videos are opened for this frame only:
    use :func:`iter_frames` for many."""
    if source.kind == "images":
        return _read_image(source, frame, image_format)
    reader = VideoReader(source.path, image_format)
    try:
        return reader.read(frame)
    finally:
        reader.close()


def _read_image(
    source: FootageSource, frame: int, image_format: str
) -> tuple[np.ndarray | None, str | None]:
    path = source.describe(frame)
    try:
        return utils.read_image(path, format=image_format), None
    except FileNotFoundError:
        return None, "file not found"
    except _IMAGE_ERRORS as e:
        return None, f"cannot read image ({type(e).__name__}: {e})"


def iter_frames(
    sources: Sequence[FootageSource],
    source_index: np.ndarray,
    frame_number: np.ndarray,
    image_format: str,
) -> Iterator[tuple[np.ndarray | None, str | None]]:
    """Decode frames ``(source_index[i], frame_number[i])`` in order.

    Frames of one video must come in increasing frame order. Yields, per frame,
    ``(image (H, W, C) uint8 in image_format, None)`` or ``(None, reason)``.
    """
    readers: dict[int, VideoReader] = {}
    try:
        for s, f in zip(source_index.tolist(), frame_number.tolist()):
            source = sources[s]
            if source.kind == "images":
                yield _read_image(source, f, image_format)
                continue
            if s not in readers:
                readers[s] = VideoReader(source.path, image_format)
            yield readers[s].read(f)
    finally:
        for reader in readers.values():
            reader.close()


def frame_time(source: FootageSource, frame: int) -> float | None:
    """Seconds from the video's start (``frame / fps``), ``None`` for images or unknown fps."""
    if source.kind != "video" or source.fps <= 0:
        return None
    t = frame / source.fps
    return t if math.isfinite(t) else None


def prefetch(items: Iterable[T], size: int) -> Iterator[T]:
    """Yield ``items`` in order, computed ahead by a background thread (decoding and resizing
    frames overlaps the model's forward pass; OpenCV, PIL and numpy release the GIL).

    At most ``size`` items wait. An exception raised while computing an item is raised here at
    that item; closing this generator early stops the thread.
    """
    if size < 1:
        raise ValueError(f"prefetch size must be >= 1, got {size}")
    waiting: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                waiting.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as e:  # handed to the consumer, raised there
            put(("error", e))

    thread = threading.Thread(target=work, name="footage-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = waiting.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
