"""CUHK-SYSU's protocol files (``TestG<N>.mat``, ``Occlusion.mat``, ``Resolution.mat``) as
compact arrays, parsed once and cached across runs.

A protocol file is a struct array (or a cell of structs) of records ``Query`` (one struct:
``imname``, ``idlocate`` x, y, w, h, ``ishard``, ``idname`` ``p<number>``) and ``Gallery`` (a
struct array: ``imname``, ``idlocate`` = the query person's box in that image or an empty
array, ``ishard``); see ``datasets/README.md``. :func:`read_protocol_file` reads the fields used
(not ``ishard``) with the vectorised reader (:func:`.matfile.read_record_batches`) into a
:class:`ProtocolFile` and checks them: names are strings, boxes 4 numbers (a gallery box may be
empty), identity names ``p<number>``, boxes follow the protocol-box policy of
:mod:`.load_checks`. With a cache (:class:`.array_cache.ArrayCache`) the arrays are stored as an
``.npz`` entry and read back while the file is unchanged.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields

import numpy as np

from ..search_protocol import QueryGalleries
from .array_cache import ArrayCache
from .load_checks import check_protocol_boxes
from .matfile import AnnotationError, read_record_batches, xywh_to_xyxy
from .matv5 import LeafColumn, RecordBatch

__all__ = [
    "PROTOCOL_FORMAT",
    "ProtocolFile",
    "parse_protocol_file",
    "pool_indices",
    "query_galleries",
    "read_protocol_file",
]

# Names the arrays a ProtocolFile stores (part of the cache key: change it when they change).
PROTOCOL_FORMAT = "cuhk_protocol_v1"
_IDNAME = re.compile(r"^p(\d+)$")
_QUERY_LEAVES = ("imname", "idlocate", "idname")
_GALLERY_LEAVES = ("imname", "idlocate")


@dataclass(frozen=True)
class ProtocolFile:
    """One protocol file: Q queries and, per query, its gallery entries (E in all).

    Attributes:
        path, variable: where it was read from.
        query_names: (Q,) str, the query's scene image.
        query_boxes: (Q, 4) float64 x, y, w, h of the query person.
        query_person_ids: (Q,) int64, the number of ``idname`` (``p10581`` -> 10581).
        names: (K,) str, the distinct gallery image names.
        gallery_offsets: (Q + 1,) int64, query q's entries are ``offsets[q]:offsets[q + 1]``
            (in file order, duplicates kept).
        gallery_names: (E,) int32 index into ``names``.
        gallery_has_box: (E,) bool, the entry locates the query person.
        gallery_boxes: (P, 4) float64 x, y, w, h of the entries with a box, in entry order.
    """

    path: str
    variable: str
    query_names: np.ndarray
    query_boxes: np.ndarray
    query_person_ids: np.ndarray
    names: np.ndarray
    gallery_offsets: np.ndarray
    gallery_names: np.ndarray
    gallery_has_box: np.ndarray
    gallery_boxes: np.ndarray

    @property
    def num_queries(self) -> int:
        return len(self.query_names)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)[2:]}

    @classmethod
    def from_arrays(cls, path: str, variable: str, arrays: dict) -> ProtocolFile:
        names = [f.name for f in fields(cls)[2:]]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise KeyError(f"protocol arrays lack {missing}")
        return cls(path, variable, **{n: arrays[n] for n in names})

    def where(self, query: int, entry: int | None = None) -> str:
        """``"file: variable[q]"`` (``.Gallery[j]`` when ``entry`` is given)."""
        text = f"{self.path}: {self.variable}[{query}]"
        return text if entry is None else f"{text}.Gallery[{entry}]"

    def entry_location(self, index: int) -> tuple[int, int]:
        """(query, position in its gallery) of gallery entry ``index``."""
        query = int(np.searchsorted(self.gallery_offsets, index, side="right") - 1)
        return query, int(index - self.gallery_offsets[query])


def read_protocol_file(path: str, variable: str, cache: ArrayCache | None = None) -> ProtocolFile:
    """The parsed protocol file, from ``cache`` when it holds the file's current content.

    Raises:
        FileNotFoundError: the file does not exist.
        AnnotationError: the file cannot be parsed or holds a malformed value (named).
    """
    if cache is None:
        return parse_protocol_file(path, variable)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    arrays = cache.load(
        path,
        f"{PROTOCOL_FORMAT}-{variable}",
        lambda: parse_protocol_file(path, variable).to_arrays(),
    )
    try:
        return ProtocolFile.from_arrays(path, variable, arrays)
    except KeyError:  # an entry written by another version under the same kind: re-parse
        return parse_protocol_file(path, variable)


def parse_protocol_file(path: str, variable: str) -> ProtocolFile:
    """Parse and check a protocol file (see the module docstring)."""
    wanted = {"Query": _QUERY_LEAVES, "Gallery": _GALLERY_LEAVES}
    parts: dict[str, list] = {k: [] for k in ("qname", "qbox", "qid", "count", "gname", "has")}
    boxes: list[np.ndarray] = []
    table: dict[str, int] = {}
    for batch in read_record_batches(path, variable, wanted):
        _parse_batch(path, variable, batch, table, parts, boxes)
    counts = np.asarray(np.concatenate(parts["count"]) if parts["count"] else [], np.int64)
    if len(counts) == 0:
        raise AnnotationError(f"{path}: {variable} holds no query record")
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    names = np.asarray(list(table), dtype=str) if table else np.zeros(0, dtype="<U1")
    out = ProtocolFile(
        path=path,
        variable=variable,
        query_names=np.concatenate(parts["qname"]) if parts["qname"] else np.zeros(0, "<U1"),
        query_boxes=np.concatenate(parts["qbox"]) if parts["qbox"] else np.zeros((0, 4)),
        query_person_ids=_concat(parts["qid"], np.int64),
        names=names,
        gallery_offsets=offsets,
        gallery_names=_concat(parts["gname"], np.int32),
        gallery_has_box=_concat(parts["has"], bool),
        gallery_boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)),
    )
    check_protocol_boxes(
        out.query_boxes, lambda q: f"{out.where(q)}.Query.idlocate", allow_zero_area=False
    )
    check_protocol_boxes(
        out.gallery_boxes,
        lambda k: f"{out.where(*out.entry_location(_nth_true(out.gallery_has_box, k)))}.idlocate",
        allow_zero_area=True,
    )
    return out


def _concat(chunks: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(chunks).astype(dtype) if chunks else np.zeros(0, dtype=dtype)


def _nth_true(mask: np.ndarray, k: int) -> int:
    return int(np.flatnonzero(mask)[k])


def _parse_batch(path, variable, batch: RecordBatch, table, parts, boxes) -> None:
    def where(r: int) -> str:
        return f"{path}: {variable}[{batch.start + r}]"

    for name in ("Query", "Gallery"):
        if batch.count and name not in batch.fields:
            raise AnnotationError(
                f"{where(0)}: record has no field {name!r} (fields: {list(batch.fields)})"
            )
    if not batch.count:
        return
    query, gallery = batch.columns["Query"], batch.columns["Gallery"]
    per_record = np.diff(query.offsets)
    if (per_record != 1).any():
        r = int(np.flatnonzero(per_record != 1)[0])
        raise AnnotationError(f"{where(r)}.Query: expected one record, got {per_record[r]}")
    for column, leaves, label in (
        (query, _QUERY_LEAVES, "Query"),
        (gallery, _GALLERY_LEAVES, "Gallery"),
    ):
        for leaf in leaves:
            if len(column.offsets) > 1 and column.offsets[-1] and leaf not in column.leaves:
                raise AnnotationError(
                    f"{where(0)}.{label}: record has no field {leaf!r} "
                    f"(fields: {list(column.fields)})"
                )

    def q_where(leaf: str):
        return lambda i: f"{where(i)}.Query.{leaf}"

    def g_where(leaf: str):
        def at(e: int) -> str:
            r = int(np.searchsorted(gallery.offsets, e, side="right") - 1)
            return f"{where(r)}.Gallery[{e - gallery.offsets[r]}].{leaf}"

        return at

    q_names, q_table = _strings(query.leaves["imname"], q_where("imname"))
    parts["qname"].append(np.asarray(q_table, dtype=str)[q_names] if q_table else q_names)
    parts["qbox"].append(_boxes(query.leaves["idlocate"], q_where("idlocate"), False)[1])
    ids, id_table = _strings(query.leaves["idname"], q_where("idname"))
    numbers = np.asarray([_parse_idname(t) for t in id_table], dtype=np.int64)
    bad = numbers[ids] < 0 if len(ids) else np.zeros(0, dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AnnotationError(
            f"{q_where('idname')(i)}: identity name {id_table[ids[i]]!r} is not of the form "
            "'p<number>'"
        )
    parts["qid"].append(numbers[ids] if len(ids) else np.zeros(0, dtype=np.int64))
    parts["count"].append(np.diff(gallery.offsets))
    if gallery.offsets[-1]:
        g_names, g_table = _strings(gallery.leaves["imname"], g_where("imname"))
        remap = np.asarray([table.setdefault(t, len(table)) for t in g_table], dtype=np.int64)
        parts["gname"].append(remap[g_names])
        has, g_boxes = _boxes(gallery.leaves["idlocate"], g_where("idlocate"), True)
        parts["has"].append(has)
        boxes.append(g_boxes)


def pool_indices(pf: ProtocolFile, gallery_index: dict[str, int]) -> np.ndarray:
    """(E,) index in the pool of every gallery entry of ``pf``; an entry outside the pool is an
    error naming the file and the entry."""
    table = np.asarray([gallery_index.get(str(n), -1) for n in pf.names], dtype=np.int64)
    indices = table[pf.gallery_names] if len(pf.gallery_names) else np.zeros(0, np.int64)
    if (indices < 0).any():
        e = int(np.flatnonzero(indices < 0)[0])
        image = str(pf.names[pf.gallery_names[e]])
        raise AnnotationError(
            f"{pf.where(*pf.entry_location(e))}: gallery image {image!r} is not in pool.mat"
        )
    return indices


def query_galleries(
    name: str, pf: ProtocolFile, query_indices: np.ndarray, gallery_index: dict[str, int]
) -> QueryGalleries:
    """The protocol variant ``name`` of a protocol file: its galleries and positives (boxes
    ``XYXY_ABS``) as indices into the gallery images ``gallery_index`` maps names to."""
    bounds = pf.gallery_offsets[1:-1]
    galleries = np.split(pool_indices(pf, gallery_index), bounds)
    has = np.split(pf.gallery_has_box, bounds)
    located = np.concatenate([[0], np.cumsum(pf.gallery_has_box)])[pf.gallery_offsets]
    boxes = np.split(xywh_to_xyxy(pf.gallery_boxes), located[1:-1])
    positives = [(g[h], b) for g, h, b in zip(galleries, has, boxes)]
    return QueryGalleries(
        name=name, query_indices=query_indices, galleries=galleries, positives=positives
    )


def _parse_idname(text: str) -> int:
    match = _IDNAME.match(text)
    return int(match.group(1)) if match else -1


def _kind(column: LeafColumn, i: int) -> str:
    cls = int(column.classes[i])
    name = {1: "cell", 2: "struct", 4: "char"}.get(cls, "numeric")
    return f"a {name} array of shape {tuple(column.shapes[i].tolist())}"


def _strings(column: LeafColumn, where) -> tuple[np.ndarray, list[str]]:
    """Indices into the column's distinct texts of its (M,) one-line char values."""
    ok = (column.classes == 4) & (column.shapes[:, 0] == 1) & (column.shapes[:, 1] >= 1)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise AnnotationError(f"{where(i)}: expected a string, got {_kind(column, i)}")
    return column.text_ids, column.texts


def _boxes(column: LeafColumn, where, allow_empty: bool) -> tuple[np.ndarray, np.ndarray]:
    """(M,) has-box mask and the (P, 4) boxes of the column's 4-number (or empty) values."""
    counts = np.diff(column.offsets)
    numeric = (column.classes >= 6) & (column.classes <= 15)
    has = numeric & (counts == 4)
    ok = has | (numeric & (counts == 0) & allow_empty)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise AnnotationError(f"{where(i)}: expected a box of 4 numbers, got {_kind(column, i)}")
    starts = column.offsets[:-1][has]
    values = column.values[starts[:, None] + np.arange(4)[None, :]] if len(starts) else None
    return has, values if values is not None else np.zeros((0, 4), dtype=np.float64)
