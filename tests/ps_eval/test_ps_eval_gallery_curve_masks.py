"""The gallery-size curve (hand-computed points of a two-size protocol) and the compact box
masks of detections (packing, crop and paste, saved results files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ps_eval_helpers import QUERY_EMB, detections, emb, protocol, variant

from person_search.evaluation.detection_masks import DetectionMasks, box_masks, paste_box_mask
from person_search.evaluation.detection_metrics import GalleryGroundTruth
from person_search.evaluation.gallery_curve import gallery_size_curve, gallery_sizes
from person_search.evaluation.saved_results import (
    SavedSearchResults,
    load_search_results,
    save_search_results,
)

GT = [0.0, 0.0, 50.0, 100.0]


def _saved(variants, dets) -> SavedSearchResults:
    proto = protocol(
        ["g0.jpg", "g1.jpg", "g2.jpg"], [("q.jpg", GT, 1, -1)], variants, default=variants[0].name
    )
    gt = GalleryGroundTruth(
        np.array([0, 1, 2, 3]), np.array([GT] * 3, np.float64), np.array([1, 2, 3])
    )
    return SavedSearchResults(
        dataset_name="toy",
        protocol=proto,
        ground_truth=gt,
        detections=dets,
        query_embeddings=QUERY_EMB[None],
        settings={"det_thresh": 0.5, "cbgm_k1": None, "cbgm_k2": None},
    )


def _case() -> SavedSearchResults:
    """One query whose person is in g0; g1 holds a look-alike (sim 1.0 > the person's .75).
    Gallery 2 searches g0 and g2: the person ranks first (AP 1, top-1 hit); gallery 3 adds g1:
    it ranks second (AP 1/2, top-1 miss)."""
    dets = detections(
        [
            [(GT, 0.9, emb(0.75))],
            [(GT, 0.9, emb(1.0, 4))],
            [(GT, 0.9, emb(0.25))],
        ]
    )
    positives = [[(0, GT)]]
    return _saved(
        [
            variant("gallery_3", [0], [[0, 1, 2]], positives),
            variant("gallery_2", [0], [[0, 2]], positives),
            variant("occlusion", [0], [[0, 1, 2]], positives),
        ],
        dets,
    )


def test_gallery_curve_by_hand():
    saved = _case()
    assert gallery_sizes(saved.protocol.variant_loaders) == {2: "gallery_2", 3: "gallery_3"}
    points = gallery_size_curve(saved)
    assert [p.gallery_size for p in points] == [2, 3]
    assert [p.mAP for p in points] == pytest.approx([100.0, 50.0])
    assert [p.top1 for p in points] == [100.0, 0.0]
    assert [p.num_queries for p in points] == [1, 1]
    # A higher detection threshold drops the look-alike (score .9 < .95 drops everything).
    assert [p.mAP for p in gallery_size_curve(saved, det_thresh=0.95)] == [0.0, 0.0]


def test_gallery_curve_needs_gallery_variants():
    saved = _case()
    only = _saved([saved.protocol.variant("occlusion")], saved.detections)
    with pytest.raises(ValueError, match="no gallery_<N> variant .*'occlusion'"):
        gallery_size_curve(only)


def test_box_masks_pack_crop_and_paste():
    masks = torch.zeros(2, 40, 60, dtype=torch.bool)
    masks[0, 10:30, 20:30] = True  # left half of box 0
    masks[1, 0:40, 40:60] = True  # all of box 1
    boxes = torch.tensor([[20.0, 10, 40, 30], [40, 0, 60, 40]])
    crops = box_masks(masks, boxes, size=8)
    assert crops.shape == (2, 8, 8) and crops[1].all()
    assert crops[0][:, :4].all() and not crops[0][:, 4:].any()
    pasted = paste_box_mask(crops[0], [20.0, 10, 40, 30], 40, 60)
    truth = masks[0].numpy()
    # bilinear paste: the mask back in place, at most its 4 corner pixels rounded off
    assert not (pasted & ~truth).any() and (truth & ~pasted).sum() <= 4
    assert pasted[11:29, 21:29].all()
    kept = np.array([True, False, True])
    packed = DetectionMasks.from_per_image([(kept, crops), (np.zeros(1, bool), crops[:0])], size=8)
    assert packed.rows.tolist() == [0, -1, 1, -1] and packed.bits.shape == (2, 8)
    np.testing.assert_array_equal(packed.mask(2), crops[1])
    assert packed.mask(1) is None and packed.mask(3) is None
    with pytest.raises(ValueError, match="2 detections kept, 1 masks"):
        DetectionMasks.from_per_image([(kept, crops[:1])], size=8)
    none = DetectionMasks.from_per_image([(np.zeros(2, bool), crops[:0])], size=8)
    assert none.rows.tolist() == [-1, -1] and none.bits.shape == (0, 8) and none.mask(0) is None
    with pytest.raises(ValueError, match="bytes per 8"):
        DetectionMasks(8, np.array([0]), np.zeros((1, 3), np.uint8))
    assert box_masks(masks[:0], boxes[:0]).shape == (0, 28, 28)


def test_saved_results_round_trip_masks(tmp_path):
    saved = _case()
    crops = np.zeros((2, 28, 28), bool)
    crops[0, 3:9, 4:20] = True
    masks = DetectionMasks.from_per_image(
        [
            (np.array([True]), crops[:1]),
            (np.array([False]), crops[:0]),
            (np.array([True]), crops[1:]),
        ]
    )
    path = str(tmp_path / "r.pth")
    args = {
        "dataset_name": "toy",
        "protocol": saved.protocol,
        "variants": [saved.protocol.variant(n) for n in saved.protocol.variant_loaders],
        "ground_truth": saved.ground_truth,
        "detections": saved.detections,
        "query_embeddings": saved.query_embeddings,
        "settings": saved.settings,
    }
    save_search_results(path, **args, detection_masks=masks)
    loaded = load_search_results(path).detection_masks
    assert loaded.rows.tolist() == [0, -1, 1]
    np.testing.assert_array_equal(loaded.mask(0), crops[0])
    np.testing.assert_array_equal(loaded.mask(2), crops[1])
    bad = DetectionMasks(28, np.array([0, -1]), masks.bits[:1])
    save_search_results(path, **args, detection_masks=bad)
    with pytest.raises(ValueError, match="r.pth: 2 mask rows for 3 detections"):
        load_search_results(path)
