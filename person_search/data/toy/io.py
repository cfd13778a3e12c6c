"""Deterministic, atomic file output for the toy dataset writers.

* :func:`atomic_output_dir`: build a dataset in a temporary sibling directory and move it into
  place only when complete, so an interrupted run never leaves a half-written dataset.
* :func:`save_mat`: ``scipy.io.savemat`` with a fixed header (scipy stamps the creation time
  into the 116-byte text header, which would make two runs differ byte-wise).
* :func:`save_jpeg`: JPEG with fixed quality and no metadata (byte-identical for equal pixels).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator

import numpy as np
import scipy.io
from PIL import Image

__all__ = ["JPEG_QUALITY", "atomic_output_dir", "save_jpeg", "save_mat"]

# JPEG quality of the toy images (PIL scale 1-95).
JPEG_QUALITY = 90
# Length of the MAT-file v5 descriptive text header, in bytes.
_MAT_TEXT_HEADER_BYTES = 116
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by person_search toy dataset generator"


@contextlib.contextmanager
def atomic_output_dir(out_dir: str, *, overwrite: bool = False) -> Iterator[str]:
    """Yield an empty temporary directory that replaces ``out_dir`` when the block succeeds.

    Raises:
        FileExistsError: ``out_dir`` exists, is not empty and ``overwrite`` is False (checked
            before anything is written).
        NotADirectoryError: ``out_dir`` exists and is a file.
    """
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise NotADirectoryError(f"output path exists and is not a directory: {out_dir}")
        if os.listdir(out_dir) and not overwrite:
            raise FileExistsError(
                f"output directory {out_dir} is not empty; pass --overwrite to replace it"
            )
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700
    old = None
    if os.path.exists(out_dir):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
        os.replace(out_dir, os.path.join(old, "data"))
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_mat(path: str, variables: dict) -> None:
    """Write ``variables`` as a MATLAB v5 file, byte-identical for identical content."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=True, oned_as="row")
    data = bytearray(buffer.getvalue())
    data[:_MAT_TEXT_HEADER_BYTES] = _MAT_HEADER.ljust(_MAT_TEXT_HEADER_BYTES, b" ")
    with open(path, "wb") as f:
        f.write(bytes(data))


def save_jpeg(path: str, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image as JPEG."""
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(
        path, format="JPEG", quality=JPEG_QUALITY
    )
