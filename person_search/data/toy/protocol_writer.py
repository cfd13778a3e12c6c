"""Write CUHK-SYSU protocol files (``TestG<N>.mat`` layout) of any size, fast, in several of the
MAT-file encodings a reader must accept.

``scipy.io.savemat`` needs minutes and gigabytes of Python objects for a real-size
``TestG4000.mat`` (11.6 million gallery entries); this writer assembles the bytes of each
query's record with numpy (MathWorks, "MAT-File Format", v5 elements, zlib-compressed as v7
files are). It writes what the real files hold (a struct array of records ``Query``: one struct
``imname``, ``idlocate``, ``ishard``, ``idname``; ``Gallery``: a 1xN struct array ``imname``,
``idlocate``, ``ishard``; an absent person's ``idlocate`` a 1x0 double) and, to test readers,
other encodings of the same values:

* ``chars``: ``"utf8"`` (as scipy writes) or ``"uint16"`` (UTF-16 code units, as MATLAB writes);
* ``compact``: store numbers in the smallest integer type that holds them, in the small element
  format when they fit in 4 bytes (as MATLAB does), instead of doubles;
* ``empty``: the absent box as ``"1x0"`` (the real files), ``"0x0"`` or ``"element"`` (a matrix
  element of 0 bytes, MATLAB's unset value).

Used by ``benchmarks/bench_eval.py`` and the reader tests.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..datasets.cuhk_protocol import ProtocolFile

__all__ = ["write_protocol_file"]

_MI_INT8, _MI_UINT8, _MI_UINT16, _MI_INT32, _MI_UINT32 = 1, 2, 4, 5, 6
_MI_DOUBLE, _MI_MATRIX, _MI_COMPRESSED, _MI_UTF8 = 9, 14, 15, 16
_MX_STRUCT, _MX_CHAR, _MX_DOUBLE = 2, 4, 6
_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by person_search protocol_writer"
_EMPTY = ("1x0", "0x0", "element")
_QUERY_FIELDS = ("imname", "idlocate", "ishard", "idname")
_GALLERY_FIELDS = ("imname", "idlocate", "ishard")


def _pad8(n):
    return (n + 7) // 8 * 8


class _Leaves:
    """The bytes of many leaf matrix elements (char or double 2-D arrays, empty names)."""

    def __init__(self, chars: str, compact: bool) -> None:
        self.chars = chars
        self.compact = compact

    def char(self, texts: list[str]) -> list[bytes]:
        out = []
        for text in texts:
            if self.chars == "utf8":
                data, typ = text.encode("utf-8"), _MI_UTF8
            else:
                data, typ = text.encode("utf-16-le"), _MI_UINT16
            out.append(self._matrix(_MX_CHAR, (1, len(text)), self._data(typ, data)))
        return out

    def double(self, rows: np.ndarray, shape: tuple[int, int]) -> list[bytes]:
        """One element per row of ``rows`` (M, k), each of dimensions ``shape``."""
        return [self._matrix(_MX_DOUBLE, shape, self._numbers(row)) for row in rows]

    def empty(self, how: str) -> bytes:
        if how == "element":
            return struct.pack("<II", _MI_MATRIX, 0)
        shape = (1, 0) if how == "1x0" else (0, 0)
        return self._matrix(_MX_DOUBLE, shape, self._data(_MI_DOUBLE, b""))

    def _numbers(self, values: np.ndarray) -> bytes:
        values = np.asarray(values, dtype=np.float64)
        if self.compact and np.all(values == np.round(values)) and values.min(initial=0) >= 0:
            if values.max(initial=0) < 256:
                return self._data(_MI_UINT8, values.astype("<u1").tobytes())
            if values.max(initial=0) < 65536:
                return self._data(_MI_UINT16, values.astype("<u2").tobytes())
        return self._data(_MI_DOUBLE, values.astype("<f8").tobytes())

    @staticmethod
    def _data(typ: int, data: bytes) -> bytes:
        if 0 < len(data) <= 4:  # small data element format
            return struct.pack("<HH", typ, len(data)) + data.ljust(4, b"\0")
        return struct.pack("<II", typ, len(data)) + data.ljust(_pad8(len(data)), b"\0")

    @staticmethod
    def _matrix(cls: int, shape: tuple[int, ...], content: bytes, name: bytes = b"") -> bytes:
        body = struct.pack("<IIII", _MI_UINT32, 8, cls, 0)
        body += struct.pack("<II", _MI_INT32, 4 * len(shape)) + struct.pack(
            f"<{len(shape)}i", *shape
        ).ljust(_pad8(4 * len(shape)), b"\0")
        body += struct.pack("<II", _MI_INT8, len(name)) + name.ljust(_pad8(len(name)), b"\0")
        body += content
        return struct.pack("<II", _MI_MATRIX, len(body)) + body


def _struct(fields: tuple[str, ...], shape: tuple[int, int], values: list[bytes], name=b""):
    width = max(len(f) for f in fields) + 1
    names = b"".join(f.encode().ljust(width, b"\0") for f in fields)
    content = struct.pack("<HHI", _MI_INT32, 4, width)
    content += struct.pack("<II", _MI_INT8, len(names)) + names.ljust(_pad8(len(names)), b"\0")
    return _Leaves._matrix(_MX_STRUCT, shape, content + b"".join(values), name)


class _Records:
    """The bytes of each query's record; gallery entries without a box are shared per name."""

    def __init__(self, pf: ProtocolFile, leaves: _Leaves, empty: str) -> None:
        self.pf = pf
        self.leaves = leaves
        self.hard = leaves.double(np.zeros((1, 1)), (1, 1))[0]
        self.names = leaves.char([str(n) for n in pf.names])
        missing = leaves.empty(empty)
        self.absent = [name + missing + self.hard for name in self.names]
        self.box_index = np.cumsum(pf.gallery_has_box) - 1
        self.absent_bytes = np.asarray([len(b) for b in self.absent], dtype=np.int64)

    def size(self, q: int) -> int:
        """Bytes of record ``q`` (without building it)."""
        return len(self.build(q)) if self._has_box(q) else self._size_absent_only(q)

    def _has_box(self, q: int) -> bool:
        start, end = self.pf.gallery_offsets[q], self.pf.gallery_offsets[q + 1]
        return bool(self.pf.gallery_has_box[start:end].any())

    def _size_absent_only(self, q: int) -> int:
        start, end = self.pf.gallery_offsets[q], self.pf.gallery_offsets[q + 1]
        gallery = int(self.absent_bytes[self.pf.gallery_names[start:end]].sum())
        return len(self._query(q)) + len(self._gallery_head(q)) + gallery

    def _query(self, q: int) -> bytes:
        pf, leaves = self.pf, self.leaves
        values = leaves.char([str(pf.query_names[q])])
        values += leaves.double(pf.query_boxes[q : q + 1], (1, 4)) + [self.hard]
        values += leaves.char([f"p{int(pf.query_person_ids[q])}"])
        return _struct(_QUERY_FIELDS, (1, 1), values)

    def _gallery_head(self, q: int) -> bytes:
        n = int(self.pf.gallery_offsets[q + 1] - self.pf.gallery_offsets[q])
        return _struct(_GALLERY_FIELDS, (1, n), [])

    def build(self, q: int) -> bytes:
        pf = self.pf
        start, end = int(pf.gallery_offsets[q]), int(pf.gallery_offsets[q + 1])
        entries = []
        for e in range(start, end):
            k = int(pf.gallery_names[e])
            if pf.gallery_has_box[e]:
                row = pf.gallery_boxes[self.box_index[e] : self.box_index[e] + 1]
                entries.append(self.names[k] + self.leaves.double(row, (1, 4))[0] + self.hard)
            else:
                entries.append(self.absent[k])
        gallery = b"".join(entries)
        head = self._gallery_head(q)
        # The head was built for an empty content: patch its byte count to include the entries.
        head = struct.pack("<II", _MI_MATRIX, len(head) - 8 + len(gallery)) + head[8:]
        return self._query(q) + head + gallery


def write_protocol_file(
    pf: ProtocolFile,
    path: str,
    *,
    chars: str = "utf8",
    compact: bool = False,
    empty: str = "1x0",
    level: int = 6,
) -> None:
    """Write ``pf``'s queries and galleries as variable ``pf.variable`` of a v7 MAT file.

    Args:
        chars, compact, empty: the encoding (see the module docstring).
        level: zlib compression level.
    """
    if chars not in ("utf8", "uint16") or empty not in _EMPTY:
        raise ValueError(f"unknown encoding chars={chars!r} empty={empty!r}")
    records = _Records(pf, _Leaves(chars, compact), empty)
    head = _struct(("Query", "Gallery"), (1, pf.num_queries), [], pf.variable.encode())
    total = len(head) - 8 + sum(records.size(q) for q in range(pf.num_queries))
    compressor = zlib.compressobj(level)
    chunks = [compressor.compress(struct.pack("<II", _MI_MATRIX, total) + head[8:])]
    chunks += [compressor.compress(records.build(q)) for q in range(pf.num_queries)]
    chunks.append(compressor.flush())
    payload = b"".join(chunks)
    header = _HEADER_TEXT.ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    with open(path, "wb") as f:
        f.write(header + struct.pack("<II", _MI_COMPRESSED, len(payload)) + payload)
