"""ReIDEvaluator: process/evaluate with global and part features, config, errors."""

from __future__ import annotations

import pytest
import torch

from person_search.config import get_cfg
from person_search.evaluation import ReIDEvaluator


def _io(split, pid, cam, **out):
    return {"split": split, "person_id": pid, "camera_id": cam, "image_id": f"{split}{pid}"}, out


def _run(evaluator, pairs):
    evaluator.reset()
    # two batches, as inference_on_dataset would call it
    half = len(pairs) // 2
    for chunk in (pairs[:half], pairs[half:]):
        evaluator.process([i for i, _ in chunk], [o for _, o in chunk])
    return evaluator.evaluate()


def _global_pairs():
    e = torch.eye(4)
    return [
        _io("query", 1, 1, features=e[0]),
        _io("query", 2, 1, features=e[1]),
        _io("gallery", 1, 2, features=e[0] + 0.1 * e[1]),  # q1's match, nearest
        _io("gallery", 2, 2, features=e[0] + 0.2 * e[1]),  # q2's only valid match
        _io("gallery", 2, 1, features=e[1]),  # same id and camera as q2 -> removed
        _io("gallery", 3, 2, features=e[1] + 0.05 * e[2]),  # q2's nearest kept: wrong id
        _io("gallery", 0, 3, features=e[3]),  # distractor
    ]


def test_global_features_hand_case():
    res = _run(ReIDEvaluator("x", distributed=False), _global_pairs())
    # q1: match at rank 1 -> AP 1. q2: kept order [id3, id2(cam2), ...]: id2 cam2 has cosine
    # sim 0.2/|(1,.2)| = 0.196 with e1, id3 0.999, id1 0.0995 -> match at rank 2 -> AP 0.5.
    r = res["reid"]
    assert set(r) == {
        "Rank-1",
        "Rank-5",
        "Rank-10",
        "mAP",
        "mINP",
        "num_valid_queries",
        "num_skipped_queries",
    }
    assert r["Rank-1"] == pytest.approx(50.0) and r["Rank-5"] == pytest.approx(100.0)
    assert r["mAP"] == pytest.approx(75.0) and r["mINP"] == pytest.approx(75.0)
    assert r["num_valid_queries"] == 2 and r["num_skipped_queries"] == 0


def test_query_without_match_is_skipped_and_counted():
    e = torch.eye(4)
    pairs = _global_pairs() + [
        _io("query", 5, 1, features=e[2]),  # id 5 only under its own camera: no valid match
        _io("gallery", 5, 1, features=e[2]),
    ]
    r = _run(ReIDEvaluator("x", distributed=False), pairs)["reid"]
    # the same means as without the extra query (q1 AP 1, q2 AP 0.5): it is left out, counted
    assert r["num_valid_queries"] == 2 and r["num_skipped_queries"] == 1
    assert r["mAP"] == pytest.approx(75.0) and r["Rank-1"] == pytest.approx(50.0)


def test_parts_and_global_plus_parts():
    def parts(vis):
        return {"part_features": torch.eye(3), "part_visibility": torch.tensor(vis)}

    e = torch.eye(2)
    pairs = [
        _io("query", 1, 1, features=e[0], **parts([1.0, 0.0, 1.0])),
        _io("gallery", 1, 2, features=e[1], **parts([1.0, 1.0, 0.0])),  # shares part 0: d = 0
        _io("gallery", 2, 2, features=e[0], **parts([0.0, 1.0, 0.0])),  # shares nothing: inf
    ]
    ev = ReIDEvaluator("x", feature="parts", distributed=False)
    assert _run(ev, pairs)["reid"]["Rank-1"] == 100.0
    # the global features alone prefer the wrong id
    assert _run(ReIDEvaluator("x", distributed=False), pairs)["reid"]["Rank-1"] == 0.0
    both = ReIDEvaluator("x", feature="global+parts", distributed=False)
    assert _run(both, pairs)["reid"]["Rank-1"] == 100.0


def test_match_sharing_no_visible_part_ranks_last():
    # No shared visible part = infinite distance: such a pair is still ranked (after every
    # finite one, in gallery order), never dropped; a query is skipped only without any match.
    def parts(vis, scale=1.0):
        return {"part_features": scale * torch.eye(2), "part_visibility": torch.tensor(vis)}

    pairs = [
        _io("query", 1, 1, **parts([1.0, 0.0])),
        _io("gallery", 1, 2, **parts([0.0, 1.0])),  # the match: shares no part -> inf
        _io("gallery", 2, 2, **parts([1.0, 1.0], 3.0)),  # shares part 0: finite
        _io("gallery", 3, 2, **parts([0.0, 1.0])),  # inf, after the match in gallery order
        _io("gallery", 4, 2, **parts([1.0, 0.0], -1.0)),  # shares part 0: finite
    ]
    r = _run(ReIDEvaluator("x", feature="parts", distributed=False), pairs)["reid"]
    # ranked list: id2, id4 (finite, by distance), then id1 (inf, gallery index 0), id3
    assert r["num_valid_queries"] == 1 and r["num_skipped_queries"] == 0
    assert r["Rank-1"] == 0.0 and r["Rank-5"] == 100.0
    assert r["mAP"] == pytest.approx(100.0 / 3) and r["mINP"] == pytest.approx(100.0 / 3)


def test_from_config_rerank_and_max_rank():
    cfg = get_cfg()
    cfg.TEST.REID.RERANK.ENABLED = True
    cfg.TEST.REID.RERANK.K1 = 3
    cfg.TEST.REID.RERANK.K2 = 2
    cfg.TEST.REID.METRIC = "euclidean"
    cfg.TEST.REID.MAX_RANK = 5
    ev = ReIDEvaluator(cfg, "x", distributed=False)
    assert ev.rerank and ev.metric == "euclidean"
    r = _run(ev, _global_pairs())["reid"]
    assert "Rank-10" not in r and 0.0 <= r["mAP"] <= 100.0


def test_errors():
    ev = ReIDEvaluator("x", distributed=False)
    with pytest.raises(ValueError, match="split"):
        ev.process(
            [{"split": "train", "person_id": 1, "camera_id": 1}], [{"features": torch.ones(2)}]
        )
    with pytest.raises(KeyError, match="features"):
        ev.process([{"split": "query", "person_id": 1, "camera_id": 1}], [{"emb": torch.ones(2)}])
    ev.reset()
    ev.process(*map(list, zip(*[_io("query", 1, 1, features=torch.ones(2))])))
    with pytest.raises(ValueError, match="gallery"):
        ev.evaluate()
    with pytest.raises(ValueError, match="FEATURE"):
        ReIDEvaluator("x", feature="local")
    with pytest.raises(ValueError, match="METRIC"):
        ReIDEvaluator("x", metric="l1")
