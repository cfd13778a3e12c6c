"""A vectorised reader of the struct arrays in MATLAB v5 / v7 MAT files (CUHK-SYSU's protocols).

``scipy.io.loadmat`` builds one numpy array per struct field value (about 10 us each): a
``TestG4000.mat`` (2,900 queries x 4,000 gallery entries x 3 fields) takes minutes. This module
reads the same bytes (MathWorks, "MAT-File Format", v5 layout; v7 = the same elements
zlib-compressed), streams them in blocks, finds the elements of many struct arrays at once and
decodes only the fields asked for, with numpy (:mod:`.matv5_elements`).

Scope, chosen for the person-search annotation files: a variable that is a struct array or a
cell array of struct arrays ("records"); each record field asked for holds a struct array whose
fields asked for are 2-D char or real numeric arrays ("leaves"). Numeric values may be stored in
any MAT numeric type (MATLAB writes the smallest that holds them), characters as UTF-8, UTF-16,
UTF-32, uint8 or uint16, tags in the normal or the small format, either byte order. Anything else
(v4 or v7.3 files, complex, sparse or object arrays, N-d leaves, a leaf that is a cell ...) raises
:class:`MatFormatError`, as do truncated or inconsistent bytes: the caller then reads the file
with ``scipy.io.loadmat``, which either reads it or names the problem.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .matv5_elements import (
    CLASS_NAMES,
    MI_COMPRESSED,
    MI_MATRIX,
    MX_CELL,
    MX_STRUCT,
    ElementReader,
    Header,
    LeafColumn,
    MatFormatError,
    MatValueError,
    decode_leaves,
    pad8,
    struct_children,
)

__all__ = [
    "LeafColumn",
    "MatFormatError",
    "MatValueError",
    "RecordBatch",
    "StructColumn",
    "iter_record_batches",
    "list_variables",
]

_HEADER_BYTES = 128  # text (116), subsystem offset (8), version (2), endian indicator (2)
# Bytes of decompressed data decoded together (bounds the memory of the numpy temporaries).
_BATCH_BYTES = 64 << 20
_READ_BLOCK = 1 << 20
# Bytes read to parse the header of a variable (names, dimensions and field names).
_HEAD_BYTES = 1 << 16


@dataclass
class StructColumn:
    """The struct arrays held by one field of a batch of records.

    Attributes:
        fields: the field names of these struct arrays.
        offsets: (R + 1,) int64: record r holds elements ``offsets[r]:offsets[r + 1]``.
        leaves: field name -> :class:`LeafColumn` over all elements, for the fields asked for
            that exist.
    """

    fields: tuple[str, ...]
    offsets: np.ndarray
    leaves: dict[str, LeafColumn]


@dataclass
class RecordBatch:
    """Consecutive records of a variable: ``start`` .. ``start + count - 1``."""

    start: int
    count: int
    fields: tuple[str, ...]  # the record fields
    columns: dict[str, StructColumn]  # record field asked for -> its struct arrays


def _file_header(f, path: str) -> str:
    """Check the 128-byte header; returns the byte order ("<" or ">")."""
    head = f.read(_HEADER_BYTES)
    if len(head) < _HEADER_BYTES:
        raise MatFormatError(f"{path}: shorter than a MAT-file header")
    if head.startswith(b"MATLAB 7.3"):
        raise MatFormatError(f"{path}: a v7.3 (HDF5) MAT file")
    indicator = head[126:128]
    if indicator == b"IM":
        endian = "<"
    elif indicator == b"MI":
        endian = ">"
    else:
        raise MatFormatError(f"{path}: not a v5/v7 MAT file (endian indicator {indicator!r})")
    if struct.unpack(endian + "H", head[124:126])[0] != 0x0100:
        raise MatFormatError(f"{path}: unknown MAT-file version")
    return endian


def _variable_elements(path: str) -> Iterator[tuple[str, int, int, bool, str]]:
    """(name, data offset, byte count, compressed, byte order) of each variable of the file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        endian = _file_header(f, path)
        pos = _HEADER_BYTES
        while pos + 8 <= size:
            f.seek(pos)
            typ, nbytes = struct.unpack(endian + "II", f.read(8))
            if typ == MI_COMPRESSED:
                head = zlib.decompressobj().decompress(f.read(min(nbytes, 1 << 16)), 1 << 12)
                compressed = True
                next_pos = pos + 8 + nbytes
            elif typ == MI_MATRIX:
                head = struct.pack(endian + "II", typ, nbytes) + f.read(min(nbytes, 1 << 12))
                compressed = False
                next_pos = pos + 8 + pad8(nbytes)
            else:
                raise MatFormatError(f"{path}: unexpected element type {typ} at offset {pos}")
            if next_pos > size:
                raise MatFormatError(f"{path}: truncated (element at {pos} ends past the file)")
            name = _variable_name(head, endian, path)
            if compressed:  # the stream is the decompressed element, tag included
                yield name, pos + 8, nbytes, True, endian
            else:
                yield name, pos, 8 + nbytes, False, endian
            pos = next_pos


def _variable_name(head: bytes, endian: str, path: str) -> str:
    reader = ElementReader(head, endian)
    try:
        pos = reader.element_end(8)  # array flags
        pos = reader.element_end(pos)  # dimensions
        typ, count, data = reader.tag(pos)
    except MatFormatError as e:
        raise MatFormatError(f"{path}: unreadable variable header ({e})") from e
    return head[data : data + count].decode("ascii", "replace")


def list_variables(path: str) -> list[str]:
    """Names of the variables stored in a v5 / v7 MAT file."""
    return [name for name, *_ in _variable_elements(path)]


class _Stream:
    """The (decompressed) bytes of one variable element, read forward in blocks."""

    def __init__(self, path: str, offset: int, nbytes: int, compressed: bool) -> None:
        self._file = open(path, "rb")  # noqa: SIM115  (closed by close())
        self._file.seek(offset)
        self._left = nbytes
        self._inflate = zlib.decompressobj() if compressed else None
        self._flushed = False
        self.buffer = bytearray()
        self.base = 0  # stream offset of buffer[0]

    def close(self) -> None:
        self._file.close()

    @property
    def end(self) -> int:
        return self.base + len(self.buffer)

    def _more(self) -> bool:
        """Append the next block of the element; False at its end."""
        if self._left <= 0:
            if self._inflate is None or self._inflate.eof or self._flushed:
                return False
            self._flushed = True
            tail = self._inflate.flush()
            self.buffer += tail
            return bool(tail)
        block = self._file.read(min(self._left, _READ_BLOCK))
        if not block:
            raise MatFormatError("the file ends inside a variable")
        self._left -= len(block)
        if self._inflate is None:
            self.buffer += block
            return True
        try:
            self.buffer += self._inflate.decompress(block)
        except zlib.error as e:
            raise MatFormatError(f"corrupt compressed data: {e}") from e
        return True

    def fill(self, upto: int) -> None:
        """Make the buffer hold the stream up to offset ``upto``."""
        while self.end < upto:
            if not self._more():
                raise MatFormatError(f"truncated data (needs offset {upto}, ends at {self.end})")

    def fill_available(self, upto: int) -> None:
        """Like :meth:`fill`, but stops quietly at the end of the element."""
        while self.end < upto and self._more():
            pass

    def view(self, start: int, end: int) -> bytes:
        self.fill(end)
        return bytes(self.buffer[start - self.base : end - self.base])

    def drop(self, upto: int) -> None:
        """Forget the bytes before stream offset ``upto``."""
        del self.buffer[: upto - self.base]
        self.base = upto


def iter_record_batches(
    path: str,
    variable: str,
    wanted: dict[str, Sequence[str]],
    *,
    batch_bytes: int = _BATCH_BYTES,
) -> Iterator[RecordBatch]:
    """The records of ``variable`` in batches, with the leaves asked for decoded.

    Args:
        wanted: record field -> the leaf fields to decode from the struct array it holds
            (e.g. ``{"Query": ("imname", "idlocate"), "Gallery": ("imname", "idlocate")}``).
        batch_bytes: decompressed bytes decoded together (memory bound).

    Raises:
        KeyError: the file has no variable ``variable`` (the message lists those it has).
        MatFormatError: see the module docstring.
    """
    elements = {name: rest for name, *rest in _variable_elements(path)}
    if variable not in elements:
        raise KeyError(f"{path}: missing variable {variable!r} (found: {sorted(elements)})")
    offset, nbytes, compressed, endian = elements[variable]
    stream = _Stream(path, offset, nbytes, compressed)
    try:
        yield from _records(stream, endian, wanted, batch_bytes)
    finally:
        stream.close()


def _records(
    stream: _Stream, endian: str, wanted: dict[str, Sequence[str]], batch_bytes: int
) -> Iterator[RecordBatch]:
    stream.fill_available(_HEAD_BYTES)
    top = ElementReader(bytes(stream.buffer), endian).header(0, 1 << 62)
    if top.cls == MX_STRUCT:
        children = _top_struct_children(stream, endian, top)
    elif top.cls == MX_CELL:
        children = _top_cell_children(stream, endian, top)
    else:
        raise MatFormatError(f"the variable is a {CLASS_NAMES.get(top.cls, 'numeric')} array")
    batch: list[tuple[tuple[str, ...], list[int]]] = []  # per record: fields, value offsets
    first = 0
    start = top.content
    for fields, offsets, end, can_cut in children:
        batch.append((fields, offsets))
        if can_cut and end - start >= batch_bytes:
            yield _decode_batch(stream, endian, wanted, batch, first, start, end)
            first += len(batch)
            batch, start = [], end
            stream.drop(start)
    if batch or first == 0:
        stream.fill(top.end)
        yield _decode_batch(stream, endian, wanted, batch, first, start, top.end, top.fields)


def _tag_at(stream: _Stream, endian: str, pos: int, limit: int) -> int:
    """End offset of the matrix element at stream offset ``pos`` (checked against ``limit``)."""
    typ, nbytes, data = ElementReader(stream.view(pos, pos + 8), endian).tag(0)
    if typ != MI_MATRIX or data != 8:
        raise MatFormatError(f"expected a matrix element at offset {pos}, found type {typ}")
    end = pos + 8 + pad8(nbytes)
    if end > limit:
        raise MatFormatError(f"truncated data (element at {pos} ends past {limit})")
    return end


def _top_struct_children(stream: _Stream, endian: str, top: Header):
    """Per element of the top struct array: (fields, offsets of its values, end, True)."""
    pos = top.content
    for _ in range(top.numel):
        offsets = []
        for _ in top.fields:
            offsets.append(pos)
            pos = _tag_at(stream, endian, pos, top.end)
        stream.fill(pos)
        yield top.fields, offsets, pos, True


def _top_cell_children(stream: _Stream, endian: str, top: Header):
    """Per element of each struct array held by the top cell array: (fields, offsets of its
    values, end of that struct array, whether a batch may end there)."""
    pos = top.content
    for _ in range(top.numel):
        end = _tag_at(stream, endian, pos, top.end)
        data = stream.view(pos, end)
        reader = ElementReader(data, endian)
        cell = reader.header(0, len(data))
        if cell.cls != MX_STRUCT:
            raise MatFormatError("a cell of the variable holds no struct array")
        num_fields = len(cell.fields)
        values = reader.walk(cell.content, cell.end, cell.numel * num_fields)
        for e in range(cell.numel):
            chunk = values[e * num_fields : (e + 1) * num_fields]
            yield cell.fields, [pos + v for v in chunk], end, e == cell.numel - 1
        pos = end


def _decode_batch(stream, endian, wanted, batch, first, start, end, fields=()) -> RecordBatch:
    data = stream.view(start, end)
    reader = ElementReader(data, endian)
    record_fields = batch[0][0] if batch else fields
    if any(fields != record_fields for fields, _ in batch):
        raise MatFormatError("the records have different fields")
    columns = {}
    for name, leaf_fields in wanted.items():
        if name not in record_fields:
            continue
        k = record_fields.index(name)
        nodes = [offsets[k] - start for _, offsets in batch]
        columns[name] = _struct_column(reader, nodes, tuple(leaf_fields))
    return RecordBatch(first, len(batch), record_fields, columns)


def _struct_column(
    reader: ElementReader, nodes: list[int], wanted: tuple[str, ...]
) -> StructColumn:
    headers = [reader.header(p, len(reader.data)) for p in nodes]
    if any(h.cls != MX_STRUCT for h in headers):
        bad = next(h for h in headers if h.cls != MX_STRUCT)
        raise MatFormatError(f"a record field holds a {CLASS_NAMES.get(bad.cls, 'numeric')}")
    fields = headers[0].fields if headers else ()
    if any(h.fields != fields for h in headers):
        raise MatFormatError("the struct arrays of a field have different fields")
    numel = np.asarray([h.numel for h in headers], dtype=np.int64)
    offsets = np.zeros(len(headers) + 1, dtype=np.int64)
    np.cumsum(numel, out=offsets[1:])
    children = struct_children(reader, headers, len(fields))
    leaves = {}
    for name in wanted:
        if name in fields and len(fields):
            leaves[name] = decode_leaves(reader, children[fields.index(name) :: len(fields)])
    return StructColumn(fields, offsets, leaves)
