"""CUHK-SYSU loader on tiny hand-written MAT files (nesting as loadmat returns the real ones)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io
from ps_data_helpers import write_jpeg

from person_search.data.datasets import load_cuhk_sysu_test, load_cuhk_sysu_train
from person_search.data.datasets.matfile import AnnotationError

# image -> x, y, w, h boxes stored in Images.mat. s1's second box has w = 0 (invalid).
BOXES = {
    "s1.jpg": [[10, 20, 30, 40], [50, 60, 0, 10], [5, 5, 10, 20]],
    "s2.jpg": [[1, 2, 3, 4]],
    "s3.jpg": [[1, 1, 10, 10], [20, 2, 8, 16]],
    "s4.jpg": [[2, 2, 5, 5], [30, 3, 6, 12]],
    "s5.jpg": [[4, 4, 6, 6]],
}
POOL = ["s3.jpg", "s4.jpg", "s5.jpg"]


def _struct(rows: list[dict]) -> np.ndarray:
    arr = np.zeros((1, len(rows)), dtype=[(k, object) for k in rows[0]])
    for j, row in enumerate(rows):
        for k, v in row.items():
            arr[0, j][k] = v
    return arr


def _cell(values: list) -> np.ndarray:
    arr = np.empty((len(values), 1), dtype=object)
    for i, v in enumerate(values):
        arr[i, 0] = v
    return arr


def _box(b) -> np.ndarray:
    return np.asarray([b], dtype=np.float64)


def _query_record(imname, box, idname, gallery):
    return {
        "Query": {"imname": imname, "idlocate": _box(box), "ishard": 0.0, "idname": idname},
        "Gallery": _struct(
            [
                {
                    "imname": g,
                    "idlocate": _box(b) if b is not None else np.zeros((0, 0)),
                    "ishard": 0.0,
                }
                for g, b in gallery
            ]
        ),
    }


# Query p9 in s3; its gallery holds s4 (with the person) twice -- a real-file quirk kept as is --
# and s5 without it. Query p12 in s4 lists its own image (another real quirk).
QUERIES = [
    _query_record(
        "s3.jpg",
        [1, 1, 10, 10],
        "p9",
        [("s4.jpg", [2, 2, 5, 5]), ("s4.jpg", [2, 2, 5, 5]), ("s5.jpg", None)],
    ),
    _query_record(
        "s4.jpg", [30, 3, 6, 12], "p12", [("s3.jpg", [20, 2, 8, 16]), ("s4.jpg", [30, 3, 6, 12])]
    ),
]


@pytest.fixture
def cuhk_root(tmp_path) -> str:
    root = tmp_path / "cuhk"
    for i, name in enumerate(BOXES):
        write_jpeg(str(root / "Image" / "SSM" / name), 60 + i, 80, seed=i)
    ann = root / "annotation"
    protocol = ann / "test" / "train_test"
    subset = ann / "test" / "subset"
    protocol.mkdir(parents=True)
    subset.mkdir(parents=True)
    img = _struct(
        [
            {
                "imname": name,
                "nAppear": float(len(boxes)),
                "box": _struct([{"idlocate": _box(b), "ishard": 0.0} for b in boxes]),
            }
            for name, boxes in BOXES.items()
        ]
    )
    scipy.io.savemat(ann / "Images.mat", {"Img": img})
    scipy.io.savemat(ann / "pool.mat", {"pool": _cell(POOL)})
    # One training identity (index 0) in s1 (first box) and s2.
    train = _cell(
        [
            {
                "idname": "p7",
                "nAppear": 2.0,
                "scene": _struct(
                    [
                        {"imname": "s1.jpg", "idlocate": _box([10, 20, 30, 40]), "ishard": 0.0},
                        {"imname": "s2.jpg", "idlocate": _box([1, 2, 3, 4]), "ishard": 1.0},
                    ]
                ),
            }
        ]
    )
    scipy.io.savemat(protocol / "Train.mat", {"Train": train})
    for n in (50, 100):
        scipy.io.savemat(protocol / f"TestG{n}.mat", {f"TestG{n}": _struct(QUERIES)})
    scipy.io.savemat(
        subset / "Occlusion.mat", {"Occlusion1": _struct([dict(QUERIES[1], occlusion=0.5)])}
    )
    scipy.io.savemat(subset / "Resolution.mat", {"Test_Size": _struct([QUERIES[0]])})
    return str(root)


def test_train_boxes_pids_and_invalid_dropped(cuhk_root):
    dicts, num_ids, _ = load_cuhk_sysu_train(cuhk_root)
    assert num_ids == 1
    assert [d["image_id"] for d in dicts] == ["s1.jpg", "s2.jpg"]
    s1 = dicts[0]
    assert (s1["height"], s1["width"]) == (60, 80)  # read from the JPEG header
    assert s1["camera_id"] == -1
    assert [a["bbox"] for a in s1["annotations"]] == [[10, 20, 40, 60], [5, 5, 15, 25]]
    assert [a["person_id"] for a in s1["annotations"]] == [0, -1]
    assert [a["person_id"] for a in dicts[1]["annotations"]] == [0]


def test_test_protocol(cuhk_root):
    dicts, protocol, _ = load_cuhk_sysu_test(cuhk_root, protocol_name="hand")
    gallery = dicts[: len(POOL)]
    queries = dicts[len(POOL) :]
    assert [d["image_id"] for d in gallery] == POOL
    # Test annotations carry original ids, from the protocol's query and gallery boxes.
    assert [a["person_id"] for a in gallery[0]["annotations"]] == [9, 12]
    assert [a["person_id"] for a in gallery[1]["annotations"]] == [9, 12]
    assert [a["person_id"] for a in gallery[2]["annotations"]] == [-1]
    assert queries[0] == {
        "file_name": os.path.join(cuhk_root, "Image", "SSM", "s3.jpg"),
        "image_id": "s3.jpg",
        "height": 62,
        "width": 80,
        "camera_id": -1,
        "query_index": 0,
        "query_box": [1.0, 1.0, 11.0, 11.0],
        "person_id": 9,
    }
    assert protocol.name == "hand" and protocol.default_variant == "gallery_100"
    assert [q.person_id for q in protocol.queries] == [9, 12]
    g100 = protocol.variant("gallery_100")
    assert g100.galleries[0].tolist() == [1, 1, 2]  # duplicates kept as in the file
    assert g100.positives[0][0].tolist() == [1, 1]
    assert g100.positives[0][1].tolist() == [[2, 2, 7, 7], [2, 2, 7, 7]]
    assert g100.galleries[1].tolist() == [0, 1]  # its own image kept: the evaluator decides
    np.testing.assert_array_equal(protocol.variant("gallery_50").galleries[0], [1, 1, 2])
    every = protocol.variant("all")
    assert every.galleries is None
    assert every.positives[0][0].tolist() == [1]  # s4 once; not the query's own image s3
    assert every.positives[1][0].tolist() == [0]
    assert every.positives[1][1].tolist() == [[20, 2, 28, 18]]
    occ = protocol.variant("occlusion")
    assert occ.query_indices.tolist() == [1]
    assert protocol.variant("resolution").query_indices.tolist() == [0]
    with pytest.raises(KeyError, match="gallery_4000"):
        protocol.variant("gallery_4000")


def test_inconsistent_testg_files(cuhk_root):
    """Found when the dataset is loaded (before any inference), naming the file."""
    path = os.path.join(cuhk_root, "annotation", "test", "train_test", "TestG50.mat")
    swapped = [QUERIES[1], QUERIES[0]]
    scipy.io.savemat(path, {"TestG50": _struct(swapped)})
    with pytest.raises(AnnotationError, match="TestG50.mat: its queries differ"):
        load_cuhk_sysu_test(cuhk_root)


def test_subset_query_not_in_main_list(cuhk_root):
    path = os.path.join(cuhk_root, "annotation", "test", "subset", "Resolution.mat")
    stray = _query_record("s5.jpg", [4, 4, 6, 6], "p99", [("s3.jpg", None)])
    scipy.io.savemat(path, {"Test_Size": _struct([stray])})
    with pytest.raises(AnnotationError, match=r"Resolution.mat: Test_Size\[0\]: query \(s5.jpg"):
        load_cuhk_sysu_test(cuhk_root)


def test_only_smaller_gallery_files(cuhk_root):
    os.remove(os.path.join(cuhk_root, "annotation", "test", "train_test", "TestG100.mat"))
    _, protocol, _ = load_cuhk_sysu_test(cuhk_root)
    assert protocol.default_variant == "gallery_50"
    assert "gallery_100" not in protocol.variant_loaders


def test_missing_file(cuhk_root):
    os.remove(os.path.join(cuhk_root, "annotation", "pool.mat"))
    with pytest.raises(FileNotFoundError, match="pool.mat"):
        load_cuhk_sysu_train(cuhk_root)


def test_missing_image(cuhk_root):
    os.remove(os.path.join(cuhk_root, "Image", "SSM", "s2.jpg"))
    with pytest.raises(FileNotFoundError, match="s2.jpg"):
        load_cuhk_sysu_train(cuhk_root)


def test_missing_variable(cuhk_root):
    scipy.io.savemat(os.path.join(cuhk_root, "annotation", "pool.mat"), {"pools": _cell(POOL)})
    with pytest.raises(AnnotationError, match=r"pool.mat: missing variable\(s\) \['pool'\]"):
        load_cuhk_sysu_test(cuhk_root)


def test_missing_field(cuhk_root):
    path = os.path.join(cuhk_root, "annotation", "test", "train_test", "Train.mat")
    scipy.io.savemat(path, {"Train": _cell([{"idname": "p7", "scenes": 0.0}])})
    with pytest.raises(
        AnnotationError, match=r"Train.mat: Train\[0\]: record has no field 'scene'"
    ):
        load_cuhk_sysu_train(cuhk_root)


def test_bad_idname(cuhk_root):
    bad = [_query_record("s3.jpg", [1, 1, 10, 10], "nine", [("s4.jpg", None)])]
    path = os.path.join(cuhk_root, "annotation", "test", "train_test", "TestG100.mat")
    scipy.io.savemat(path, {"TestG100": _struct(bad)})
    with pytest.raises(
        AnnotationError, match=r"TestG100.mat: TestG100\[0\].Query.idname: .*'nine'"
    ):
        load_cuhk_sysu_test(cuhk_root)


def test_strict_sizes(cuhk_root):
    with pytest.raises(AnnotationError, match="expected 18184 images, found 5"):
        load_cuhk_sysu_train(cuhk_root, strict_sizes=True)


def test_squeezed_and_cell_nesting(cuhk_root):
    """Images.mat written as a cell of 1x1 structs and pool as a row: same result."""
    ann = os.path.join(cuhk_root, "annotation")
    cells = _cell(
        [
            {
                "imname": name,
                "nAppear": float(len(boxes)),
                "box": _struct([{"idlocate": _box(b), "ishard": 0.0} for b in boxes]),
            }
            for name, boxes in BOXES.items()
        ]
    )
    expected = load_cuhk_sysu_train(cuhk_root)
    scipy.io.savemat(os.path.join(ann, "Images.mat"), {"Img": cells})
    scipy.io.savemat(os.path.join(ann, "pool.mat"), {"pool": _cell(POOL).T})
    assert load_cuhk_sysu_train(cuhk_root) == expected


def test_all_six_gallery_sizes(cuhk_root):
    """Every TestG<N>.mat present becomes a variant gallery_<N>, read when it is asked for."""
    protocol_dir = os.path.join(cuhk_root, "annotation", "test", "train_test")
    for n in (500, 1000, 2000, 4000):
        scipy.io.savemat(
            os.path.join(protocol_dir, f"TestG{n}.mat"), {f"TestG{n}": _struct(QUERIES)}
        )
    _, protocol, _ = load_cuhk_sysu_test(cuhk_root)
    sizes = (50, 100, 500, 1000, 2000, 4000)
    assert set(protocol.variant_loaders) == {f"gallery_{n}" for n in sizes} | {
        "occlusion",
        "resolution",
        "all",
    }
    assert protocol.default_variant == "gallery_100"
    for n in sizes:
        assert protocol.variant(f"gallery_{n}").galleries[0].tolist() == [1, 1, 2]
    # A file with the wrong variable name fails when the dataset is loaded, naming file and name.
    scipy.io.savemat(os.path.join(protocol_dir, "TestG2000.mat"), {"TestG200": _struct(QUERIES)})
    with pytest.raises(
        AnnotationError, match=r"TestG2000.mat: missing variable\(s\) \['TestG2000'\]"
    ):
        load_cuhk_sysu_test(cuhk_root)
