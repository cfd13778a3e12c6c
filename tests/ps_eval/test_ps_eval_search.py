"""Search metrics on hand-made protocols; every expected value is computed by hand in comments."""

import numpy as np
import pytest
from ps_eval_helpers import QUERY_EMB, detections, emb, protocol, variant

from person_search.evaluation.array_ops import expand_ranges, paired_iou
from person_search.evaluation.search_metrics import (
    average_precision,
    evaluate_search,
    search_iou_thresholds,
    summarize_search,
)

QBOX = [10.0, 10.0, 60.0, 110.0]
GT_A = [0.0, 0.0, 100.0, 200.0]
GT_C = [50.0, 50.0, 150.0, 250.0]
GT_D = [0.0, 0.0, 40.0, 80.0]


# ----------------------------------------------------------------------------- building blocks
def test_average_precision_hand_values():
    # ranks: T, F, T, F -> precisions at the positives 1 and 2/3 -> AP = (1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # ties: {0.8: T,F,F} is one threshold (precision 1/3, recall 1/2), then {0.1: T}
    # (precision 2/4, recall 1): AP = 1/2 * 1/3 + 1/2 * 1/2 = 5/12
    assert average_precision([0.8, 0.8, 0.8, 0.1], [1, 0, 0, 1]) == pytest.approx(5 / 12)
    # the order of tied entries does not matter
    assert average_precision([0.8, 0.1, 0.8, 0.8], [0, 1, 0, 1]) == pytest.approx(5 / 12)
    assert average_precision([0.5, 0.5], [1, 1]) == 1.0
    assert average_precision([0.5, 0.2], [0, 0]) == 0.0
    assert average_precision([], []) == 0.0
    with pytest.raises(ValueError, match="finite"):
        average_precision([np.nan, 0.1], [1, 0])


def test_average_precision_matches_sklearn_on_random_ties():
    from sklearn import metrics  # in requirements.txt: the reference must not be skipped

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        scores = rng.integers(0, 6, n) / 5.0  # many ties
        labels = rng.random(n) < 0.3
        if not labels.any():
            labels[rng.integers(n)] = True
        expected = metrics.average_precision_score(labels, scores)
        assert average_precision(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_iou_thresholds_for_small_boxes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 20, 40], [5, 5, 15, 35]], dtype=np.float64)
    # 10x10: 100 / (20*20) = 0.25; 20x40: 800 / (30*50) = 0.533 -> 0.5; 10x30: 300/(20*40)
    np.testing.assert_allclose(search_iou_thresholds(boxes), [0.25, 0.5, 0.375])


def test_paired_iou_and_expand_ranges():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]], dtype=np.float64)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 0, 0]], dtype=np.float64)
    np.testing.assert_allclose(paired_iou(a, b), [1.0, 50 / 150, 0.0])
    np.testing.assert_array_equal(expand_ranges([3, 0, 7], [5, 0, 8]), [3, 4, 7])
    assert expand_ranges([], []).size == 0


# ------------------------------------------------------------------------ an explicit gallery
def _cuhk_like(gallery=(1, 2, 3, 4), positives=None):
    """Image 0 holds the query; images 1 and 3 hold the person, image 4 too (never detected)."""
    dets = detections(
        [
            [(QBOX, 0.99, emb(1.0))],  # q.jpg: the query person itself
            [(GT_A, 0.9, emb(0.75)), ([300, 0, 400, 200], 0.9, emb(0.875))],  # a.jpg
            [([0, 0, 50, 100], 0.9, emb(0.625)), ([100, 0, 150, 100], 0.3, emb(0.5))],  # b.jpg
            # c.jpg: two detections on the person (IoU 0.818 and 1): the more similar is the TP
            [([60, 50, 160, 250], 0.9, emb(0.25)), (GT_C, 0.8, emb(0.375))],
            [],  # d.jpg: no detection
        ]
    )
    if positives is None:
        positives = [(1, GT_A), (3, GT_C), (4, GT_D)]
    v = variant("gallery_4", [0], [list(gallery)], [positives])
    p = protocol(["q.jpg", "a.jpg", "b.jpg", "c.jpg", "d.jpg"], [("q.jpg", QBOX, 7, -1)], [v])
    return p, dets


def _one(p, dets, thresh, **kw):
    res = evaluate_search(p, dets, QUERY_EMB[None], det_thresh=thresh, **kw)
    return next(iter(res.values()))


def test_explicit_gallery_hand_computed():
    p, dets = _cuhk_like()
    r = _one(p, dets, 0.5)
    # searched: .875 N, .75 T, .625 N, .375 T, .25 N (0.5 is under the score threshold);
    # count_gt = 3 (d.jpg has no detection), count_tp = 2.
    # sklearn AP = 1/2 * (1/2 + 2/4) = 1/2; times 2/3 -> 1/3.
    # (Had the less similar det on c.jpg been the TP: 1/2 (1/2 + 2/5) * 2/3 = 0.3.)
    assert r.average_precision[0] == pytest.approx(1 / 3)
    assert (r.count_gt[0], r.count_tp[0]) == (3, 2)
    # one negative (.875) above the best TP: top-1 miss, top-5 and top-10 hits
    np.testing.assert_array_equal(r.topk_hits[0], [False, True, True])


def test_detection_threshold_applies_at_evaluation():
    p, dets = _cuhk_like()
    # At 0.2 the .5 negative of b.jpg joins: .875N .75T .625N .5N .375T .25N
    # AP = 1/2 (1/2 + 2/5) * 2/3 = 0.3
    assert _one(p, dets, 0.2).average_precision[0] == pytest.approx(0.3)
    # At 0.95 only the query image's detection survives, and it is not searched: AP 0, no hits
    r = _one(p, dets, 0.95)
    assert r.average_precision[0] == 0.0 and not r.topk_hits[0].any()
    assert (r.count_gt[0], r.count_tp[0]) == (3, 0)


def test_duplicated_gallery_image_counts_gt_twice_scores_once():
    # a.jpg listed twice (with its positive twice), b.jpg once.
    p, dets = _cuhk_like(gallery=(1, 1, 2), positives=[(1, GT_A), (1, GT_A)])
    r = _one(p, dets, 0.5)
    # scored once: .875N .75T .625N -> sklearn AP 1/2; count_gt 2, count_tp 1 -> 1/4
    assert (r.count_gt[0], r.count_tp[0]) == (2, 1)
    assert r.average_precision[0] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "own_box",
    [QBOX, [12.0, 8.0, 58.0, 112.0]],  # the identical box; another box of the same person
    ids=["identical_box", "second_box"],
)
def test_query_image_listed_in_its_gallery_is_searched_as_listed(own_box):
    # CUHK-SYSU quirks: a TestG list naming the query image with a box of the query person.
    # The community's evaluation searches every listed image, so q.jpg is searched: its 1.0
    # detection (IoU >= 0.84 with either box, threshold 0.5) is a TP ahead of a.jpg's:
    # 1.0T .875N .75T .625N -> precisions 1, 2/3 -> AP 5/6; count_gt 2, count_tp 2; top-1 hit.
    p, dets = _cuhk_like(gallery=(0, 1, 2), positives=[(0, own_box), (1, GT_A)])
    r = _one(p, dets, 0.5)
    assert (r.count_gt[0], r.count_tp[0]) == (2, 2)
    assert r.average_precision[0] == pytest.approx(5 / 6)
    np.testing.assert_array_equal(r.topk_hits[0], [True, True, True])


def test_query_image_excluded_when_the_protocol_builds_the_gallery():
    # No list (PRW, CUHK-SYSU full set): every gallery image but the query's own. The person is
    # in q.jpg (own, not searched, not counted) and a.jpg: .875N .75T then b.jpg .625N, c.jpg
    # .375N .25N -> AP 1/2; count_gt 1; top-1 miss, top-5 hit.
    v = variant("all", [0], None, [[(0, QBOX), (1, GT_A)]])
    p = protocol(["q.jpg", "a.jpg", "b.jpg", "c.jpg", "d.jpg"], [("q.jpg", QBOX, 7, -1)], [v])
    r = _one(p, _cuhk_like()[1], 0.5)
    assert (r.count_gt[0], r.count_tp[0]) == (1, 1)
    assert r.average_precision[0] == pytest.approx(0.5)
    np.testing.assert_array_equal(r.topk_hits[0], [False, True, True])


def test_person_never_detected_gives_zero():
    p, dets = _cuhk_like(gallery=(1, 2, 4), positives=[(4, GT_D)])
    r = _one(p, dets, 0.5)
    assert r.average_precision[0] == 0.0
    assert (r.count_gt[0], r.count_tp[0]) == (1, 0)
    assert not r.topk_hits[0].any()


def test_positives_outside_the_gallery_are_ignored():
    p, dets = _cuhk_like(gallery=(1, 2), positives=[(1, GT_A), (3, GT_C)])
    r = _one(p, dets, 0.5)
    # c.jpg is not searched: .875N .75T .625N, count_gt 1 -> 1/2
    assert (r.count_gt[0], r.average_precision[0]) == (1, pytest.approx(0.5))


def test_similarity_ties_and_pessimistic_topk():
    dets = detections(
        [
            [(GT_A, 0.9, emb(0.5))],  # the person, similarity .5
            [([0, 0, 9, 9], 0.9, emb(0.5, flip_from=8)), ([0, 0, 5, 5], 0.9, emb(0.25))],
            [([0, 0, 9, 9], 0.9, emb(0.875, flip_from=k)) for k in range(4)],
        ]
    )
    ids = ["a.jpg", "b.jpg", "c.jpg"]
    v1 = variant("tie", [0], [[0, 1]], [[(0, GT_A)]])
    r = _one(protocol(ids, [("x.jpg", QBOX, 1, -1)], [v1]), dets, 0.5)
    # {.5: T, N} one threshold, precision 1/2 -> AP 1/2; the tied negative defeats top-1
    assert r.average_precision[0] == pytest.approx(0.5)
    np.testing.assert_array_equal(r.topk_hits[0], [False, True, True])
    v2 = variant("tie5", [0], [[0, 1, 2]], [[(0, GT_A)]])
    r = _one(protocol(ids, [("x.jpg", QBOX, 1, -1)], [v2]), dets, 0.5)
    # 4 x .875 N, then {.5: T, N}: precision 1/6 -> AP 1/6; 5 negatives >= .5: top-5 miss
    assert r.average_precision[0] == pytest.approx(1 / 6)
    np.testing.assert_array_equal(r.topk_hits[0], [False, False, True])


def test_small_box_iou_rule():
    small_gt, big_gt = [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 100.0, 100.0]
    dets = detections(
        [
            [([0, 0, 10, 3], 0.9, emb(0.5))],  # IoU 0.3 with the 10x10 gt (threshold 0.25)
            [([0, 0, 100, 30], 0.9, emb(0.5))],  # IoU 0.3 with the 100x100 gt (threshold 0.5)
        ]
    )
    v = variant("v", [0, 1], [[0], [1]], [[(0, small_gt)], [(1, big_gt)]])
    p = protocol(["a.jpg", "b.jpg"], [("x.jpg", QBOX, 1, -1), ("y.jpg", QBOX, 2, -1)], [v])
    res = evaluate_search(p, dets, np.stack([QUERY_EMB, QUERY_EMB]), det_thresh=0.5)["v"]
    np.testing.assert_array_equal(res.count_tp, [1, 0])
    np.testing.assert_allclose(res.average_precision, [1.0, 0.0])


# ------------------------------------------------------------------- PRW: all frames but own
def _prw_like():
    gt = [0.0, 0.0, 50.0, 100.0]
    dets = detections(
        [
            [(gt, 0.9, emb(1.0))],  # frame 0 (camera 1): the query's own frame
            [(gt, 0.9, emb(0.875))],  # frame 1 (camera 1): the person
            [(gt, 0.9, emb(0.25))],  # frame 2 (camera 2): the person
            [(gt, 0.9, emb(0.5))],  # frame 3 (camera 2): someone else
            [(gt, 0.9, emb(0.0))],  # frame 4 (camera 1): someone else
        ]
    )
    positives = [[(0, gt), (1, gt), (2, gt)], [(4, gt)]]
    v_all = variant("all", [0, 1], None, positives)
    v_cross = variant("cross_camera", [0, 1], None, positives, cross_camera=True)
    queries = [("f0.jpg", gt, 3, 1), ("f3.jpg", gt, 9, 2)]
    ids = ["f0.jpg", "f1.jpg", "f2.jpg", "f3.jpg", "f4.jpg"]
    return protocol(ids, queries, [v_all, v_cross], cameras=[1, 1, 2, 2, 1]), dets


def test_prw_all_frames_and_cross_camera():
    p, dets = _prw_like()
    q = np.stack([QUERY_EMB, QUERY_EMB])
    res = evaluate_search(p, dets, q, det_thresh=0.5)
    r_all, r_cross = res["all"], res["cross_camera"]
    # query 0, all: frames 1-4 (own frame 0 excluded, its positive ignored):
    # .875T .5N .25T 0N -> AP (1 + 2/3)/2 * 2/2 = 5/6
    assert r_all.count_gt[0] == 2
    assert r_all.average_precision[0] == pytest.approx(5 / 6)
    np.testing.assert_array_equal(r_all.topk_hits[0], [True, True, True])
    # query 0, cross-camera: frames 2, 3 only: .5N .25T -> AP 1/2, top-1 miss
    assert r_cross.count_gt[0] == 1
    assert r_cross.average_precision[0] == pytest.approx(0.5)
    np.testing.assert_array_equal(r_cross.topk_hits[0], [False, True, True])
    # query 1 (camera 2): its only occurrence (frame 4, camera 1) is kept cross-camera
    assert r_cross.count_gt[1] == 1
    # query 1, all: frames 0,1,2,4: 1.0N .875N .25N 0T -> AP 1/4
    assert r_all.average_precision[1] == pytest.approx(0.25)


def test_query_without_gallery_occurrence_is_skipped_and_counted():
    p, dets = _prw_like()
    v = variant("same_cam_only", [0], None, [[(1, [0.0, 0.0, 50.0, 100.0])]], cross_camera=True)
    r = evaluate_search(p, dets, np.stack([QUERY_EMB] * 2), det_thresh=0.5, variants=[v])[v.name]
    summary = r.summary()
    assert r.count_gt[0] == 0 and np.isnan(r.average_precision[0])
    assert summary["num_queries"] == 0 and summary["num_skipped"] == 1


def test_cross_camera_needs_camera_ids():
    p, dets = _prw_like()
    p.queries[0] = type(p.queries[0])("f0.jpg", p.queries[0].box, 3, -1)
    with pytest.raises(ValueError, match="camera id"):
        evaluate_search(p, dets, np.stack([QUERY_EMB] * 2), det_thresh=0.5)


def test_summary_percent_and_default_variant():
    p, dets = _prw_like()
    res = evaluate_search(p, dets, np.stack([QUERY_EMB] * 2), det_thresh=0.5)
    out = summarize_search(res, "all")
    assert out["mAP"] == pytest.approx(100 * (5 / 6 + 1 / 4) / 2)
    assert out["top1"] == pytest.approx(50.0)
    assert out["cross_camera/mAP"] == pytest.approx(100 * res["cross_camera"].summary()["mAP"])
    assert list(out)[:4] == ["mAP", "top1", "top5", "top10"]


def test_bad_inputs_raise_clear_errors():
    p, dets = _cuhk_like()
    with pytest.raises(ValueError, match="query_embeddings"):
        evaluate_search(p, dets, np.zeros((2, 16)), det_thresh=0.5)
    with pytest.raises(ValueError, match="embedding sizes"):
        evaluate_search(p, dets, np.zeros((1, 8)), det_thresh=0.5)
    with pytest.raises(KeyError, match="gallery_4"):
        evaluate_search(p, dets, QUERY_EMB[None], det_thresh=0.5, variants=["nope"])
    bad = variant("bad", [0], [[0, 9]], [[(1, GT_A)]])
    with pytest.raises(ValueError, match="gallery index"):
        evaluate_search(p, dets, QUERY_EMB[None], det_thresh=0.5, variants=[bad])
