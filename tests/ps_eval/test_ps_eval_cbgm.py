"""CBGM: a companion seen next to the query re-ranks the true match (hand-computed)."""

import pytest
from ps_eval_helpers import QUERY_EMB, detections, emb, protocol, variant

from person_search.evaluation import search_metrics
from person_search.evaluation.cbgm import CBGMParams
from person_search.evaluation.search_metrics import evaluate_search

QBOX = [0.0, 0.0, 40.0, 100.0]
GT = [100.0, 0.0, 140.0, 100.0]
COMPANION = emb(0.0)  # entries 0-7 negated: similarity 0 with the query


def _case():
    # q.jpg (not searched): the query person (score .99) and a companion elsewhere (score .6).
    # a.jpg: the query person (sim .5; similarity .5 with the companion too) and the companion.
    # b.jpg: a stranger, sim .625 (similarity .375 with the companion).
    dets = detections(
        [
            [(QBOX, 0.99, emb(1.0)), ([200, 0, 240, 100], 0.6, COMPANION)],
            [(GT, 0.9, emb(0.5)), ([300, 0, 340, 100], 0.9, COMPANION)],
            [([0, 0, 40, 100], 0.9, emb(0.625))],
        ]
    )
    v = variant("g", [0], [[1, 2]], [[(1, GT)]])
    return protocol(["q.jpg", "a.jpg", "b.jpg"], [("q.jpg", QBOX, 1, -1)], [v]), dets


def test_without_cbgm():
    p, dets = _case()
    r = evaluate_search(p, dets, QUERY_EMB[None], det_thresh=0.5)["g"]
    # .625N .5T 0N -> AP 1/2, top-1 miss
    assert r.average_precision[0] == pytest.approx(0.5)
    assert not r.topk_hits[0, 0]


@pytest.mark.parametrize("sparse_fraction", [0.0, 1.0])  # per-query gather or chunk matmul
def test_cbgm_raises_the_matched_detection(sparse_fraction, monkeypatch):
    monkeypatch.setattr(search_metrics, "SPARSE_GALLERY_FRACTION", sparse_fraction)
    p, dets = _case()
    r = evaluate_search(p, dets, QUERY_EMB[None], det_thresh=0.5, cbgm=CBGMParams(k1=2, k2=2))["g"]
    # Context: [query, companion] (the .99 detection on the query box is left out).
    # a.jpg: weights [[.5, 0], [.5, 1]] -> query<->person, companion<->companion; the person's
    # similarity becomes max(.5, 1) = 1. b.jpg: one detection, taken by the query (.625 > .375),
    # unchanged. Ranking 1T .625N 0N -> AP 1, top-1 hit.
    assert r.average_precision[0] == pytest.approx(1.0)
    assert r.topk_hits[0].all()


def test_cbgm_only_touches_top_k1_images():
    p, dets = _case()
    # k1 = 1: only b.jpg (best similarity .625) is re-ranked: nothing changes
    r = evaluate_search(p, dets, QUERY_EMB[None], det_thresh=0.5, cbgm=CBGMParams(k1=1, k2=2))["g"]
    assert r.average_precision[0] == pytest.approx(0.5)
    # k2 = 1: the query alone, nothing changes
    r = evaluate_search(p, dets, QUERY_EMB[None], det_thresh=0.5, cbgm=CBGMParams(k1=5, k2=1))["g"]
    assert r.average_precision[0] == pytest.approx(0.5)


def test_cbgm_context_respects_det_thresh_and_params():
    p, dets = _case()
    # At 0.7 the companion (score .6) is no context person: nothing changes
    cbgm = CBGMParams(k1=2, k2=2)
    r = evaluate_search(p, dets, QUERY_EMB[None], det_thresh=0.7, cbgm=cbgm)["g"]
    assert r.average_precision[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="k1"):
        CBGMParams(k1=0, k2=3)
