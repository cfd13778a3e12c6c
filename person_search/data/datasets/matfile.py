"""Reading the MATLAB annotation files of CUHK-SYSU and PRW, with errors that name file and field.

``scipy.io.loadmat`` returns MATLAB structs and cells as nested numpy arrays whose nesting depends
on how the file was written (struct array vs. cell of 1x1 structs, row vs. column) and on
``squeeze_me``. The helpers here accept any of these nestings, so the loaders work on the real
files, on the toy files and on hand-made test files alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

__all__ = [
    "AnnotationError",
    "field",
    "image_size",
    "load_mat",
    "records",
    "to_box",
    "to_float",
    "to_str",
    "to_strings",
]


class AnnotationError(ValueError):
    """A dataset annotation file is missing a variable / field or holds a malformed value."""


def load_mat(path: str, variable_names: Sequence[str], *, any_of: bool = False) -> dict:
    """Load ``variable_names`` from the MAT file ``path``.

    Args:
        any_of: if True, at least one of the names must be present (the others may be missing);
            otherwise all are required.

    Raises:
        FileNotFoundError: the file does not exist.
        AnnotationError: a required variable is missing, or the file cannot be parsed.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        data = scipy.io.loadmat(path, variable_names=list(variable_names))
    except Exception as e:  # scipy raises several types for corrupt files
        raise AnnotationError(f"cannot read MAT file {path}: {e}") from e
    present = [name for name in variable_names if name in data]
    if any_of and not present:
        raise AnnotationError(
            f"{path}: none of the variables {list(variable_names)} is present "
            f"(found: {sorted(k for k in data if not k.startswith('__'))})"
        )
    if not any_of and len(present) != len(variable_names):
        missing = [name for name in variable_names if name not in data]
        raise AnnotationError(f"{path}: missing variable(s) {missing}")
    return {name: data[name] for name in present}


def records(value, where: str) -> list[np.void]:
    """Flatten a MATLAB struct array, or a cell array of structs, into a list of records.

    Args:
        where: ``"file: variable"`` for error messages.
    """
    arr = np.asarray(value)
    if arr.dtype.names is not None:
        return list(arr.reshape(-1))
    if arr.dtype == object:
        out: list[np.void] = []
        for item in arr.reshape(-1):
            out.extend(records(item, where))
        return out
    raise AnnotationError(f"{where}: expected a struct array or a cell of structs, got {arr.dtype}")


def field(record: np.void, name: str, where: str):
    """``record[name]``, or :class:`AnnotationError` naming ``where`` and the missing field."""
    names = record.dtype.names or ()
    if name not in names:
        raise AnnotationError(f"{where}: record has no field {name!r} (fields: {list(names)})")
    return record[name]


def _unwrap(value, where: str):
    """Strip the 1-element array / cell layers loadmat wraps scalars and strings in."""
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise AnnotationError(
                f"{where}: expected one value, got an array of shape {value.shape}"
            )
        value = value.reshape(-1)[0]
    return value


def to_str(value, where: str) -> str:
    """A MATLAB char array (possibly wrapped in cells) as a Python string."""
    value = _unwrap(value, where)
    if not isinstance(value, str):
        raise AnnotationError(f"{where}: expected a string, got {type(value).__name__}")
    return str(value)


def to_float(value, where: str) -> float:
    """A MATLAB numeric scalar (possibly wrapped) as a float."""
    value = _unwrap(value, where)
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise AnnotationError(f"{where}: expected a number, got {value!r}") from e


def to_strings(value, where: str) -> list[str]:
    """A MATLAB cell array of strings (any shape) or a char matrix as a list of strings."""
    arr = np.asarray(value)
    if arr.dtype == object:
        return [to_str(item, where) for item in arr.reshape(-1)]
    if arr.dtype.kind == "U":
        return [str(s) for s in arr.reshape(-1)]
    raise AnnotationError(f"{where}: expected a cell array of strings, got {arr.dtype}")


def to_box(value, where: str) -> np.ndarray:
    """An ``x, y, w, h`` box (any 1x4 / 4x1 / wrapped layout) as a (4,) float64 array.

    Returns a (0,) array for MATLAB's empty matrix (CUHK-SYSU's "person absent" gallery entry).
    """
    arr = np.asarray(value)
    while arr.dtype == object and arr.size == 1:
        arr = np.asarray(arr.reshape(-1)[0])
    if arr.size == 0:
        return np.zeros((0,), dtype=np.float64)
    if arr.size != 4 or arr.dtype.kind not in "iuf":
        raise AnnotationError(f"{where}: expected a box of 4 numbers, got {arr!r}")
    return arr.astype(np.float64).reshape(4)


def image_size(path: str) -> tuple[int, int]:
    """(height, width) of an image, read from its header without decoding the pixels."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image header of {path}: {e}") from e
    return int(height), int(width)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) ``x, y, w, h`` -> (N, 4) ``x1, y1, x2, y2`` with x2 = x + w (no -1)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
