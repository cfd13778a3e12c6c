"""From mask files to training annotations: matching masks to labelled person boxes (hand
computed IoU / containment; none, two or an unlabelled box: skipped and named), the
deterministic mask-fraction subsets, the union of a person's pieces, and the mapper: masks go
through the flip and resize with the boxes."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from maskguided_testutils import labelme_file, shape, write_json

from maskguided import (
    MaskGuidedDatasetMapper,
    MatchRule,
    build_training_masks,
    match_instances,
    person_segmentation,
    read_labelme_dir,
    select_mask_subset,
)
from maskguided.mask_records import MaskInstance, MaskPiece
from maskguided.matching import box_iou_containment
from person_search.data.mappers import PersonSearchDatasetMapper


def _instance(box, where="f: group_id 1") -> MaskInstance:
    x0, y0, x1, y1 = box
    polygon = [x0, y0, x1, y0, x1, y1, x0, y1]
    return MaskInstance((MaskPiece(polygon, tuple(map(float, box)), where),), where)


def test_box_iou_and_containment_by_hand():
    iou, inside = box_iou_containment(
        np.array([0.0, 0, 10, 10]), np.array([[0.0, 0, 10, 20], [5, 5, 15, 15], [20, 20, 30, 30]])
    )
    np.testing.assert_allclose(iou, [100 / 200, 25 / 175, 0.0])
    np.testing.assert_allclose(inside, [1.0, 0.25, 0.0])


def test_match_by_iou_then_containment_never_guessed():
    boxes = np.array([[0.0, 0, 20, 60], [40, 0, 60, 60], [0, 0, 60, 60], [100, 0, 120, 60]])
    pids = [3, 4, -1, 5]
    rule = MatchRule(min_iou=0.5, min_containment=0.9)
    instances = [
        _instance([1, 1, 20, 58], "a"),  # IoU 0.92 with box 0 (and 0.31 with box 2)
        _instance([40, 0, 60, 30], "b"),  # IoU 0.5 with box 1: matched at the threshold
        _instance([5, 5, 15, 15], "c"),  # inside boxes 0 and 2, IoU < 0.5 with both: ambiguous
        _instance([200, 0, 220, 60], "d"),  # nowhere
        _instance([0, 0, 60, 59], "e"),  # the unlabelled person's box
        _instance([102, 20, 112, 30], "f"),  # only inside box 3: its visible part
    ]
    matched, issues = match_instances(instances, boxes, pids, rule)
    assert {k: [i.where for i in v] for k, v in matched.items()} == {0: ["a"], 1: ["b"], 3: ["f"]}
    reasons = {i.where: i.reason for i in issues}
    assert reasons["c"] == (
        "mask box [5.0, 5.0, 15.0, 15.0] matches 2 person boxes by containment >= 0.9: "
        "0 (containment 1.00), 2 (containment 1.00)"
    )
    assert reasons["d"].startswith("mask box [200.0, 0.0, 220.0, 60.0] matches no person box")
    assert reasons["e"].endswith(
        "matches the box of unlabelled person 2 (masks train labelled ones)"
    )
    _, issues = match_instances([_instance([0, 0, 5, 5])], np.zeros((0, 4)), [], rule)
    assert issues[0].reason.endswith("the image has no person box")
    with pytest.raises(ValueError, match="min_iou must be in"):
        MatchRule(min_iou=0.0)


def test_mask_subsets_are_deterministic_portions():
    train = [f"s{i}.jpg" for i in range(100)]
    annotated = set(train[::4])  # 25 annotated images
    assert select_mask_subset(train, annotated, -1.0, 0) == train[::4]
    ten = select_mask_subset(train, annotated, 0.10, seed=3)
    assert len(ten) == 10 and ten == select_mask_subset(train, annotated, 0.10, seed=3)
    # one image from each portion of 2 or 3 consecutive annotated images, in training order
    ordered = train[::4]
    bounds = [(j * 25) // 10 for j in range(11)]
    for j, image in enumerate(ten):
        assert image in ordered[bounds[j] : bounds[j + 1]]
    assert select_mask_subset(train, annotated, 0.10, seed=4) != ten  # the seed matters
    key = "INPUT.MASKGUIDED.IMAGE_FRACTION"
    with pytest.raises(ValueError, match=f"{key}=0.3 asks for 30 training images .* only 25"):
        select_mask_subset(train, annotated, 0.3, 0)
    with pytest.raises(ValueError, match=f"{key}=0.001 selects no image"):
        select_mask_subset(train, annotated, 0.001, 0)
    with pytest.raises(ValueError, match=f"{key}=1.5: use -1"):
        select_mask_subset(train, annotated, 1.5, 0)


def test_person_segmentation_unions_pieces():
    a, b = _instance([0, 0, 4, 4]), _instance([2, 2, 8, 8])
    assert person_segmentation([a, b], 10, 10) == [
        [0, 0, 4, 0, 4, 4, 0, 4],
        [2, 2, 8, 2, 8, 8, 2, 8],
    ]
    mask = np.zeros((10, 10), np.uint8, order="F")
    mask[6:9, 0:3] = 1
    rle = mask_util.encode(mask)
    rle_piece = MaskPiece({"size": [10, 10], "counts": rle["counts"].decode()}, (0, 6, 3, 9), "r")
    merged = person_segmentation([a, MaskInstance((rle_piece,), "r")], 10, 10)
    decoded = mask_util.decode({"size": [10, 10], "counts": merged["counts"].encode()})
    assert decoded[6:9, 0:3].all() and decoded[1:3, 1:3].all() and decoded.sum() == 9 + 16


def _record(name: str, boxes, pids, size=(100, 80)) -> dict:
    return {
        "file_name": f"/data/Image/SSM/{name}",
        "image_id": name,
        "height": size[0],
        "width": size[1],
        "annotations": [
            {"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "person_id": p}
            for b, p in zip(boxes, pids)
        ],
    }


def test_build_training_masks_matches_merges_and_reports(tmp_path):
    folder = tmp_path / "labelme"
    write_json(
        str(folder / "s1.json"),
        labelme_file(
            "s1.jpg",
            [
                shape([[10, 10], [30, 10], [30, 40], [10, 40]], group_id=1),
                shape([[10, 45], [30, 45], [30, 60], [10, 60]]),  # same person, drawn apart
                shape([[50, 10], [70, 10], [70, 60], [50, 60]], group_id=2),  # unlabelled box
                shape([[2, 80], [20, 80], [20, 98]], group_id=3),  # in the image, outside every box
            ],
        ),
    )
    write_json(
        str(folder / "other.json"), labelme_file("zz.jpg", [shape([[1, 1], [9, 1], [9, 9]])])
    )
    dicts = [
        _record("s0.jpg", [[0, 0, 10, 10]], [1]),
        _record("s1.jpg", [[8, 8, 32, 62], [48, 8, 72, 62]], [1, -1]),
    ]
    masks = read_labelme_dir(str(folder))
    rule = MatchRule()
    out = build_training_masks(dicts, masks, rule=rule, fraction=-1, seed=0, polygon_only=True)
    assert list(out.segmentations) == ["s1.jpg"] and list(out.segmentations["s1.jpg"]) == [0]
    assert len(out.segmentations["s1.jpg"][0]) == 2  # the two pieces of person 0
    assert (out.annotated_images, out.masked_persons) == (1, 1)
    reasons = sorted(i.reason for i in out.issues)
    assert reasons[0] == "image 'zz.jpg' is not a training image"
    assert reasons[1].startswith("mask box [2.0, 80.0, 20.0, 98.0] matches no person box")
    assert "unlabelled person 1" in reasons[2]
    assert {i.where for i in out.issues if "mask box" in i.reason} == {
        f"{folder / 's1.json'}: group_id 2",
        f"{folder / 's1.json'}: group_id 3",
    }
    wrong_size = [_record("s1.jpg", [[8, 8, 32, 62]], [1], size=(50, 80))]
    with pytest.raises(ValueError, match=r"s1.json: annotated as 80x100, but .*s1.jpg is 80x50"):
        build_training_masks(wrong_size, masks, rule=rule, fraction=-1, seed=0, polygon_only=True)
    twice = [dicts[1], {**dicts[1], "file_name": "/other/s1.jpg"}]
    with pytest.raises(ValueError, match="two training images are named 's1.jpg'"):
        build_training_masks(twice, masks, rule=rule, fraction=-1, seed=0, polygon_only=True)


def _mapper(person_masks, flip: bool) -> MaskGuidedDatasetMapper:
    augmentations = [T.ResizeShortestEdge(50, 1000)]  # the 100x80 image -> 63x50
    if flip:
        augmentations.append(T.RandomFlip(prob=1.0, horizontal=True))
    return MaskGuidedDatasetMapper(
        True,
        person_masks=person_masks,
        augmentations=augmentations,
        image_format="RGB",
        use_instance_mask=True,
        instance_mask_format="polygon",
    )


@pytest.mark.parametrize("flip", [False, True])
def test_mapper_masks_stay_aligned_with_boxes(tmp_path, flip):
    import cv2

    image_path = tmp_path / "s1.jpg"
    cv2.imwrite(str(image_path), np.full((100, 80, 3), 128, np.uint8))
    record = _record("s1.jpg", [[10, 10, 30, 60], [50, 10, 70, 60]], [1, 2])
    record["file_name"] = str(image_path)
    # Person 0's mask fills the left half of its box; person 1 has none.
    person_masks = {"s1.jpg": {0: [[10.0, 10, 20, 10, 20, 60, 10, 60]]}}
    out = _mapper(person_masks, flip)(record)
    inst = out["instances"]
    assert out["image"].shape[1:] == (63, 50)
    assert inst.gt_has_mask.tolist() == [True, False]
    box = inst.gt_boxes.tensor[0]
    expected_box = np.array([10, 10, 30, 60]) * [50 / 80, 63 / 100, 50 / 80, 63 / 100]
    if flip:
        expected_box = np.array(
            [50 - expected_box[2], expected_box[1], 50 - expected_box[0], expected_box[3]]
        )
    np.testing.assert_allclose(box.numpy(), expected_box, atol=1e-4)
    mask = inst.gt_masks[[0]].polygons[0][0].reshape(-1, 2)
    xs = np.sort(np.unique(mask[:, 0]))
    # The mask is the half of the box on the person's original left: after a flip, its right.
    half = (
        np.array([box[0], (box[0] + box[2]) / 2])
        if not flip
        else np.array([(box[0] + box[2]) / 2, box[2]])
    )
    np.testing.assert_allclose(xs, half, atol=1e-4)
    np.testing.assert_allclose([mask[:, 1].min(), mask[:, 1].max()], [box[1], box[3]], atol=1e-4)
    # Without masks for the image, every person gets the empty placeholder.
    out = _mapper({}, flip)(record)
    assert out["instances"].gt_has_mask.tolist() == [False, False]


def test_mapper_refuses_masks_without_gt_masks():
    with pytest.raises(ValueError, match="makes no gt_masks"):
        MaskGuidedDatasetMapper(
            True, person_masks={"a": {0: []}}, augmentations=[], image_format="RGB"
        )
    assert issubclass(MaskGuidedDatasetMapper, PersonSearchDatasetMapper)
