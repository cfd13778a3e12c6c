"""PRW loader on tiny hand-written annotation files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io
from ps_data_helpers import write_jpeg

from person_search.data.datasets import load_prw_test, load_prw_train
from person_search.data.datasets.matfile import AnnotationError
from person_search.data.datasets.prw import prw_camera_id, read_prw_boxes

# frame -> (variable name, rows [id, x, y, w, h]); -2 = unlabelled.
FRAMES = {
    "c1s1_000001": ("box_new", [[932, 10, 10, 20, 40], [-2, -5, 3, 10, 20], [5, 1, 1, 5, 5]]),
    "c2s1_000002": ("anno_file", [[1, 0, 0, 8, 8], [932, 3, 3, 4, 4]]),
    "c1s2_000003": ("box_new", [[7, 1, 2, 3, 4], [-2, 5, 5, 5, 5]]),
    "c3s1_000004": ("anno_previous", [[7, 10, 10, 6, 12], [8, 20, -2, 4, 8]]),
    "c3s1_000005": ("box_new", [[8, 1, 1, 4, 4]]),
}
TRAIN = ["c1s1_000001", "c2s1_000002"]
TEST = ["c1s2_000003", "c3s1_000004", "c3s1_000005"]
# CRLF line ends and a blank last line, as in the real file.
QUERY_INFO = "7 1.0 2.0 3.0 4.0 c1s2_000003\r\n8 20 -2 4 8 c3s1_000004\r\n\r\n"


def _cell(values: list) -> np.ndarray:
    arr = np.empty((len(values), 1), dtype=object)
    for i, v in enumerate(values):
        arr[i, 0] = v
    return arr


@pytest.fixture
def prw_root(tmp_path) -> str:
    root = tmp_path / "prw"
    (root / "annotations").mkdir(parents=True)
    for i, (name, (variable, rows)) in enumerate(FRAMES.items()):
        write_jpeg(str(root / "frames" / f"{name}.jpg"), 48, 64, seed=i)
        scipy.io.savemat(
            root / "annotations" / f"{name}.jpg.mat", {variable: np.asarray(rows, np.float64)}
        )
    scipy.io.savemat(root / "frame_train.mat", {"img_index_train": _cell(TRAIN)})
    scipy.io.savemat(root / "frame_test.mat", {"img_index_test": _cell(TEST)})
    (root / "query_info.txt").write_bytes(QUERY_INFO.encode())
    return str(root)


def test_camera_id():
    assert prw_camera_id("c3s2_012345") == 3
    assert prw_camera_id("c6s1_000151.jpg") == 6
    with pytest.raises(AnnotationError, match="not of the form"):
        prw_camera_id("frame_01")


def test_train_relabel_clip_and_variables(prw_root):
    dicts, num_ids, _ = load_prw_train(prw_root)
    assert num_ids == 3  # ids {1, 5, 932} -> {0, 1, 2}, sized from the data
    assert [d["image_id"] for d in dicts] == ["c1s1_000001.jpg", "c2s1_000002.jpg"]
    assert [d["camera_id"] for d in dicts] == [1, 2]
    assert (dicts[0]["height"], dicts[0]["width"]) == (48, 64)
    first = dicts[0]["annotations"]
    assert [a["person_id"] for a in first] == [2, -1, 1]
    assert first[0]["bbox"] == [10, 10, 30, 50]  # x2 = x + w
    assert first[1]["bbox"] == [0, 3, 5, 23]  # x = -5 clipped to 0, right edge kept
    assert [a["person_id"] for a in dicts[1]["annotations"]] == [0, 2]  # anno_file read
    assert [a["original_person_id"] for a in first] == [932, -1, 5]  # PRW's id kept


def test_train_relabels_the_483_real_ids(prw_root):
    """The real training ids 1..478, 480..483 and 932: 483 identities, 932 -> 482, 480 -> 478."""
    real = [*range(1, 479), *range(480, 484), 932]
    rows = [[pid, 1 + pid % 50, 2, 5, 9] for pid in reversed(real)] + [[-2, 3, 3, 4, 4]]
    path = os.path.join(prw_root, "annotations", "c2s1_000002.jpg.mat")
    scipy.io.savemat(path, {"box_new": np.asarray(rows, np.float64)})
    dicts, num_ids, _ = load_prw_train(prw_root)
    assert num_ids == 483  # ids of c1s1_000001 (932, 5) are among them
    annos = dicts[1]["annotations"]
    relabel = {a["original_person_id"]: a["person_id"] for a in annos}
    assert relabel[1] == 0 and relabel[478] == 477 and relabel[480] == 478
    assert relabel[483] == 481 and relabel[932] == 482 and relabel[-1] == -1
    assert sorted(a["person_id"] for a in annos if a["person_id"] >= 0) == list(range(483))


def test_test_protocol(prw_root):
    dicts, protocol, _ = load_prw_test(prw_root)
    gallery, queries = dicts[:3], dicts[3:]
    assert [a["person_id"] for a in gallery[0]["annotations"]] == [7, -1]  # original ids
    assert gallery[1]["annotations"][1]["bbox"] == [20, 0, 24, 6]  # anno_previous, y clipped
    assert len(queries) == 2 and protocol.default_variant == "all"
    assert queries[1]["query_box"] == [20, 0, 24, 6]
    assert queries[1]["camera_id"] == 3 and queries[1]["person_id"] == 8
    assert queries[0]["image_id"] == "c1s2_000003.jpg"  # CRLF stripped from the frame name
    assert protocol.gallery_camera_ids.tolist() == [1, 3, 3]
    every = protocol.variant("all")
    assert every.galleries is None and not every.cross_camera
    assert every.positives[0][0].tolist() == [1]  # pid 7 elsewhere: frame 1 only
    assert every.positives[0][1].tolist() == [[10, 10, 16, 22]]
    assert every.positives[1][0].tolist() == [2]  # pid 8: not its own frame 1
    cross = protocol.variant("cross_camera")
    assert cross.cross_camera
    assert cross.positives[0][0].tolist() == [1]  # camera 3 != query camera 1
    assert cross.positives[1][0].tolist() == []  # the only other frame is camera 3 too


def test_box_variable_missing(prw_root):
    path = os.path.join(prw_root, "annotations", "c2s1_000002.jpg.mat")
    scipy.io.savemat(path, {"boxes": np.zeros((1, 5))})
    with pytest.raises(AnnotationError, match="c2s1_000002.jpg.mat: none of the variables"):
        load_prw_train(prw_root)


def test_annotation_file_missing(prw_root):
    os.remove(os.path.join(prw_root, "annotations", "c1s2_000003.jpg.mat"))
    with pytest.raises(FileNotFoundError, match="c1s2_000003.jpg.mat"):
        load_prw_test(prw_root)


def test_bad_matrix_shape(tmp_path):
    path = str(tmp_path / "a.jpg.mat")
    scipy.io.savemat(path, {"box_new": np.zeros((2, 4))})
    with pytest.raises(AnnotationError, match=r"a.jpg.mat: box_new must be an \(N, 5\)"):
        read_prw_boxes(path)
    scipy.io.savemat(path, {"box_new": np.asarray([[-3.0, 0, 0, 1, 1]])})
    with pytest.raises(AnnotationError, match="ids must be integers"):
        read_prw_boxes(path)
    scipy.io.savemat(path, {"box_new": np.zeros((0, 0))})
    ids, boxes = read_prw_boxes(path)
    assert ids.shape == (0,) and boxes.shape == (0, 4)


def test_malformed_query_line(prw_root):
    with open(os.path.join(prw_root, "query_info.txt"), "w") as f:
        f.write("7 1 2 3 4 c1s2_000003\n8 1 2 3 c3s1_000004\n")
    with pytest.raises(AnnotationError, match=r"query_info.txt:2: expected"):
        load_prw_test(prw_root)


def test_query_frame_not_in_test(prw_root):
    with open(os.path.join(prw_root, "query_info.txt"), "w") as f:
        f.write("7 1 2 3 4 c1s1_000001\n")
    with pytest.raises(AnnotationError, match="query_info.txt:1: query frame 'c1s1_000001.jpg'"):
        load_prw_test(prw_root)


def test_missing_split_variable(prw_root):
    scipy.io.savemat(os.path.join(prw_root, "frame_test.mat"), {"img_index": _cell(TEST)})
    with pytest.raises(AnnotationError, match=r"frame_test.mat: missing variable\(s\) \['img_in"):
        load_prw_test(prw_root)


def test_strict_sizes(prw_root):
    with pytest.raises(AnnotationError, match="expected 5704 train_frames, found 2"):
        load_prw_train(prw_root, strict_sizes=True)


def test_identity_twice_in_a_frame_counts_once(prw_root):
    """An annotation listing one identity twice in a frame: that frame is one positive."""
    path = os.path.join(prw_root, "annotations", "c3s1_000005.jpg.mat")
    rows = [[8, 1, 1, 4, 4], [8, 30, 1, 4, 8]]
    scipy.io.savemat(path, {"box_new": np.asarray(rows, np.float64)})
    _, protocol, _ = load_prw_test(prw_root)
    images, boxes = protocol.variant("all").positives[1]  # query pid 8 in frame 1
    assert images.tolist() == [2] and boxes.tolist() == [[1, 1, 5, 5]]
