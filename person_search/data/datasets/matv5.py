"""A vectorised reader of the struct arrays in MATLAB v5 / v7 MAT files (CUHK-SYSU's protocols).

``scipy.io.loadmat`` builds one numpy array per struct field value (about 10 us each): a
``TestG4000.mat`` (2,900 queries x 4,000 gallery entries x 3 fields) takes minutes. This module
reads the same bytes (MathWorks, "MAT-File Format", v5 layout; v7 = the same elements
zlib-compressed), streams them in blocks, finds the elements of many struct arrays at once and
decodes only the fields asked for, with numpy.

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

__all__ = [
    "LeafColumn",
    "MatFormatError",
    "MatValueError",
    "RecordBatch",
    "StructColumn",
    "iter_record_batches",
    "list_variables",
]

# Data types of MAT-file elements.
_MI_INT8, _MI_UINT8, _MI_INT16, _MI_UINT16, _MI_INT32, _MI_UINT32 = 1, 2, 3, 4, 5, 6
_MI_SINGLE, _MI_DOUBLE, _MI_INT64, _MI_UINT64 = 7, 9, 12, 13
_MI_MATRIX, _MI_COMPRESSED, _MI_UTF8, _MI_UTF16, _MI_UTF32 = 14, 15, 16, 17, 18
# numpy type code of each numeric data type ("" = not numeric).
_NUMERIC_CODES = {
    _MI_INT8: "i1",
    _MI_UINT8: "u1",
    _MI_INT16: "i2",
    _MI_UINT16: "u2",
    _MI_INT32: "i4",
    _MI_UINT32: "u4",
    _MI_SINGLE: "f4",
    _MI_DOUBLE: "f8",
    _MI_INT64: "i8",
    _MI_UINT64: "u8",
}
# Character data types -> bytes per code unit (UTF-8 / uint8 / int8 hold one byte per char).
_CHAR_UNITS = {_MI_UTF8: 1, _MI_UINT8: 1, _MI_INT8: 1, _MI_UINT16: 2, _MI_UTF16: 2}
_CHAR_UNITS.update({_MI_UTF32: 4, _MI_UINT32: 4})
# Bytes per value of each data type, for [numeric values, char values] (0: not allowed).
_UNIT_BYTES = np.zeros((2, 19), dtype=np.int64)
for _typ, _code in _NUMERIC_CODES.items():
    _UNIT_BYTES[0, _typ] = int(_code[1])
for _typ, _size in _CHAR_UNITS.items():
    _UNIT_BYTES[1, _typ] = _size
# Array classes.
_MX_CELL, _MX_STRUCT, _MX_CHAR = 1, 2, 4
_MX_NUMERIC = range(6, 16)  # double, single, int8 ... uint64
_CLASS_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse"}
_COMPLEX_FLAG = 0x800
_HEADER_BYTES = 128  # text (116), subsystem offset (8), version (2), endian indicator (2)
# Bytes of decompressed data decoded together (bounds the memory of the numpy temporaries).
_BATCH_BYTES = 64 << 20
_READ_BLOCK = 1 << 20
# Bytes read to parse the header of a variable (names, dimensions and field names).
_HEAD_BYTES = 1 << 16
# Longest character leaf decoded in the vectorised path (longer ones: not a name; unsupported).
_MAX_CHARS = 4096


class MatFormatError(Exception):
    """The bytes are not in the subset of the format this reader decodes, or are corrupt."""


class MatValueError(ValueError):
    """Well-formed bytes holding an invalid value (a char value that is not valid UTF-8)."""


def _pad8(n):
    return (n + 7) & ~7


@dataclass
class LeafColumn:
    """One field of every element of a batch of struct arrays (M leaves, in element order).

    Attributes:
        classes: (M,) MATLAB class of each leaf (4 char, 6 double ... 15 uint64).
        shapes: (M, 2) int64 dimensions.
        offsets: (M + 1,) int64: numeric leaf i holds ``values[offsets[i]:offsets[i + 1]]``
            (column-major, as stored); char leaves hold no values.
        values: float64 numeric values.
        text_ids: (M,) int64 index into ``texts`` of each char leaf (-1 for numeric leaves).
        texts: the distinct strings of the char leaves (a char leaf with several rows is its
            rows' characters in stored, column-major order).
    """

    classes: np.ndarray
    shapes: np.ndarray
    offsets: np.ndarray
    values: np.ndarray
    text_ids: np.ndarray
    texts: list[str]

    def __len__(self) -> int:
        return len(self.classes)


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


@dataclass(frozen=True)
class _Header:
    cls: int
    dims: tuple[int, ...]
    end: int  # offset after the element
    content: int  # offset of the class-specific content (children of a cell / struct)
    fields: tuple[str, ...]  # struct field names

    @property
    def numel(self) -> int:
        return int(np.prod(self.dims)) if self.dims else 0


class _Bytes:
    """Reads tags from a bytes object with the file's byte order; bounds checked."""

    def __init__(self, data: bytes, endian: str) -> None:
        self.data = data
        self.u32 = struct.Struct(endian + "I")
        self.i32 = struct.Struct(endian + "i")
        self.endian = endian

    def word(self, pos: int) -> int:
        if pos < 0 or pos + 4 > len(self.data):
            raise MatFormatError(f"truncated data (offset {pos})")
        return self.u32.unpack_from(self.data, pos)[0]

    def tag(self, pos: int) -> tuple[int, int, int]:
        """(data type, byte count, data offset) of the element at ``pos``."""
        first = self.word(pos)
        if first >> 16:  # small data element: type and count in one word, data in the next
            return first & 0xFFFF, first >> 16, pos + 4
        return first, self.word(pos + 4), pos + 8

    def element_end(self, pos: int) -> int:
        typ, nbytes, start = self.tag(pos)
        return pos + 8 if start == pos + 4 else start + _pad8(nbytes)

    def header(self, pos: int, limit: int) -> _Header:
        """Parse the miMATRIX element at ``pos`` up to its content."""
        typ, nbytes, start = self.tag(pos)
        if typ != _MI_MATRIX or start != pos + 8:
            raise MatFormatError(f"expected a matrix element at offset {pos}, found type {typ}")
        end = start + nbytes
        if end > limit:
            raise MatFormatError(f"truncated data (element at {pos} ends past {limit})")
        if nbytes == 0:  # MATLAB's empty value: an empty double array
            return _Header(6, (0, 0), end, end, ())
        typ, count, data = self.tag(start)
        if typ != _MI_UINT32 or count != 8:
            raise MatFormatError(f"bad array flags at offset {start}")
        flags = self.word(data)
        if flags & _COMPLEX_FLAG:
            raise MatFormatError("complex arrays are not supported")
        cls = flags & 0xFF
        pos = self.element_end(start)
        typ, count, data = self.tag(pos)
        if typ != _MI_INT32 or count % 4 or count < 8:
            raise MatFormatError(f"bad dimensions at offset {pos}")
        dims = tuple(self.i32.unpack_from(self.data, data + 4 * k)[0] for k in range(count // 4))
        if min(dims) < 0:
            raise MatFormatError(f"negative dimension at offset {pos}")
        pos = self.element_end(pos)  # dimensions
        pos = self.element_end(pos)  # array name
        fields: tuple[str, ...] = ()
        if cls == _MX_STRUCT:
            typ, count, data = self.tag(pos)
            name_len = self.word(data)
            if typ != _MI_INT32 or count != 4 or name_len == 0:
                raise MatFormatError(f"bad field name length at offset {pos}")
            pos = self.element_end(pos)
            typ, count, data = self.tag(pos)
            if typ not in (_MI_INT8, _MI_UINT8) or count % name_len or data + count > end:
                raise MatFormatError(f"bad field names at offset {pos}")
            raw = self.data[data : data + count]
            fields = tuple(
                raw[k : k + name_len].split(b"\0", 1)[0].decode("ascii", "replace")
                for k in range(0, count, name_len)
            )
            pos = self.element_end(pos)
        elif cls not in (_MX_CELL, _MX_CHAR) and cls not in _MX_NUMERIC:
            raise MatFormatError(f"{_CLASS_NAMES.get(cls, f'class {cls}')} arrays not supported")
        if pos > end:
            raise MatFormatError(f"truncated header at offset {pos}")
        return _Header(cls, dims, end, pos, fields)

    def walk(self, start: int, end: int, count: int) -> list[int]:
        """Offsets of ``count`` consecutive elements from ``start``, all before ``end``."""
        out = []
        pos = start
        for _ in range(count):
            typ, nbytes, data = self.tag(pos)
            if typ != _MI_MATRIX or data != pos + 8:
                raise MatFormatError(f"expected a matrix element at offset {pos}")
            out.append(pos)
            pos = data + _pad8(nbytes)
            if pos > end:
                raise MatFormatError(f"truncated data (element at {out[-1]} ends past {end})")
        return out


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
            if typ == _MI_COMPRESSED:
                head = zlib.decompressobj().decompress(f.read(min(nbytes, 1 << 16)), 1 << 12)
                compressed = True
                next_pos = pos + 8 + nbytes
            elif typ == _MI_MATRIX:
                head = struct.pack(endian + "II", typ, nbytes) + f.read(min(nbytes, 1 << 12))
                compressed = False
                next_pos = pos + 8 + _pad8(nbytes)
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
    reader = _Bytes(head, endian)
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
    top = _Bytes(bytes(stream.buffer), endian).header(0, 1 << 62)
    if top.cls == _MX_STRUCT:
        children = _top_struct_children(stream, endian, top)
    elif top.cls == _MX_CELL:
        children = _top_cell_children(stream, endian, top)
    else:
        raise MatFormatError(f"the variable is a {_CLASS_NAMES.get(top.cls, 'numeric')} array")
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
    typ, nbytes, data = _Bytes(stream.view(pos, pos + 8), endian).tag(0)
    if typ != _MI_MATRIX or data != 8:
        raise MatFormatError(f"expected a matrix element at offset {pos}, found type {typ}")
    end = pos + 8 + _pad8(nbytes)
    if end > limit:
        raise MatFormatError(f"truncated data (element at {pos} ends past {limit})")
    return end


def _top_struct_children(stream: _Stream, endian: str, top: _Header):
    """Per element of the top struct array: (fields, offsets of its values, end, True)."""
    pos = top.content
    for _ in range(top.numel):
        offsets = []
        for _ in top.fields:
            offsets.append(pos)
            pos = _tag_at(stream, endian, pos, top.end)
        stream.fill(pos)
        yield top.fields, offsets, pos, True


def _top_cell_children(stream: _Stream, endian: str, top: _Header):
    """Per element of each struct array held by the top cell array: (fields, offsets of its
    values, end of that struct array, whether a batch may end there)."""
    pos = top.content
    for _ in range(top.numel):
        end = _tag_at(stream, endian, pos, top.end)
        data = stream.view(pos, end)
        reader = _Bytes(data, endian)
        cell = reader.header(0, len(data))
        if cell.cls != _MX_STRUCT:
            raise MatFormatError("a cell of the variable holds no struct array")
        num_fields = len(cell.fields)
        values = reader.walk(cell.content, cell.end, cell.numel * num_fields)
        for e in range(cell.numel):
            chunk = values[e * num_fields : (e + 1) * num_fields]
            yield cell.fields, [pos + v for v in chunk], end, e == cell.numel - 1
        pos = end


def _decode_batch(stream, endian, wanted, batch, first, start, end, fields=()) -> RecordBatch:
    data = stream.view(start, end)
    reader = _Bytes(data, endian)
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


def _struct_column(reader: _Bytes, nodes: list[int], wanted: tuple[str, ...]) -> StructColumn:
    headers = [reader.header(p, len(reader.data)) for p in nodes]
    if any(h.cls != _MX_STRUCT for h in headers):
        bad = next(h for h in headers if h.cls != _MX_STRUCT)
        raise MatFormatError(f"a record field holds a {_CLASS_NAMES.get(bad.cls, 'numeric')}")
    fields = headers[0].fields if headers else ()
    if any(h.fields != fields for h in headers):
        raise MatFormatError("the struct arrays of a field have different fields")
    numel = np.asarray([h.numel for h in headers], dtype=np.int64)
    offsets = np.zeros(len(headers) + 1, dtype=np.int64)
    np.cumsum(numel, out=offsets[1:])
    children = _children(reader, headers, len(fields))
    leaves = {}
    for name in wanted:
        if name in fields and len(fields):
            leaves[name] = _leaves(reader, children[fields.index(name) :: len(fields)])
    return StructColumn(fields, offsets, leaves)


def _words(reader: _Bytes) -> np.ndarray:
    usable = len(reader.data) // 8 * 8
    return np.frombuffer(reader.data, dtype=reader.endian + "u4", count=usable // 4)


def _children(reader: _Bytes, headers: list[_Header], num_fields: int) -> np.ndarray:
    """Offsets of the field values of every element of the struct arrays ``headers``, in order.

    Vectorised: every 8-byte-aligned position that looks like a matrix element (type 14
    followed by the array-flags tag) is a candidate; a struct's candidates are accepted when
    they chain exactly (each ends where the next begins, the last at the struct's end).
    Otherwise (an empty-value element, or data bytes that mimic a tag) its elements are walked
    one by one.
    """
    counts = np.asarray([h.numel * num_fields for h in headers], dtype=np.int64)
    if counts.sum() == 0:
        return np.zeros(0, dtype=np.int64)
    words = _words(reader).reshape(-1, 2)
    is_tag = (words[:-1, 0] == _MI_MATRIX) & (words[1:, 0] == _MI_UINT32) & (words[1:, 1] == 8)
    cand = np.flatnonzero(is_tag).astype(np.int64) * 8
    nxt = cand + 8 + _pad8(words[cand // 8, 1].astype(np.int64))
    starts = np.asarray([h.content for h in headers], dtype=np.int64)
    ends = np.asarray([h.end for h in headers], dtype=np.int64)
    lo = np.searchsorted(cand, starts)
    hi = np.searchsorted(cand, ends)
    first_ok = np.zeros(len(headers), dtype=bool)
    has = lo < len(cand)
    first_ok[has] = cand[lo[has]] == starts[has]
    ok = (hi - lo == counts) & ((counts == 0) | first_ok)
    # Chain check over the concatenated candidates of the structs that passed the count check.
    idx = _ranges(lo[ok], counts[ok])
    if len(idx):
        target = np.empty(len(idx), dtype=np.int64)
        target[:-1] = cand[idx[1:]]
        last = np.cumsum(counts[ok]) - 1
        target[last[counts[ok] > 0]] = ends[ok][counts[ok] > 0]
        bad = nxt[idx] != target
        node = np.repeat(np.flatnonzero(ok), counts[ok])
        ok[np.unique(node[bad])] = False
    out = np.empty(int(counts.sum()), dtype=np.int64)
    pos = np.zeros(len(headers) + 1, dtype=np.int64)
    np.cumsum(counts, out=pos[1:])
    out_idx = _ranges(pos[:-1][ok], counts[ok])
    out[out_idx] = cand[_ranges(lo[ok], counts[ok])]
    for j in np.flatnonzero(~ok):
        h = headers[j]
        out[pos[j] : pos[j + 1]] = reader.walk(h.content, h.end, int(counts[j]))
    return out


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each pair (vectorised)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    begin = np.cumsum(counts) - counts
    return np.repeat(starts - begin, counts) + np.arange(total, dtype=np.int64)


def _leaves(reader: _Bytes, pos: np.ndarray) -> LeafColumn:
    """Decode the 2-D char / numeric matrix elements at byte offsets ``pos`` (vectorised)."""
    words = _words(reader)
    m = len(pos)

    def at(index: np.ndarray) -> np.ndarray:
        if len(index) and (index.min() < 0 or index.max() >= len(words)):
            raise MatFormatError("truncated data")
        return words[index].astype(np.int64)

    i = pos // 4
    end = pos + 8 + at(i + 1)
    full = end > pos + 8  # an element of 0 bytes is MATLAB's empty value: a 0x0 double
    ii = i[full]
    if (at(ii + 2) != _MI_UINT32).any() or (at(ii + 3) != 8).any():
        raise MatFormatError("bad array flags")
    flags = at(ii + 4)
    if (flags & _COMPLEX_FLAG).any():
        raise MatFormatError("complex arrays are not supported")
    classes = np.full(m, 6, dtype=np.int64)
    classes[full] = flags & 0xFF
    is_char = classes == _MX_CHAR
    if not (is_char | ((classes >= 6) & (classes <= 15))).all():
        cls = int(classes[~(is_char | (classes >= 6))][0])
        raise MatFormatError(f"a leaf field holds a {_CLASS_NAMES.get(cls, f'class {cls}')} array")
    if (at(ii + 6) != _MI_INT32).any() or (at(ii + 7) != 8).any():
        raise MatFormatError("a leaf field holds an array of more than two dimensions")
    shapes = np.zeros((m, 2), dtype=np.int64)
    shapes[full, 0] = at(ii + 8)
    shapes[full, 1] = at(ii + 9)
    if (shapes >= 1 << 31).any():
        raise MatFormatError("negative dimension")
    first = at(ii + 10)  # array name tag (empty for field values)
    small = (first >> 16) != 0
    name_len = np.where(small, 0, at(np.where(small, ii, ii + 11)))
    tag_pos = pos[full] + 40 + np.where(small, 8, 8 + _pad8(name_len))
    has_data = tag_pos < end[full]  # an empty array may have no data element
    dtype = np.zeros(m, dtype=np.int64)
    nbytes = np.zeros(m, dtype=np.int64)
    data_pos = np.zeros(m, dtype=np.int64)
    with_data = np.flatnonzero(full)[has_data]
    tp = tag_pos[has_data]
    first = at(tp // 4)
    small = (first >> 16) != 0
    dtype[with_data] = np.where(small, first & 0xFFFF, first)
    nbytes[with_data] = np.where(small, first >> 16, at(np.where(small, tp, tp + 4) // 4))
    data_pos[with_data] = np.where(small, tp + 4, tp + 8)
    if (data_pos + nbytes > end).any() or (dtype >= len(_UNIT_BYTES[0])).any():
        raise MatFormatError("a value runs past its element, or has an unknown data type")
    unit = _UNIT_BYTES[is_char.astype(np.int64), dtype]
    if ((nbytes > 0) & (unit == 0)).any():
        bad = int(dtype[(nbytes > 0) & (unit == 0)][0])
        raise MatFormatError(f"unsupported data type {bad} of a leaf value")
    counts = nbytes // np.maximum(unit, 1)
    if (nbytes % np.maximum(unit, 1)).any() or (counts != shapes[:, 0] * shapes[:, 1]).any():
        raise MatFormatError("a value's byte count disagrees with its dimensions")
    numeric_counts = np.where(is_char, 0, counts)
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(numeric_counts, out=offsets[1:])
    values = np.empty(int(offsets[-1]), dtype=np.float64)
    for typ in np.unique(dtype[numeric_counts > 0]).tolist():
        sel = np.flatnonzero((dtype == typ) & (numeric_counts > 0))
        units = _gather(reader, data_pos[sel], numeric_counts[sel], _NUMERIC_CODES[typ])
        values[_ranges(offsets[sel], numeric_counts[sel])] = units
    text_ids = np.full(m, -1, dtype=np.int64)
    texts: list[str] = []
    char_idx = np.flatnonzero(is_char)
    for size in np.unique(unit[char_idx]).tolist():
        sel = char_idx[unit[char_idx] == size]
        if size == 0:  # no characters
            text_ids[sel] = len(texts)
            texts.append("")
            continue
        strings = _strings(reader, data_pos[sel], counts[sel], size)
        unique, inverse = np.unique(strings, return_inverse=True)
        text_ids[sel] = len(texts) + inverse.reshape(-1)
        texts.extend(_decode(u) for u in unique.tolist())
    return LeafColumn(classes, shapes, offsets, values, text_ids, texts)


def _decode(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MatValueError(f"a char value is not valid UTF-8: {raw!r}") from e


def _gather(reader: _Bytes, start: np.ndarray, counts: np.ndarray, code: str) -> np.ndarray:
    """The ``counts[i]`` values of numpy type ``code`` at byte offsets ``start[i]``,
    concatenated (in the file's byte order)."""
    dtype = np.dtype(reader.endian + code)
    if (start % dtype.itemsize).any():
        raise MatFormatError("misaligned data")
    view = np.frombuffer(reader.data, dtype=dtype, count=len(reader.data) // dtype.itemsize)
    index = _ranges(start // dtype.itemsize, counts)
    if len(index) and index.max() >= len(view):
        raise MatFormatError("truncated data")
    return view[index]


def _strings(reader: _Bytes, start: np.ndarray, counts: np.ndarray, size: int) -> np.ndarray:
    """Fixed-width strings of char values: "S" (bytes, UTF-8) for one-byte code units, "U" for
    two- and four-byte ones."""
    longest = int(counts.max())
    if longest > _MAX_CHARS:
        raise MatFormatError(f"a char value of {longest} characters")
    units = _gather(reader, start, counts, {1: "u1", 2: "u2", 4: "u4"}[size])
    matrix = np.zeros((len(counts), longest), dtype=np.uint8 if size == 1 else np.uint32)
    rows = np.repeat(np.arange(len(counts)), counts)
    matrix[rows, _ranges(np.zeros(len(counts), dtype=np.int64), counts)] = units
    return matrix.view(f"S{longest}" if size == 1 else f"U{longest}").reshape(-1)
