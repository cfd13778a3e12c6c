"""The vectorised MAT reader and the protocol-file parser: same values as scipy.io.loadmat on
every encoding and nesting, scipy used (with a warning) where the reader stops, errors naming the
file."""

from __future__ import annotations

import itertools
import logging
import os
import struct

import numpy as np
import pytest
import scipy.io

from person_search.data.datasets.cuhk_protocol import ProtocolFile, parse_protocol_file
from person_search.data.datasets.matfile import AnnotationError, read_record_batches
from person_search.data.datasets.matv5 import MatFormatError, iter_record_batches, list_variables
from person_search.data.toy.protocol_writer import write_protocol_file

WANTED = {"Query": ("imname", "idlocate", "idname"), "Gallery": ("imname", "idlocate")}


def _protocol(seed: int = 0, queries: int = 7, size: int = 9, names: int = 30) -> ProtocolFile:
    """A random protocol: each gallery lists 1..3 positions of the person first."""
    rng = np.random.default_rng(seed)
    table = np.asarray([f"s{i}.jpg" for i in rng.choice(5000, names, replace=False)])
    positives = rng.integers(1, 4, queries)
    has = np.concatenate([np.arange(size) < k for k in positives])
    boxes = np.c_[rng.integers(0, 500, (has.sum(), 2)), rng.integers(1, 300, (has.sum(), 2))]
    qboxes = np.c_[rng.integers(0, 500, (queries, 2)), rng.integers(1, 300, (queries, 2))]
    return ProtocolFile(
        path="",
        variable=f"TestG{size}",
        query_names=table[rng.integers(0, names, queries)],
        query_boxes=qboxes.astype(np.float64),
        query_person_ids=rng.integers(1, 20000, queries),
        names=table,
        gallery_offsets=np.arange(queries + 1) * size,
        gallery_names=np.concatenate(
            [rng.choice(names, size, replace=False) for _ in range(queries)]
        ).astype(np.int32),
        gallery_has_box=has,
        gallery_boxes=boxes.astype(np.float64),
    )


def _same(expected: ProtocolFile, got: ProtocolFile) -> None:
    np.testing.assert_array_equal(got.query_names, expected.query_names)
    np.testing.assert_array_equal(got.query_boxes, expected.query_boxes)
    np.testing.assert_array_equal(got.query_person_ids, expected.query_person_ids)
    np.testing.assert_array_equal(got.gallery_offsets, expected.gallery_offsets)
    np.testing.assert_array_equal(
        got.names[got.gallery_names], expected.names[expected.gallery_names]
    )
    np.testing.assert_array_equal(got.gallery_has_box, expected.gallery_has_box)
    np.testing.assert_array_equal(got.gallery_boxes, expected.gallery_boxes)


def _scipy_parse(path: str, variable: str, monkeypatch) -> ProtocolFile:
    """Parse with the reader forced onto its scipy.io.loadmat path."""

    def unsupported(*args, **kwargs):
        raise MatFormatError("forced")

    with monkeypatch.context() as m:
        m.setattr("person_search.data.datasets.matfile.iter_record_batches", unsupported)
        return parse_protocol_file(path, variable)


@pytest.mark.parametrize(
    "chars,compact,empty",
    list(itertools.product(["utf8", "uint16"], [False, True], ["1x0", "0x0", "element"])),
)
def test_encodings_read_like_scipy(chars, compact, empty, tmp_path, monkeypatch, caplog):
    """Characters as UTF-8 or UTF-16, numbers as doubles or MATLAB's compact integers (small
    element format included), absent boxes as 1x0 / 0x0 / a 0-byte element: one result, equal
    to what the scipy.io.loadmat path reads, without falling back."""
    pf = _protocol()
    path = str(tmp_path / "TestG9.mat")
    write_protocol_file(pf, path, chars=chars, compact=compact, empty=empty)
    with caplog.at_level(logging.WARNING):
        got = parse_protocol_file(path, "TestG9")
    assert not caplog.records  # read by the vectorised reader
    _same(pf, got)
    _same(pf, _scipy_parse(path, "TestG9", monkeypatch))


def _struct(rows: list[dict], column: bool = False) -> np.ndarray:
    arr = np.zeros(
        (len(rows), 1) if column else (1, len(rows)), dtype=[(k, object) for k in rows[0]]
    )
    for j, row in enumerate(rows):
        for k, v in row.items():
            arr.reshape(-1)[j][k] = v
    return arr


def _records(pf: ProtocolFile, *, column: bool = False) -> list[dict]:
    rows = []
    empty = np.zeros((1, 0))
    box_index = np.cumsum(pf.gallery_has_box) - 1
    for q in range(pf.num_queries):
        gallery = []
        for e in range(pf.gallery_offsets[q], pf.gallery_offsets[q + 1]):
            box = pf.gallery_boxes[box_index[e]][None] if pf.gallery_has_box[e] else empty
            gallery.append({"imname": str(pf.names[pf.gallery_names[e]]), "idlocate": box})
            gallery[-1]["ishard"] = np.zeros((1, 1))
        query = {
            "imname": str(pf.query_names[q]),
            "idlocate": pf.query_boxes[q][None],
            "ishard": np.zeros((1, 1)),
            "idname": f"p{pf.query_person_ids[q]}",
        }
        rows.append({"Query": _struct([query]), "Gallery": _struct(gallery, column)})
    return rows


@pytest.mark.parametrize("layout", ["row", "column", "cell", "uncompressed", "extra_field"])
def test_nestings_written_by_scipy(layout, tmp_path, monkeypatch, caplog):
    """Struct arrays as rows or columns, records as a cell of 1x1 structs, uncompressed (v6)
    files, an extra record field: read without falling back, as the scipy path reads them."""
    pf = _protocol(seed=1)
    rows = _records(pf, column=layout == "column")
    if layout == "extra_field":
        rows = [dict(r, occlusion=np.asarray([[0.5]])) for r in rows]
    if layout == "cell":
        top = np.empty((len(rows), 1), dtype=object)
        for i, row in enumerate(rows):
            top[i, 0] = _struct([row])
    else:
        top = _struct(rows, column=layout == "column")
    path = str(tmp_path / "TestG9.mat")
    scipy.io.savemat(
        path, {"other": np.ones(3), "TestG9": top}, do_compression=layout != "uncompressed"
    )
    assert list_variables(path) == ["other", "TestG9"]
    with caplog.at_level(logging.WARNING):
        got = parse_protocol_file(path, "TestG9")
    assert not caplog.records
    _same(pf, got)
    _same(pf, _scipy_parse(path, "TestG9", monkeypatch))


def test_batches_split_records(tmp_path):
    """Records decoded in several batches give the same columns as one batch."""
    pf = _protocol(seed=2, queries=40, size=25)
    path = str(tmp_path / "TestG25.mat")
    write_protocol_file(pf, path)
    small = list(iter_record_batches(path, "TestG25", WANTED, batch_bytes=2000))
    assert len(small) > 5 and [b.start for b in small] == list(
        np.cumsum([0] + [b.count for b in small[:-1]])
    )
    (whole,) = iter_record_batches(path, "TestG25", WANTED)
    names = [
        t
        for b in small
        for t in np.asarray(b.columns["Gallery"].leaves["imname"].texts)[
            b.columns["Gallery"].leaves["imname"].text_ids
        ]
    ]
    leaf = whole.columns["Gallery"].leaves["imname"]
    assert names == list(np.asarray(leaf.texts)[leaf.text_ids])


def test_data_mimicking_element_tags_is_walked(tmp_path):
    """Box values whose bytes look like a matrix element's tags: the vectorised element search
    finds a false candidate, the chain check rejects it and that struct is walked element by
    element; the values are still right."""
    pf = _protocol(seed=3)
    fake = np.frombuffer(struct.pack("<IIII", 14, 48, 6, 8), dtype=np.float64)
    boxes = pf.gallery_boxes.copy()
    boxes[0, :2] = fake  # 8-byte aligned: the first two doubles of the first positive box
    pf = ProtocolFile(**{**pf.__dict__, "gallery_boxes": boxes})
    path = str(tmp_path / "TestG9.mat")
    write_protocol_file(pf, path)
    (batch,) = iter_record_batches(path, "TestG9", WANTED)
    leaf = batch.columns["Gallery"].leaves["idlocate"]
    np.testing.assert_array_equal(leaf.values[leaf.offsets[0] : leaf.offsets[0] + 2], fake)


def test_unsupported_layout_falls_back_with_a_warning(tmp_path, caplog):
    """A gallery stored as a cell of structs is beyond the vectorised reader: scipy.io.loadmat
    reads it (one warning naming the file), same values."""
    pf = _protocol(seed=4)
    rows = _records(pf)
    for row in rows:
        cell = np.empty((1, row["Gallery"].size), dtype=object)
        for j, entry in enumerate(row["Gallery"].reshape(-1)):
            cell[0, j] = _struct([{k: entry[k] for k in entry.dtype.names}])
        row["Gallery"] = cell
    path = str(tmp_path / "TestG9.mat")
    scipy.io.savemat(path, {"TestG9": _struct(rows)})
    with caplog.at_level(logging.WARNING):
        got = parse_protocol_file(path, "TestG9")
    assert len(caplog.records) == 1 and "TestG9.mat" in caplog.records[0].getMessage()
    _same(pf, got)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.97])
def test_truncated_file_names_the_file(keep, tmp_path):
    pf = _protocol(seed=5)
    path = str(tmp_path / "TestG9.mat")
    write_protocol_file(pf, path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    with pytest.raises(AnnotationError, match="TestG9.mat"):
        parse_protocol_file(path, "TestG9")


def test_missing_variable_and_file(tmp_path):
    pf = _protocol(seed=6)
    path = str(tmp_path / "TestG9.mat")
    write_protocol_file(pf, path)
    with pytest.raises(AnnotationError, match=r"TestG9.mat: missing variable\(s\) \['TestG50'\]"):
        parse_protocol_file(path, "TestG50")
    with pytest.raises(FileNotFoundError, match="nothing.mat"):
        list(read_record_batches(str(tmp_path / "nothing.mat"), "x", WANTED))


@pytest.mark.parametrize(
    "change,message",
    [
        ({"idname": "nine"}, r"TestG9\[2\].Query.idname: identity name 'nine'"),
        ({"idlocate": np.zeros((1, 3))}, r"TestG9\[2\].Query.idlocate: expected a box of 4"),
        ({"imname": np.ones((1, 1))}, r"TestG9\[2\].Query.imname: expected a string"),
        ({"idlocate": np.asarray([[1.0, 2, -3, 4]])}, r"TestG9\[2\].Query.idlocate: box .* negat"),
        ({"idlocate": np.asarray([[1.0, 2, 0, 4]])}, r"TestG9\[2\].Query.idlocate: box .* no area"),
        ({"idlocate": np.asarray([[1.0, np.nan, 3, 4]])}, r"TestG9\[2\].Query.idlocate: .* finite"),
    ],
)
def test_malformed_query_fields_name_file_and_record(change, message, tmp_path):
    pf = _protocol(seed=7)
    rows = _records(pf)
    query = {k: rows[2]["Query"][0, 0][k] for k in rows[2]["Query"].dtype.names}
    rows[2]["Query"] = _struct([dict(query, **change)])
    path = str(tmp_path / "TestG9.mat")
    scipy.io.savemat(path, {"TestG9": _struct(rows)})
    with pytest.raises(AnnotationError, match="TestG9.mat: " + message):
        parse_protocol_file(path, "TestG9")


def test_gallery_box_errors_name_the_entry(tmp_path):
    pf = _protocol(seed=8)
    rows = _records(pf)
    rows[3]["Gallery"][0, 1]["idlocate"] = np.asarray([[5.0, 5, 7]])
    path = str(tmp_path / "TestG9.mat")
    scipy.io.savemat(path, {"TestG9": _struct(rows)})
    with pytest.raises(AnnotationError, match=r"TestG9\[3\].Gallery\[1\].idlocate: expected a box"):
        parse_protocol_file(path, "TestG9")
    rows[3]["Gallery"][0, 1]["idlocate"] = np.asarray([[5.0, 5, 7, -1]])
    scipy.io.savemat(path, {"TestG9": _struct(rows)})
    with pytest.raises(AnnotationError, match=r"TestG9\[3\].Gallery\[1\].idlocate: box .*negat"):
        parse_protocol_file(path, "TestG9")


def test_missing_record_field(tmp_path):
    rows = [{"Query": r["Query"], "Galery": r["Gallery"]} for r in _records(_protocol(seed=9))]
    path = str(tmp_path / "TestG9.mat")
    scipy.io.savemat(path, {"TestG9": _struct(rows)})
    with pytest.raises(AnnotationError, match=r"TestG9\[0\]: record has no field 'Gallery'"):
        parse_protocol_file(path, "TestG9")


def test_non_utf8_name(tmp_path):
    """A name whose bytes are not UTF-8 (patched into an uncompressed file): an error naming the
    file, whichever reader meets it."""
    pf = _protocol(seed=10)
    path = str(tmp_path / "TestG9.mat")
    scipy.io.savemat(path, {"TestG9": _struct(_records(pf))}, do_compression=False)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    name = str(pf.query_names[0]).encode()
    at = data.index(name)
    data[at] = 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(
        AnnotationError, match="TestG9.mat: TestG9: a char value is not valid UTF-8"
    ):
        parse_protocol_file(path, "TestG9")


def test_reader_fields_are_as_documented(tmp_path):
    pf = _protocol(seed=11)
    path = str(tmp_path / "TestG9.mat")
    write_protocol_file(pf, path)
    (batch,) = iter_record_batches(path, "TestG9", WANTED)
    assert batch.fields == ("Query", "Gallery") and batch.count == pf.num_queries
    gallery = batch.columns["Gallery"]
    assert gallery.fields == ("imname", "idlocate", "ishard")
    assert set(gallery.leaves) == {"imname", "idlocate"}  # ishard not decoded
    np.testing.assert_array_equal(gallery.offsets, pf.gallery_offsets)
    shapes = gallery.leaves["idlocate"].shapes
    assert set(map(tuple, shapes.tolist())) == {(1, 4), (1, 0)}
    assert os.path.getsize(path) > 0
