"""CBGM as published (SeqNet): hand-built cases with every similarity and metric computed by hand.

Embeddings are ``emb(sim, flip_from)`` of ``ps_eval_helpers``: 16 entries of +-0.25, the query's
all +0.25; ``emb(s, f)`` negates ``(1 - s) * 8`` entries from entry ``f`` on, so two embeddings
negating the index sets A and B have similarity ``1 - |A ^ B| / 8``, exactly.
"""

import numpy as np
import pytest
from ps_eval_helpers import QUERY_EMB, detections, emb, protocol, variant

from person_search.evaluation import search_metrics
from person_search.evaluation.cbgm import CBGMParams, _most_similar, cbgm_rescore, context_nodes
from person_search.evaluation.search_metrics import evaluate_search
from person_search.evaluation.search_ranking import SearchRanker

QBOX = [0.0, 0.0, 40.0, 100.0]
GT = [100.0, 0.0, 140.0, 100.0]
COMPANION = emb(0.0)  # entries 0-7 negated: similarity 0 with the query
CONTEXT_BOX = [200.0, 0.0, 240.0, 100.0]


def _contexts(*rows_per_query):
    """Per query, the model's query pass: its box first (score 1), then (box, score, emb)."""
    return detections([[(QBOX, 1.0, QUERY_EMB), *rows] for rows in rows_per_query])


def _companion_case():
    """a.jpg: the query person (sim .5; .5 with the companion too) and the companion;
    b.jpg: a stranger (sim .625; .375 with the companion: entries 0-2 negated)."""
    dets = detections(
        [
            [(GT, 0.9, emb(0.5)), ([300, 0, 340, 100], 0.9, COMPANION)],
            [([0, 0, 40, 100], 0.9, emb(0.625))],
        ]
    )
    v = variant("g", [0], [[0, 1]], [[(0, GT)]])
    return protocol(["a.jpg", "b.jpg"], [("q.jpg", QBOX, 1, -1)], [v]), dets


def _evaluate(p, dets, contexts=None, cbgm=None, det_thresh=0.5):
    return evaluate_search(
        p, dets, QUERY_EMB[None], det_thresh=det_thresh, cbgm=cbgm, contexts=contexts
    )["g"]


def test_without_cbgm():
    p, dets = _companion_case()
    r = _evaluate(p, dets)
    # .625N .5T 0N -> AP 1/2, top-1 miss
    assert r.average_precision[0] == pytest.approx(0.5)
    assert not r.topk_hits[0, 0]


@pytest.mark.parametrize("sparse_fraction", [0.0, 1.0])  # per-query gather or chunk matmul
def test_cbgm_raises_the_matched_detection(sparse_fraction, monkeypatch):
    monkeypatch.setattr(search_metrics, "SPARSE_GALLERY_FRACTION", sparse_fraction)
    p, dets = _companion_case()
    contexts = _contexts([(CONTEXT_BOX, 0.6, COMPANION)])
    r = _evaluate(p, dets, contexts, CBGMParams(k1=2, k2=2))
    # Context [query, companion]. The 2 most similar detections (.625 in b, .5 in a) select
    # a and b. a: weights [[.5, 0], [.5, 1]] -> query<->person, companion<->companion; the
    # person's similarity becomes max(.5, 1) = 1. b: one detection, taken by the query
    # (.625 > .375), max .625: unchanged. Ranking 1T .625N 0N -> AP 1, top-1 hit.
    assert r.average_precision[0] == pytest.approx(1.0)
    assert r.topk_hits[0].all()


def test_context_is_the_models_and_respects_det_thresh_and_k2():
    p, dets = _companion_case()
    cbgm = CBGMParams(k1=2, k2=2)
    # The companion under det_thresh (0.4 < 0.5) is no context node: nothing changes.
    assert _evaluate(p, dets, _contexts([(CONTEXT_BOX, 0.4, COMPANION)]), cbgm).average_precision[
        0
    ] == pytest.approx(0.5)
    # A stranger (score .9, entries 4-7 negated) ahead of the companion takes the only other
    # node at k2 = 2: a: weights [[.5, 0], [0, .5]] -> query<->person, stranger<->companion;
    # the person gets max(.5, .5) = .5: unchanged. (b: weights [[.625], [.125]], unchanged.)
    stranger = emb(0.5, flip_from=4)
    contexts = _contexts([(CONTEXT_BOX, 0.9, stranger), (CONTEXT_BOX, 0.8, COMPANION)])
    assert _evaluate(p, dets, contexts, cbgm).average_precision[0] == pytest.approx(0.5)
    # ... and at k2 = 3 the companion is a node again: AP 1.
    assert _evaluate(p, dets, contexts, CBGMParams(k1=2, k2=3)).average_precision[
        0
    ] == pytest.approx(1.0)
    # k2 = 1: the query alone, nothing changes.
    assert _evaluate(p, dets, contexts, CBGMParams(k1=2, k2=1)).average_precision[
        0
    ] == pytest.approx(0.5)
    nodes = context_nodes(contexts, 0, det_thresh=0.85, k2=3)
    np.testing.assert_array_equal(nodes, np.stack([QUERY_EMB, stranger]))


def _selection_case():
    """The two image-selection rules differ. Context [query, companion].

    ======  ========================================  =========  ===============
    image   detection (negated entries)               sim query  sim companion
    ======  ========================================  =========  ===============
    A       s1, stranger (8)                           .875       -.125
    A       s2, stranger (7, 8)                        .75         0
    B       p, the query person (0-3)                  .5          .5
    B       c, the companion (0-7)                     0           1
    ======  ========================================  =========  ===============
    """
    dets = detections(
        [
            [([0, 0, 40, 100], 0.9, emb(0.875, 8)), ([50, 0, 90, 100], 0.9, emb(0.75, 7))],
            [(GT, 0.9, emb(0.5)), ([300, 0, 340, 100], 0.9, COMPANION)],
        ]
    )
    v = variant("g", [0], [[0, 1]], [[(1, GT)]])
    p = protocol(["A.jpg", "B.jpg"], [("q.jpg", QBOX, 1, -1)], [v])
    return p, dets, _contexts([(CONTEXT_BOX, 0.9, COMPANION)])


def test_images_of_the_k1_most_similar_detections_are_rescored():
    p, dets, contexts = _selection_case()
    plain = _evaluate(p, dets)
    # Without CBGM: .875N .75N .5T 0N -> AP = precision at the TP = 1/3, top-1 miss, top-5 hit.
    assert plain.average_precision[0] == pytest.approx(1 / 3)
    assert plain.topk_hits[0].tolist() == [False, True, True]

    # Published rule, k1 = 2: the 2 most similar detections (s1, s2) are both in A, so only A is
    # re-scored. A: weights [[.875, .75], [-.125, 0]]: query<->s1 + companion<->s2 = .875 beats
    # .75 - .125 = .625; s1 gets max(.875, 0) = .875, unchanged. B is not re-scored:
    # AP 1/3, top-1 miss.
    # (The other rule, "the k1 images with the best detection", would re-score A (.875) and
    # B (.5): in B, weights [[.5, 0], [.5, 1]], p gets max(.5, 1) = 1: ranking 1T .875N .75N 0N,
    # AP 1 and a top-1 hit.)
    r = _evaluate(p, dets, contexts, CBGMParams(k1=2, k2=2))
    assert r.average_precision[0] == pytest.approx(1 / 3)
    assert r.topk_hits[0].tolist() == [False, True, True]

    # k1 = 3: the third most similar detection is p, so B is re-scored too: AP 1, top-1 hit.
    r = _evaluate(p, dets, contexts, CBGMParams(k1=3, k2=2))
    assert r.average_precision[0] == pytest.approx(1.0)
    assert r.topk_hits[0].all()


def test_rescore_by_hand_and_ties_in_gallery_order():
    # Image X: x (sim .5, entries 0-3 negated) and y (sim .25, entries 8-13); image Z: z (sim
    # .5, entries 4-7). Context [query, y]. x and z tie at .5: k1 = 1 takes the one earlier in
    # gallery order.
    x, y, z = emb(0.5), emb(0.25, 8), emb(0.5, 4)
    context = np.stack([QUERY_EMB, y])

    def rescore(embeddings: list[np.ndarray], det_image: list[int], k1: int) -> np.ndarray:
        embeddings = np.stack(embeddings)
        sims = embeddings @ QUERY_EMB
        return cbgm_rescore(sims, np.array(det_image), np.arange(3), embeddings, context, k1)

    # X re-scored: weights [[.5, .25], [-.25, 1]] -> query<->x, y<->y: x gets max(.5, 1) = 1.
    np.testing.assert_array_equal(rescore([x, y, z], [0, 0, 1], k1=1), [1.0, 0.25, 0.5])
    # Z first in gallery order: Z is re-scored instead: weights [[.5], [-.25]], the query keeps
    # z at .5: nothing changes.
    np.testing.assert_array_equal(rescore([z, x, y], [0, 1, 1], k1=1), [0.5, 0.5, 0.25])
    # k1 = 2 takes both images.
    np.testing.assert_array_equal(rescore([z, x, y], [0, 1, 1], k1=2), [0.5, 1.0, 0.25])


def test_visualizer_ranking_is_the_evaluations():
    """The ranker the pictures use re-scores as the metrics do."""
    p, dets = _companion_case()
    contexts = _contexts([(CONTEXT_BOX, 0.6, COMPANION)])
    ranker = SearchRanker(
        p, dets, QUERY_EMB[None], det_thresh=0.5, cbgm=CBGMParams(k1=2, k2=2), contexts=contexts
    )
    ranking = ranker.rank(p.variant("g"), 0)
    np.testing.assert_array_equal(ranking.similarities, [1.0, 0.625, 0.0])
    assert ranking.true_positive.tolist() == [True, False, False]
    assert ranker.det_image[ranking.detections].tolist() == [0, 1, 0]
    assert ranking.count_gt == 1


def test_errors_name_the_problem():
    p, dets = _companion_case()
    with pytest.raises(ValueError, match="CBGM needs each query's context"):
        _evaluate(p, dets, None, CBGMParams())
    with pytest.raises(ValueError, match="cover 2 of 1 queries"):
        _evaluate(p, dets, _contexts([], []), CBGMParams())
    with pytest.raises(ValueError, match=r"queries \[0\] are empty"):
        _evaluate(p, dets, detections([[]]), CBGMParams())
    with pytest.raises(ValueError, match="k1"):
        CBGMParams(k1=0, k2=3)
    with pytest.raises(ValueError, match="k2"):
        CBGMParams(k1=3, k2=0)


def test_most_similar_detections_are_the_stable_top_k1():
    """The O(n) selection of the k1 most similar detections equals a stable sort's first k1."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        sims = rng.integers(0, 5, int(rng.integers(0, 30))).astype(np.float32)  # many ties
        k = int(rng.integers(1, 10))
        expected = np.sort(np.argsort(-sims, kind="stable")[:k])
        np.testing.assert_array_equal(np.sort(_most_similar(sims, k)), expected)
