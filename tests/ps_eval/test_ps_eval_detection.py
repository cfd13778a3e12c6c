"""Detection AP / recall with mutual-best matching, all persons and labelled persons only."""

import numpy as np
import pytest
from detectron2.structures import BoxMode
from ps_eval_helpers import detections, emb

from person_search.evaluation.detection_metrics import GalleryGroundTruth, evaluate_detection
from person_search.evaluation.search_ranking import GalleryDetections


def _case():
    # image A: g0 (labelled) and g1 (unlabelled); image B: g2 (labelled), nothing detected;
    # image C: nobody, one detection.
    gt = GalleryGroundTruth(
        offsets=[0, 2, 3, 3],
        boxes=[[0, 0, 10, 10], [20, 0, 30, 10], [0, 0, 10, 10]],
        person_ids=[5, -1, 7],
    )
    dets = detections(
        [
            [
                ([0, 0, 10, 10], 0.9, emb(0)),  # d0: IoU 1 with g0
                ([1, 0, 11, 10], 0.8, emb(0)),  # d1: IoU .818 with g0, but g0's best is d0
                ([20, 0, 30, 10], 0.7, emb(0)),  # d2: g1
                ([50, 50, 60, 60], 0.4, emb(0)),  # d3: nobody, under 0.5
            ],
            [],
            [([0, 0, 5, 5], 0.95, emb(0))],  # d4: nobody
        ]
    )
    return gt, dets


def test_all_persons():
    gt, dets = _case()
    r = evaluate_detection(gt, dets, det_thresh=0.5)
    # .95F .9T .8F .7T: AP_sklearn = 1/2 (1/2 + 2/4) = 1/2; recall 2/3 -> AP 1/3
    assert (r.count_gt, r.count_tp) == (3, 2)
    assert r.recall == pytest.approx(2 / 3)
    assert r.ap == pytest.approx(1 / 3)


def test_labelled_only_skips_images_without_labelled_person():
    gt, dets = _case()
    r = evaluate_detection(gt, dets, det_thresh=0.5, labelled_only=True)
    # image C skipped; image A vs g0 only: .9T .8F .7F -> AP_sklearn 1; recall 1/2 -> AP 1/2
    assert (r.count_gt, r.count_tp) == (2, 1)
    assert r.ap == pytest.approx(0.5)


def test_threshold_and_mutual_best():
    gt, dets = _case()
    r = evaluate_detection(gt, dets, det_thresh=0.85)
    # .95F .9T: AP_sklearn 1/2; recall 1/3 -> 1/6
    assert r.ap == pytest.approx(1 / 6) and r.count_tp == 1
    # a detection best for g1 but overlapping g0 more: matched to nobody
    gt2 = GalleryGroundTruth([0, 2], [[0, 0, 10, 10], [6, 0, 16, 10]], [1, 2])
    dets2 = detections([[([0, 0, 10, 10], 0.9, emb(0)), ([3, 0, 13, 10], 0.8, emb(0))]])
    # d1: IoU(g0) = 70/130 = .54, IoU(g1) = 70/130 = .54 (tie -> first gt g0, whose best is d0)
    r2 = evaluate_detection(gt2, dets2, det_thresh=0.5)
    assert r2.count_tp == 1 and r2.recall == pytest.approx(0.5)


def test_ground_truth_from_dataset_dicts():
    dicts = [
        {"image_id": "b.jpg", "annotations": []},
        {
            "image_id": "a.jpg",
            "annotations": [
                {"bbox": [0, 0, 10, 10], "bbox_mode": BoxMode.XYXY_ABS, "person_id": 3},
                {"bbox": [5, 5, 9, 9], "bbox_mode": BoxMode.XYXY_ABS, "person_id": -1},
            ],
        },
        {"image_id": "a.jpg", "query_index": 0, "query_box": [0, 0, 1, 1]},  # ignored
    ]
    gt = GalleryGroundTruth.from_dataset_dicts(dicts, ["a.jpg", "b.jpg"])
    np.testing.assert_array_equal(gt.offsets, [0, 2, 2])
    np.testing.assert_array_equal(gt.labelled().offsets, [0, 1, 1])
    with pytest.raises(ValueError, match="c.jpg"):
        GalleryGroundTruth.from_dataset_dicts(dicts, ["a.jpg", "c.jpg"])
    dicts[1]["annotations"][0]["bbox_mode"] = BoxMode.XYWH_ABS
    with pytest.raises(ValueError, match="XYXY_ABS"):
        GalleryGroundTruth.from_dataset_dicts(dicts, ["a.jpg", "b.jpg"])


def test_inconsistent_arrays_are_refused():
    box = [[0.0, 0.0, 10.0, 10.0]]
    with pytest.raises(ValueError, match="GalleryGroundTruth: offsets must rise from 0 to 1"):
        GalleryGroundTruth([0, 2, 1], box, [1])
    with pytest.raises(ValueError, match="GalleryGroundTruth: 1 person ids but 2 boxes"):
        GalleryGroundTruth([0, 1], box * 2, [1])
    with pytest.raises(ValueError, match="GalleryDetections: offsets must rise from 0 to 1"):
        GalleryDetections([1, 1], box, [0.9], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="GalleryDetections: 1 scores but boxes"):
        GalleryDetections([0, 1], box, [0.9], [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="non-finite detection scores"):
        GalleryDetections([0, 1], box, [float("nan")], [[1.0, 0.0]])
