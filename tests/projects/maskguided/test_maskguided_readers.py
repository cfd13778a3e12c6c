"""The mask readers on hand-written files: a labelme directory and a COCO instances JSON
(polygons, RLE), with a polygon outside the image, a self-intersecting polygon, non-polygon
shapes, crowd annotations and empty / malformed files (each skip or error names the file and
element)."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util
import pytest
from maskguided_testutils import labelme_file, shape, write_json

from maskguided import read_coco_instances, read_labelme_dir, read_labelme_file
from maskguided.mask_records import crossing_edges, polygon_piece

SQUARE = [[10, 10], [30, 10], [30, 40], [10, 40]]
BOW_TIE = [[10, 10], [40, 40], [40, 10], [10, 30]]  # edges 0 and 2 cross (lobes unequal)
OUTSIDE = [[100, 120], [130, 120], [130, 150]]  # beyond the 80x100 image


def test_labelme_groups_shapes_and_reports_bad_ones(tmp_path):
    folder = tmp_path / "labelme"
    path = write_json(
        str(folder / "s1.json"),
        labelme_file(
            "s1.jpg",
            [
                shape(SQUARE, group_id=1),
                shape([[12, 42], [28, 42], [28, 60]], group_id=1, label="bag"),  # same person
                shape([[50, 10], [70, 10], [70, 60], [50, 60]]),  # no group: its own piece
                shape(BOW_TIE, group_id=2),
                shape(OUTSIDE, group_id=3),
                shape([[1, 1], [5, 5]], kind="rectangle"),
            ],
        ),
    )
    image, issues = read_labelme_file(path)
    assert (image.image_name, image.height, image.width) == ("s1.jpg", 100, 80)
    assert len(image.instances) == 2
    person1, loose = image.instances
    assert len(person1.pieces) == 2 and person1.where == f"{path}: group_id 1"
    np.testing.assert_allclose(person1.box, [10, 10, 30, 60])
    np.testing.assert_allclose(loose.box, [50, 10, 70, 60])
    reasons = {i.where.split(": ")[1]: i.reason for i in issues}
    assert reasons["shapes[3] ('person')"].startswith("self-intersecting polygon (edges 0 and 2")
    assert reasons["shapes[4] ('person')"] == "polygon outside the 80x100 image"
    assert reasons["shapes[5] ('person')"] == "shape_type 'rectangle' is not a polygon"
    assert all(i.where.startswith(path) for i in issues)
    masks = read_labelme_dir(str(folder))
    assert list(masks.images) == ["s1.jpg"] and len(masks.issues) == 3


def test_labelme_empty_and_malformed_files_are_errors_naming_them(tmp_path):
    folder = tmp_path / "labelme"
    folder.mkdir()
    empty = folder / "s2.json"
    empty.write_text("")
    with pytest.raises(ValueError, match=f"{empty}: empty file"):
        read_labelme_dir(str(folder))
    empty.write_text("{not json")
    with pytest.raises(ValueError, match=f"{empty}: not valid JSON"):
        read_labelme_file(str(empty))
    payload = labelme_file("s2.jpg", [])
    del payload["imageHeight"]
    write_json(str(empty), payload)
    with pytest.raises(ValueError, match="without 'imageHeight'"):
        read_labelme_file(str(empty))
    write_json(str(empty), labelme_file("s2.jpg", [{"label": "person"}]))
    with pytest.raises(ValueError, match=r"shapes\[0\]: a shape is an object with 'points'"):
        read_labelme_file(str(empty))
    write_json(str(empty), labelme_file("s2.jpg", [shape([["a", 1], [2, 3], [4, 5]])]))
    with pytest.raises(ValueError, match="not x, y numbers"):
        read_labelme_file(str(empty))


def test_labelme_directory_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_labelme_dir(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no labelme"):
        read_labelme_dir(str(tmp_path))
    write_json(str(tmp_path / "a.json"), labelme_file("s1.jpg", [shape(SQUARE)]))
    write_json(str(tmp_path / "b.json"), labelme_file("s1.jpg", [shape(SQUARE)]))
    with pytest.raises(ValueError, match="annotated twice"):
        read_labelme_dir(str(tmp_path))


def _coco(annotations: list[dict]) -> dict:
    return {
        "images": [
            {"id": 1, "file_name": "Image/SSM/s1.jpg", "height": 100, "width": 80},
            {"id": 2, "file_name": "s2.jpg", "height": 100, "width": 80},
        ],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }


def test_coco_polygons_rle_and_skips(tmp_path):
    mask = np.zeros((100, 80), dtype=np.uint8, order="F")
    mask[20:50, 40:60] = 1
    rle = mask_util.encode(mask)
    rle_str = {"size": [100, 80], "counts": rle["counts"].decode("ascii")}
    path = write_json(
        str(tmp_path / "instances.json"),
        _coco(
            [
                {"id": 1, "image_id": 1, "segmentation": [sum(SQUARE, []), sum(BOW_TIE, [])]},
                {"id": 2, "image_id": 1, "segmentation": [sum(OUTSIDE, [])]},
                {"id": 3, "image_id": 2, "segmentation": rle_str, "iscrowd": 0},
                {"id": 4, "image_id": 2, "segmentation": rle_str, "iscrowd": 1},
                {"id": 5, "image_id": 2, "segmentation": {"size": [50, 80], "counts": "0"}},
            ]
        ),
    )
    masks = read_coco_instances(path)
    s1, s2 = masks.images["s1.jpg"], masks.images["s2.jpg"]
    assert len(s1.instances) == 1 and len(s1.instances[0].pieces) == 1  # the bow tie dropped
    np.testing.assert_allclose(s1.instances[0].box, [10, 10, 30, 40])
    (rle_instance,) = s2.instances
    piece = rle_instance.pieces[0]
    assert not piece.is_polygon and piece.box == (40.0, 20.0, 60.0, 50.0)
    reasons = sorted(str(i) for i in masks.issues)
    assert reasons == sorted(
        [
            f"{path}: annotation id 1 (s1.jpg).segmentation[1]: self-intersecting polygon "
            "(edges 0 and 2 cross)",
            f"{path}: annotation id 2 (s1.jpg).segmentation[0]: polygon outside the 80x100 image",
            f"{path}: annotation id 4 (s2.jpg): crowd annotation (iscrowd 1), not one person",
            f"{path}: annotation id 5 (s2.jpg): RLE of size [50, 80], the image is 100x80 ([h, w])",
        ]
    )
    # Uncompressed RLE (counts as a list) reads the same.
    uncompressed = {"size": [100, 80], "counts": [2040, 30, 70, 30, 5830]}
    path2 = write_json(
        str(tmp_path / "b.json"), _coco([{"id": 1, "image_id": 2, "segmentation": uncompressed}])
    )
    (inst,) = read_coco_instances(path2).images["s2.jpg"].instances
    assert inst.pieces[0].box[0] == 20.0  # column 20 (2040 = 20 * 100 + 40 zeros first)


def test_coco_errors_name_the_file(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text("  \n")
    with pytest.raises(ValueError, match=f"{path}: empty file"):
        read_coco_instances(str(path))
    with pytest.raises(FileNotFoundError, match="not found"):
        read_coco_instances(str(tmp_path / "nope.json"))
    write_json(str(path), {"annotations": []})
    with pytest.raises(ValueError, match="without an 'images' list"):
        read_coco_instances(str(path))
    write_json(str(path), _coco([{"id": 9, "image_id": 7, "segmentation": []}]))
    with pytest.raises(ValueError, match="annotation id 9: image_id 7 is not in 'images'"):
        read_coco_instances(str(path))
    write_json(str(path), _coco([{"id": 9, "image_id": 1, "segmentation": "abc"}]))
    with pytest.raises(ValueError, match="annotation id 9 .*polygons or an RLE"):
        read_coco_instances(str(path))


@pytest.mark.parametrize(
    "points, crossing",
    [
        (SQUARE, None),
        (BOW_TIE, (0, 2)),
        # A traced outline going back along a one-pixel part: edges touch, none crosses.
        ([[0, 0], [4, 0], [4, 2], [6, 2], [4, 2], [4, 4], [0, 4]], None),
        ([[0, 0], [10, 0], [10, 10], [5, -5], [0, 10]], (0, 2)),
    ],
)
def test_crossing_edges(points, crossing):
    assert crossing_edges(np.asarray(points, dtype=np.float64)) == crossing


def test_polygon_piece_skips_degenerate_polygons():
    _, issue = polygon_piece([[0, 0], [5, 5]], "f: s", 10, 10)
    assert str(issue) == "f: s: polygon with 2 vertices (needs >= 3)"
    _, issue = polygon_piece([[0, 0], [5, 5], [9, 9]], "f: s", 10, 10)
    assert issue.reason == "polygon of zero area"
    piece, issue = polygon_piece([-5, -5, 5, -5, 5, 5], "f: s", 10, 10)  # flat list, clipped box
    assert issue is None and piece.box == (0.0, 0.0, 5.0, 5.0)
