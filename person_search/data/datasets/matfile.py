"""Reading the MATLAB annotation files of CUHK-SYSU and PRW, with errors that name file and field.

``scipy.io.loadmat`` returns MATLAB structs and cells as nested numpy arrays whose nesting depends
on how the file was written (struct array vs. cell of 1x1 structs, row vs. column) and on
``squeeze_me``. The helpers here accept any of these nestings, so the loaders work on the real
files, on the toy files and on hand-made test files alike. Elements of a struct or cell array are
taken in MATLAB's linear (column-major) order.

:func:`read_record_batches` reads large struct arrays with the vectorised reader of
:mod:`.matv5`, and with ``scipy.io.loadmat`` when that reader does not handle the file.

Every file the readers here open is reported to :func:`track_reads` (the dataset cache checks
those files to know whether a loaded dataset is still current).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

from .matv5 import (
    LeafColumn,
    MatFormatError,
    MatValueError,
    RecordBatch,
    StructColumn,
    iter_record_batches,
)

__all__ = [
    "AnnotationError",
    "field",
    "image_size",
    "load_mat",
    "note_read",
    "read_record_batches",
    "records",
    "to_box",
    "to_float",
    "to_str",
    "to_strings",
    "track_reads",
]

logger = logging.getLogger(__name__)

# The list collecting the paths read inside track_reads() (None outside it).
_READS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("reads", default=None)


class AnnotationError(ValueError):
    """A dataset annotation file is missing a variable / field or holds a malformed value."""


@contextlib.contextmanager
def track_reads() -> Iterator[list[str]]:
    """Collect the paths of the files (and listed folders) read inside the block."""
    reads: list[str] = []
    token = _READS.set(reads)
    try:
        yield reads
    finally:
        _READS.reset(token)


def note_read(path: str) -> None:
    """Report that ``path`` was read (see :func:`track_reads`)."""
    reads = _READS.get()
    if reads is not None:
        reads.append(path)


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
    note_read(path)
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
        return list(arr.reshape(-1, order="F"))
    if arr.dtype == object:
        out: list[np.void] = []
        for item in arr.reshape(-1, order="F"):
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


# What scipy.io.loadmat puts in place of bytes that are not UTF-8.
_REPLACEMENT = "\ufffd"


def _checked_text(text: str, where: str) -> str:
    if _REPLACEMENT in text:
        raise AnnotationError(f"{where}: {text!r} is not valid UTF-8 text in the file")
    return text


def to_str(value, where: str) -> str:
    """A MATLAB char array (possibly wrapped in cells) as a Python string."""
    value = _unwrap(value, where)
    if not isinstance(value, str):
        raise AnnotationError(f"{where}: expected a string, got {type(value).__name__}")
    return _checked_text(str(value), where)


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
        return [_checked_text(str(s), where) for s in arr.reshape(-1)]
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
    note_read(path)
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


def read_record_batches(
    path: str, variable: str, wanted: dict[str, Sequence[str]]
) -> Iterator[RecordBatch]:
    """The records of ``variable`` (a struct array or a cell of struct arrays) in batches, with
    the leaf fields ``wanted[f]`` of the struct array held by each record field ``f`` decoded
    (see :mod:`.matv5`). Read with the vectorised reader; a file it does not handle is read
    with ``scipy.io.loadmat`` instead, with a warning, into the same batches.

    Raises:
        FileNotFoundError: the file does not exist.
        AnnotationError: a missing variable, a file that cannot be parsed, records that are not
            structs, or a record field that holds no struct array.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    note_read(path)
    batches = []
    try:
        batches = list(iter_record_batches(path, variable, wanted))
    except KeyError as e:
        raise AnnotationError(f"{path}: missing variable(s) {[variable]} ({e.args[0]})") from e
    except MatValueError as e:
        raise AnnotationError(f"{path}: {variable}: {e}") from e
    except (MatFormatError, OSError) as e:
        logger.warning(
            "%s: the vectorised MAT reader does not handle this file (%s); reading it with "
            "scipy.io.loadmat (slower)",
            path,
            e,
        )
        batches = [_loadmat_batch(path, variable, wanted)]
    yield from batches


def _loadmat_batch(path: str, variable: str, wanted: dict[str, Sequence[str]]) -> RecordBatch:
    """One :class:`RecordBatch` of all records, from ``scipy.io.loadmat``."""
    top = load_mat(path, [variable])[variable]
    recs = records(top, f"{path}: {variable}")
    fields = tuple(recs[0].dtype.names) if recs else tuple(np.asarray(top).dtype.names or ())
    columns = {}
    for name, leaf_fields in wanted.items():
        if name not in fields:
            continue
        structs = [
            records(field(rec, name, f"{path}: {variable}[{i}]"), f"{path}: {variable}.{name}")
            for i, rec in enumerate(recs)
        ]
        elements = [e for s in structs for e in s]
        struct_fields = tuple(elements[0].dtype.names) if elements else ()
        offsets = np.zeros(len(structs) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in structs], out=offsets[1:])
        leaves = {
            leaf: _leaf_column([e[leaf] for e in elements], f"{path}: {variable}.{name}.{leaf}")
            for leaf in leaf_fields
            if elements and all(leaf in e.dtype.names for e in elements)
        }
        columns[name] = StructColumn(struct_fields, offsets, leaves)
    return RecordBatch(0, len(recs), fields, columns)


def _leaf_column(values: list, where: str) -> LeafColumn:
    """A :class:`LeafColumn` from the arrays ``scipy.io.loadmat`` returned for one field."""
    m = len(values)
    classes = np.zeros(m, dtype=np.int64)
    shapes = np.zeros((m, 2), dtype=np.int64)
    counts = np.zeros(m, dtype=np.int64)
    numbers, text_ids, texts = [], np.full(m, -1, dtype=np.int64), []
    for i, value in enumerate(values):
        arr = np.asarray(value)
        if arr.dtype.kind == "U":  # char: loadmat gives one string per row
            classes[i] = 4
            rows = arr.reshape(-1, order="F").tolist()
            shapes[i] = (len(rows), max((len(r) for r in rows), default=0))
            text_ids[i] = len(texts)
            texts.append(_checked_text("".join(rows), where))
        elif arr.dtype.kind in "biuf" and arr.ndim <= 2:
            classes[i] = 6
            shapes[i] = arr.shape if arr.ndim == 2 else (1, arr.size)
            flat = arr.reshape(-1, order="F").astype(np.float64)
            counts[i] = flat.size
            numbers.append(flat)
        else:  # a struct, cell or N-d value: not a leaf
            classes[i] = 2 if arr.dtype.names is not None else 1
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    values_flat = np.concatenate(numbers) if numbers else np.zeros(0)
    return LeafColumn(classes, shapes, offsets, values_flat, text_ids, texts)
