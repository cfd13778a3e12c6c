"""Writing files so that a reader never sees a partial one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import IO

__all__ = ["atomic_write", "write_png"]


def atomic_write(path: str, write: Callable[[IO], object], mode: str) -> None:
    """Call ``write(file)`` on a temporary file beside ``path`` (opened with ``mode``, "w" or
    "wb"), flush it to disk, then rename it to ``path``: ``path`` is either absent/old or
    complete, never partial. Missing parent folders are created; the temporary file is removed
    when ``write`` raises."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_png(path: str, image_rgb) -> None:
    """Write an (H, W, 3) uint8 RGB array to ``path`` as PNG, atomically (:func:`atomic_write`)."""
    import cv2  # only the picture writers need OpenCV
    import numpy as np

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image_rgb[:, :, ::-1]))
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    atomic_write(path, lambda f: f.write(encoded.tobytes()), mode="wb")
