"""Vectorised decoding of MATLAB v5 matrix elements (the engine of :mod:`.matv5`).

:class:`ElementReader` parses the tags and headers of single elements (MathWorks, "MAT-File
Format": an element is an 8-byte tag, type and byte count, or a 4-byte "small" tag, then its
data padded to 8 bytes; a matrix element holds array flags, dimensions, a name, then its class's
content). :func:`struct_children` finds the field values of many struct arrays at once and
:func:`decode_leaves` decodes many 2-D char / numeric matrices at once, with numpy.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "MI_COMPRESSED",
    "MI_MATRIX",
    "MX_CELL",
    "MX_STRUCT",
    "ElementReader",
    "Header",
    "LeafColumn",
    "MatFormatError",
    "MatValueError",
    "decode_leaves",
    "pad8",
    "struct_children",
]

# Data types of MAT-file elements.
_MI_INT8, _MI_UINT8, _MI_INT16, _MI_UINT16, _MI_INT32, _MI_UINT32 = 1, 2, 3, 4, 5, 6
_MI_SINGLE, _MI_DOUBLE, _MI_INT64, _MI_UINT64 = 7, 9, 12, 13
MI_MATRIX, MI_COMPRESSED, _MI_UTF8, _MI_UTF16, _MI_UTF32 = 14, 15, 16, 17, 18
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
MX_CELL, MX_STRUCT, _MX_CHAR = 1, 2, 4
_MX_NUMERIC = range(6, 16)  # double, single, int8 ... uint64
CLASS_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse"}
_COMPLEX_FLAG = 0x800
# Longest character leaf decoded in the vectorised path (longer ones: not a name; unsupported).
_MAX_CHARS = 4096


class MatFormatError(Exception):
    """The bytes are not in the subset of the format this reader decodes, or are corrupt."""


class MatValueError(ValueError):
    """Well-formed bytes holding an invalid value (a char value that is not valid UTF-8)."""


def pad8(n):
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


@dataclass(frozen=True)
class Header:
    cls: int
    dims: tuple[int, ...]
    end: int  # offset after the element
    content: int  # offset of the class-specific content (children of a cell / struct)
    fields: tuple[str, ...]  # struct field names

    @property
    def numel(self) -> int:
        return int(np.prod(self.dims)) if self.dims else 0


class ElementReader:
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
        return pos + 8 if start == pos + 4 else start + pad8(nbytes)

    def header(self, pos: int, limit: int) -> Header:
        """Parse the miMATRIX element at ``pos`` up to its content."""
        typ, nbytes, start = self.tag(pos)
        if typ != MI_MATRIX or start != pos + 8:
            raise MatFormatError(f"expected a matrix element at offset {pos}, found type {typ}")
        end = start + nbytes
        if end > limit:
            raise MatFormatError(f"truncated data (element at {pos} ends past {limit})")
        if nbytes == 0:  # MATLAB's empty value: an empty double array
            return Header(6, (0, 0), end, end, ())
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
        if cls == MX_STRUCT:
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
        elif cls not in (MX_CELL, _MX_CHAR) and cls not in _MX_NUMERIC:
            raise MatFormatError(f"{CLASS_NAMES.get(cls, f'class {cls}')} arrays not supported")
        if pos > end:
            raise MatFormatError(f"truncated header at offset {pos}")
        return Header(cls, dims, end, pos, fields)

    def walk(self, start: int, end: int, count: int) -> list[int]:
        """Offsets of ``count`` consecutive elements from ``start``, all before ``end``."""
        out = []
        pos = start
        for _ in range(count):
            typ, nbytes, data = self.tag(pos)
            if typ != MI_MATRIX or data != pos + 8:
                raise MatFormatError(f"expected a matrix element at offset {pos}")
            out.append(pos)
            pos = data + pad8(nbytes)
            if pos > end:
                raise MatFormatError(f"truncated data (element at {out[-1]} ends past {end})")
        return out


def _words(reader: ElementReader) -> np.ndarray:
    usable = len(reader.data) // 8 * 8
    return np.frombuffer(reader.data, dtype=reader.endian + "u4", count=usable // 4)


def struct_children(reader: ElementReader, headers: list[Header], num_fields: int) -> np.ndarray:
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
    is_tag = (words[:-1, 0] == MI_MATRIX) & (words[1:, 0] == _MI_UINT32) & (words[1:, 1] == 8)
    cand = np.flatnonzero(is_tag).astype(np.int64) * 8
    nxt = cand + 8 + pad8(words[cand // 8, 1].astype(np.int64))
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


def decode_leaves(reader: ElementReader, pos: np.ndarray) -> LeafColumn:
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
        raise MatFormatError(f"a leaf field holds a {CLASS_NAMES.get(cls, f'class {cls}')} array")
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
    tag_pos = pos[full] + 40 + np.where(small, 8, 8 + pad8(name_len))
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


def _gather(reader: ElementReader, start: np.ndarray, counts: np.ndarray, code: str) -> np.ndarray:
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


def _strings(reader: ElementReader, start: np.ndarray, counts: np.ndarray, size: int) -> np.ndarray:
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
