"""SearchRanker.rank, the ranking the pictures draw, agrees with the metrics query by query."""

import numpy as np
import pytest
from ps_eval_helpers import (
    QUERY_EMB,
    detections,
    emb,
    protocol,
    random_case,
    random_contexts,
    variant,
)

from person_search.evaluation.cbgm import CBGMParams
from person_search.evaluation.search_metrics import TOPK, average_precision, evaluate_search
from person_search.evaluation.search_ranking import SearchRanker

GT = [0.0, 0.0, 40.0, 100.0]


def test_ties_rank_negatives_first_and_the_first_best_is_the_true_positive():
    # Image 0: two detections on the person, equal similarity .5: the first is the true
    # positive. Image 1: a negative at .5 too. Image 2 holds the person, but its only
    # detection misses it (IoU 0): no true positive there.
    dets = detections(
        [
            [(GT, 0.9, emb(0.5)), ([1, 0, 41, 100], 0.9, emb(0.5, 4))],
            [(GT, 0.9, emb(0.5, 8))],
            [([100, 0, 140, 100], 0.9, emb(0.75))],
        ]
    )
    v = variant("g", [0], [[0, 1, 2]], [[(0, GT), (2, GT)]])
    p = protocol(["a.jpg", "b.jpg", "c.jpg"], [("q.jpg", GT, 1, -1)], [v])
    ranker = SearchRanker(p, dets, QUERY_EMB[None], det_thresh=0.5)
    ranking = ranker.rank(v, 0)
    # .75N (c), then the .5 ties: negatives first (a's second detection, b), then a's first.
    assert ranking.detections.tolist() == [3, 1, 2, 0]
    assert ranking.true_positive.tolist() == [False, False, False, True]
    assert ranking.count_gt == 2
    res = evaluate_search(p, dets, QUERY_EMB[None], det_thresh=0.5)["g"]
    assert res.topk_hits[0].tolist() == [False, True, True]  # 3 negatives >= .5: top-5 hit
    with pytest.raises(ValueError, match="query 1 is not evaluated in protocol variant 'g'"):
        ranker.rank(v, 1)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("with_cbgm", [False, True])
def test_rankings_give_the_metrics(seed, with_cbgm):
    """AP and top-k recomputed from each query's ranking equal evaluate_search's."""
    protocol_, dets, query_emb = random_case(seed)
    cbgm, contexts = None, None
    if with_cbgm:
        rng = np.random.default_rng(seed)
        cbgm, contexts = CBGMParams(k1=4, k2=3), random_contexts(rng, query_emb, dets)
    metrics = evaluate_search(
        protocol_, dets, query_emb, det_thresh=0.5, cbgm=cbgm, contexts=contexts
    )
    ranker = SearchRanker(protocol_, dets, query_emb, det_thresh=0.5, cbgm=cbgm, contexts=contexts)
    for name, res in metrics.items():
        v = protocol_.variant(name)
        for row, qi in enumerate(v.query_indices):
            r = ranker.rank(v, int(qi))
            assert r.count_gt == res.count_gt[row]
            count_tp = int(r.true_positive.sum())
            assert count_tp == res.count_tp[row]
            if r.count_gt == 0:
                continue
            ap = average_precision(r.similarities, r.true_positive) * count_tp / r.count_gt
            assert res.average_precision[row] == pytest.approx(ap, abs=1e-12)
            first_tp = np.flatnonzero(r.true_positive)[:1]
            hits = [bool(len(first_tp)) and first_tp[0] < k for k in TOPK]
            assert res.topk_hits[row].tolist() == hits
