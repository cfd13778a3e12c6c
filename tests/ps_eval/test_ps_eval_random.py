"""The vectorised search evaluation equals the plain loop specification on random inputs."""

import numpy as np
import pytest
from ps_eval_helpers import random_case, random_contexts

from person_search.data.search_protocol import QueryGalleries
from person_search.evaluation import search_metrics
from person_search.evaluation.cbgm import CBGMParams
from person_search.evaluation.search_metrics import evaluate_search
from person_search.evaluation.search_metrics_loop import evaluate_variant_loop
from person_search.evaluation.search_ranking import SearchRanker


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("det_thresh", [0.5, 0.8])
@pytest.mark.parametrize("sparse_fraction", [0.0, 1.0])  # per-query gather or chunk matmul
@pytest.mark.parametrize("max_tp_compared", [0, 32])  # count ranks by sorting or by comparisons
def test_vectorised_equals_loop(seed, det_thresh, sparse_fraction, max_tp_compared, monkeypatch):
    monkeypatch.setattr(search_metrics, "SPARSE_GALLERY_FRACTION", sparse_fraction)
    monkeypatch.setattr(search_metrics, "_MAX_TP_COUNTED_BY_COMPARISON", max_tp_compared)
    protocol, dets, query_emb = random_case(seed)
    fast = evaluate_search(protocol, dets, query_emb, det_thresh=det_thresh, chunk_size=5)
    for name, res in fast.items():
        ref = evaluate_variant_loop(
            protocol, dets, query_emb, protocol.variant(name), det_thresh=det_thresh
        )
        np.testing.assert_array_equal(res.count_gt, ref.count_gt)
        np.testing.assert_array_equal(res.count_tp, ref.count_tp)
        np.testing.assert_allclose(res.average_precision, ref.average_precision, atol=1e-12)
        np.testing.assert_array_equal(res.topk_hits, ref.topk_hits)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("det_thresh", [0.5, 0.8])
@pytest.mark.parametrize("sparse_fraction", [0.0, 1.0])
@pytest.mark.parametrize(("k1", "k2"), [(1, 3), (3, 2), (10, 4)])
def test_cbgm_vectorised_equals_loop(seed, det_thresh, sparse_fraction, k1, k2, monkeypatch):
    """CBGM against the loop specification (matching by enumeration, not SciPy), on continuous
    embeddings: no exact similarity or matching ties, whose resolution may legitimately differ."""
    monkeypatch.setattr(search_metrics, "SPARSE_GALLERY_FRACTION", sparse_fraction)
    protocol, dets, query_emb = random_case(seed)
    rng = np.random.default_rng(100 + seed)
    dets.embeddings += rng.normal(0, 0.1, dets.embeddings.shape).astype(np.float32)
    query_emb = query_emb + rng.normal(0, 0.1, query_emb.shape)
    contexts = random_contexts(rng, query_emb, dets)
    cbgm = CBGMParams(k1=k1, k2=k2)
    fast = evaluate_search(
        protocol, dets, query_emb, det_thresh=det_thresh, chunk_size=5, cbgm=cbgm, contexts=contexts
    )
    plain = evaluate_search(protocol, dets, query_emb, det_thresh=det_thresh)
    changed = 0
    for name, res in fast.items():
        ref = evaluate_variant_loop(
            protocol,
            dets,
            query_emb,
            protocol.variant(name),
            det_thresh=det_thresh,
            cbgm=cbgm,
            contexts=contexts,
        )
        np.testing.assert_array_equal(res.count_tp, ref.count_tp)
        np.testing.assert_allclose(res.average_precision, ref.average_precision, atol=1e-12)
        np.testing.assert_array_equal(res.topk_hits, ref.topk_hits)
        changed += int(np.sum(res.average_precision != plain[name].average_precision))
    assert k2 == 1 or changed > 0  # CBGM re-scored something in every setting with context


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("det_thresh", [0.5, 0.8])
def test_query_tables_equal_the_per_query_steps(seed, det_thresh):
    """SearchRanker.query_tables (every query of a variant at once) gives, query by query, what
    searched() and positive_candidates() give: listed galleries (duplicates, the query's own
    image), all images, cross-camera on both."""
    protocol, dets, query_emb = random_case(seed)
    ranker = SearchRanker(protocol, dets, query_emb, det_thresh=det_thresh)
    listed = protocol.variant("listed")
    variants = [
        listed,
        protocol.variant("all"),
        protocol.variant("cross"),
        QueryGalleries(
            "listed_cross", listed.query_indices, listed.galleries, listed.positives, True
        ),
    ]
    sims = np.random.default_rng(seed).uniform(-1, 1, len(ranker.dets.scores)).astype(np.float32)
    for v in variants:
        sparse = v.galleries is not None
        tables = ranker.query_tables(v, sparse=sparse)
        for pos in range(len(v.query_indices)):
            keep, det_idx = ranker.searched(v, pos)
            if sparse:
                np.testing.assert_array_equal(tables.searched_of(pos), det_idx)
            count_gt, cand, iou_ok, starts = tables.candidates_of(pos)
            ref_gt, ref_cand, ref_sims, ref_starts = ranker.positive_candidates(
                sims, keep, v.positives[pos]
            )
            assert count_gt == ref_gt
            np.testing.assert_array_equal(cand, ref_cand)
            np.testing.assert_array_equal(np.where(iou_ok, sims[cand], -np.inf), ref_sims)
            np.testing.assert_array_equal(starts, ref_starts)
    with pytest.raises(ValueError, match="without the searched detections"):
        ranker.query_tables(listed).searched_of(0)
    with pytest.raises(ValueError, match="sparse search needs gallery lists"):
        ranker.query_tables(protocol.variant("all"), sparse=True)
