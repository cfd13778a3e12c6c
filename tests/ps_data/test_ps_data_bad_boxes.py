"""One bad-box policy for the CUHK-SYSU and PRW loaders, one test per case, and the load
summary that reports what was dropped."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io
from test_ps_data_cuhk_handmade import BOXES, QUERIES, _box, _query_record, _struct, cuhk_root
from test_ps_data_prw_handmade import prw_root

from person_search.data.datasets import (
    load_cuhk_sysu_test,
    load_cuhk_sysu_train,
    load_prw_test,
    load_prw_train,
)
from person_search.data.datasets.load_checks import (
    DROP_NEGATIVE,
    DROP_OUTSIDE,
    DROP_ZERO_AREA,
)
from person_search.data.datasets.matfile import AnnotationError

__all__ = ["cuhk_root", "prw_root"]  # fixtures used here


def _write_images(root: str, boxes: dict) -> None:
    img = _struct(
        [
            {
                "imname": name,
                "nAppear": float(len(b)),
                "box": _struct([{"idlocate": _box(x), "ishard": 0.0} for x in b]),
            }
            for name, b in boxes.items()
        ]
    )
    scipy.io.savemat(os.path.join(root, "annotation", "Images.mat"), {"Img": img})


def _write_prw_rows(root: str, frame: str, rows, variable: str = "box_new") -> None:
    path = os.path.join(root, "annotations", f"{frame}.jpg.mat")
    scipy.io.savemat(path, {variable: np.asarray(rows, dtype=np.float64)})


# ---- CUHK-SYSU ----


def test_cuhk_zero_area_annotation_dropped_and_counted(cuhk_root):
    """s1 holds a w = 0 box: dropped, counted in the summary (train split)."""
    split = load_cuhk_sysu_train(cuhk_root)
    assert split.summary.dropped == {DROP_ZERO_AREA: 1}
    assert split.summary.boxes == 3 and split.summary.images == 2
    assert "1 (zero width or height)" in str(split.summary)


def test_cuhk_negative_annotation_is_an_error_naming_file_row_values(cuhk_root):
    boxes = dict(BOXES, **{"s2.jpg": [[1, 2, 3, 4], [9, 9, -4, 5]]})
    _write_images(cuhk_root, boxes)
    with pytest.raises(
        AnnotationError,
        match=r"Images.mat: Img\[1\] \(s2.jpg\).box\[1\].idlocate: box x, y, w, h = "
        r"\[9, 9, -4, 5\] has a negative width",
    ):
        load_cuhk_sysu_train(cuhk_root)
    split = load_cuhk_sysu_train(cuhk_root, drop_negative_boxes=True)  # opted in: counted drop
    assert split.summary.dropped == {DROP_ZERO_AREA: 1, DROP_NEGATIVE: 1}
    assert [len(d["annotations"]) for d in split.dicts] == [2, 1]


def test_cuhk_nan_annotation_is_an_error(cuhk_root):
    _write_images(cuhk_root, dict(BOXES, **{"s5.jpg": [[4, np.nan, 6, 6]]}))
    for drop in (False, True):
        with pytest.raises(AnnotationError, match=r"Img\[4\] \(s5.jpg\).* is not finite"):
            load_cuhk_sysu_test(cuhk_root, drop_negative_boxes=drop)


def test_cuhk_query_box_with_negative_width_is_an_error(cuhk_root):
    """Was accepted as an inverted box (its person lost the id); now named, even when negative
    annotation boxes are opted into being dropped (a query cannot be dropped)."""
    bad = [_query_record("s3.jpg", [11, 1, -10, 10], "p9", [("s4.jpg", [2, 2, 5, 5])])]
    path = os.path.join(cuhk_root, "annotation", "test", "train_test", "TestG100.mat")
    scipy.io.savemat(path, {"TestG100": _struct(bad + QUERIES[1:])})
    with pytest.raises(
        AnnotationError,
        match=r"TestG100.mat: TestG100\[0\].Query.idlocate: box x, y, w, h = \[11, 1, -10, 10\] "
        "has a negative width",
    ):
        load_cuhk_sysu_test(cuhk_root, drop_negative_boxes=True)


def test_cuhk_dropped_box_that_was_a_positive_is_named(cuhk_root):
    """s4's box of person 9 has zero height in Images.mat: dropped, and the summary names the
    protocol position that no longer has a labelled box."""
    boxes = dict(BOXES, **{"s4.jpg": [[2, 2, 5, 0], [30, 3, 6, 12]]})
    _write_images(cuhk_root, boxes)
    queries = [
        _query_record("s3.jpg", [1, 1, 10, 10], "p9", [("s4.jpg", [2, 2, 5, 0]), ("s5.jpg", None)]),
        QUERIES[1],
    ]
    for n in (50, 100):
        path = os.path.join(cuhk_root, "annotation", "test", "train_test", f"TestG{n}.mat")
        scipy.io.savemat(path, {f"TestG{n}": _struct(queries)})
    split = load_cuhk_sysu_test(cuhk_root)
    assert split.summary.dropped == {DROP_ZERO_AREA: 1}  # s4's (s1's is a training image)
    notes = "\n".join(split.summary.notes)
    assert "query 0 (person 9) in s4.jpg [2.0, 2.0, 5.0, 0.0] (dropped: zero width" in notes
    assert "gallery boxes of" in notes and "TestG100[0].Gallery[0]" in notes  # kept as listed
    # The protocol keeps the listed position: the positive counts, as the files state it.
    g100 = split.protocol.variant("gallery_100")
    assert g100.positives[0][0].tolist() == [1]
    assert split.protocol.variant("all").positives[0][0].tolist() == []  # no labelled box


# ---- PRW ----


def test_prw_zero_area_row_dropped_and_counted(prw_root):
    _write_prw_rows(prw_root, "c2s1_000002", [[1, 0, 0, 8, 8], [932, 3, 3, 0, 4]], "anno_file")
    split = load_prw_train(prw_root)
    assert split.summary.dropped == {DROP_ZERO_AREA: 1}
    assert [a["original_person_id"] for a in split.dicts[1]["annotations"]] == [1]


def test_prw_negative_row_is_an_error_naming_file_row_values(prw_root):
    _write_prw_rows(prw_root, "c3s1_000004", [[7, 10, 10, 6, 12], [8, 20, -2, 4, -8]])
    with pytest.raises(
        AnnotationError,
        match=r"c3s1_000004.jpg.mat: box_new row 2: box x, y, w, h = \[20, -2, 4, -8\] has a "
        "negative width or height",
    ):
        load_prw_test(prw_root)


def test_prw_dropped_row_of_a_query_identity_is_named(prw_root):
    """Opted in, the negative row of person 8 (a query) is dropped: counted, and named because
    that frame is one positive less (it was silently dropped before)."""
    _write_prw_rows(prw_root, "c3s1_000005", [[8, 1, 1, -4, 4]])
    split = load_prw_test(prw_root, drop_negative_boxes=True)
    assert split.summary.dropped == {DROP_NEGATIVE: 1}
    assert any(
        "c3s1_000005.jpg.mat row 1 (person 8): negative width or height" in n
        for n in split.summary.notes
    )
    assert split.protocol.variant("all").positives[1][0].tolist() == []


def test_prw_row_outside_the_image_after_clipping(prw_root):
    _write_prw_rows(prw_root, "c1s2_000003", [[7, 1, 2, 3, 4], [-2, -9, 5, 5, 5]])
    split = load_prw_test(prw_root)
    assert split.summary.dropped == {DROP_OUTSIDE: 1}
    assert len(split.dicts[0]["annotations"]) == 1


def test_prw_nan_row_is_an_error(prw_root):
    _write_prw_rows(prw_root, "c1s2_000003", [[7, 1, np.nan, 3, 4]])
    with pytest.raises(AnnotationError, match=r"c1s2_000003.jpg.mat: box_new row 1: .* finite"):
        load_prw_test(prw_root, drop_negative_boxes=True)


@pytest.mark.parametrize(
    "line,message",
    [
        ("8 20 -2 -4 8 c3s1_000004", r"query_info.txt:2: query box .* negative width"),
        ("8 20 nan 4 8 c3s1_000004", r"query_info.txt:2: query box .* not finite"),
        ("-2 20 2 4 8 c3s1_000004", r"query_info.txt:2: the person id must be an integer"),
        ("8 20 2 4 8", r"query_info.txt:2: expected 'pid x y w h frame_name'"),
    ],
)
def test_prw_bad_query_lines(line, message, prw_root):
    with open(os.path.join(prw_root, "query_info.txt"), "w", newline="") as f:
        f.write(f"7 1.0 2.0 3.0 4.0 c1s2_000003\r\n{line}\r\n")
    with pytest.raises(AnnotationError, match=message):
        load_prw_test(prw_root, drop_negative_boxes=True)


def test_prw_non_utf8_and_repeated_query_lines(prw_root):
    path = os.path.join(prw_root, "query_info.txt")
    with open(path, "wb") as f:
        f.write(b"7 1 2 3 4 c1s2_000003\r\n8 20 2 4 8 c3s1_\xff00004\r\n")
    with pytest.raises(AnnotationError, match=r"query_info.txt:2: not valid UTF-8"):
        load_prw_test(prw_root)
    with open(path, "wb") as f:
        f.write(b"7 1 2 3 4 c1s2_000003\r\n8 20 2 4 8 c3s1_000004\r\n7 1 2 3 4 c1s2_000003\r\n")
    split = load_prw_test(prw_root)
    assert len(split.protocol.queries) == 3  # kept as listed ...
    assert any("query_info.txt:3 repeats line 1" in n for n in split.summary.notes)  # ... named


def test_summary_counts(prw_root):
    split = load_prw_test(prw_root)
    s = split.summary
    assert (s.images, s.boxes, s.identities, s.queries) == (3, 5, 2, 2)
    assert s.dropped == {} and s.notes == []
    assert str(s).startswith(f"PRW test split at {prw_root}: 3 images, 5 boxes, 2 identities")
