"""Writing files so that a reader never sees a partial one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import IO

__all__ = ["atomic_write"]


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
