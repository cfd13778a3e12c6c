"""PersonSearchEvaluator end to end on fake model outputs; save -> tools/evaluate_saved.py."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from ps_eval_helpers import QUERY_EMB, detections, emb, protocol, variant

from person_search.config import get_cfg
from person_search.data.occlusion import QueryOcclusion
from person_search.evaluation import PersonSearchEvaluator
from person_search.evaluation.cbgm import CBGMParams
from person_search.evaluation.occluded_queries import OccludedQueryData
from person_search.evaluation.person_search_evaluator import (
    compute_person_search_metrics,
    format_results_table,
)
from person_search.evaluation.saved_results import load_search_results
from person_search.evaluation.search_metrics import evaluate_search, summarize_search

ROOT = Path(__file__).resolve().parents[2]
GT = [0.0, 0.0, 50.0, 100.0]
OTHER = [100.0, 0.0, 150.0, 100.0]
NAME = "ps_eval_unit_prw_like"
# frame -> (camera, person id of its person at GT, detections [(box, score, embedding)])
FRAMES = {
    "f0.jpg": (1, 3, [(GT, 0.9, emb(1.0))]),
    "f1.jpg": (1, 3, [(GT, 0.9, emb(0.875)), (OTHER, 0.3, emb(0.875, 4))]),
    "f2.jpg": (2, 3, [(GT, 0.9, emb(0.25))]),
    "f3.jpg": (2, 20, [(GT, 0.9, emb(0.5))]),
    "f4.jpg": (1, 9, [(GT, 0.9, emb(0.0))]),
}
QUERIES = [("f0.jpg", GT, 3, 1), ("f3.jpg", GT, 9, 2)]


def _protocol():
    ids = list(FRAMES)
    positives = [[(0, GT), (1, GT), (2, GT)], [(4, GT)]]
    return protocol(
        ids,
        QUERIES,
        [variant("all", [0, 1], None, positives), variant("cross", [0, 1], None, positives, True)],
        cameras=[c for c, _, _ in FRAMES.values()],
        default="all",
    )


def _dicts():
    out = []
    for name, (cam, pid, _) in FRAMES.items():
        anno = {"bbox": GT, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "person_id": pid}
        out.append(
            {"image_id": name, "height": 300, "width": 300, "camera_id": cam, "annotations": [anno]}
        )
    for i, (img, box, pid, cam) in enumerate(QUERIES):
        out.append(
            {
                "image_id": img,
                "height": 300,
                "width": 300,
                "camera_id": cam,
                "query_index": i,
                "query_box": box,
                "person_id": pid,
            }
        )
    return out


@pytest.fixture
def dataset():
    DatasetCatalog.register(NAME, _dicts)
    MetadataCatalog.get(NAME).set(search_protocol=_protocol(), evaluator_type="person_search")
    yield NAME
    DatasetCatalog.remove(NAME)
    MetadataCatalog.remove(NAME)


# The model's CBGM pass over each query image: the query box first (score 1), then detections.
# Query 0's other detection looks like f1's 0.3-score stranger (its embedding).
CONTEXTS = [[(GT, 1.0, QUERY_EMB), (OTHER, 0.9, emb(0.875, 4))], [(GT, 1.0, QUERY_EMB)]]


def _instances(dets):
    inst = Instances((300, 300))
    inst.pred_boxes = Boxes(torch.tensor([b for b, _, _ in dets], dtype=torch.float32))
    inst.scores = torch.tensor([s for _, s, _ in dets], dtype=torch.float32)
    inst.pred_classes = torch.zeros(len(dets), dtype=torch.int64)
    inst.embeddings = torch.from_numpy(np.stack([e for _, _, e in dets]))
    return inst


def _outputs(d, with_context=False):
    if "query_index" in d:
        out = {"query_embeddings": torch.from_numpy(QUERY_EMB)[None]}
        if with_context:
            out["query_context"] = _instances(CONTEXTS[d["query_index"]])
        return out
    return {"instances": _instances(FRAMES[d["image_id"]][2])}


def _run(evaluator, dicts, with_context=False):
    evaluator.reset()
    for start in range(0, len(dicts), 3):  # batches of 3, queries and gallery mixed
        batch = dicts[start : start + 3]
        evaluator.process(batch, [_outputs(d, with_context) for d in batch])
    return evaluator.evaluate()


def _tool():
    spec = importlib.util.spec_from_file_location(
        "evaluate_saved", ROOT / "tools/evaluate_saved.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluator_metrics_and_saved_file(dataset, tmp_path):
    ev = PersonSearchEvaluator(dataset, det_thresh=0.5, output_dir=str(tmp_path))
    res = _run(ev, _dicts())
    # query 0 (all): .875T .5N .25T 0N -> 5/6; query 1 (all): 1.0N .875N .25N 0T -> 1/4
    assert res["search"]["mAP"] == pytest.approx(100 * (5 / 6 + 1 / 4) / 2)
    assert res["search"]["top1"] == pytest.approx(50.0)
    assert res["search"]["all/mAP"] == res["search"]["mAP"]
    # query 0 (cross): .5N .25T -> 1/2; query 1 (cross, camera 2): f0, f1, f4: 1.0N .875N 0T
    assert res["search"]["cross/mAP"] == pytest.approx(100 * (1 / 2 + 1 / 3) / 2)
    # every person found exactly, no false positive above 0.5
    assert res["detection"] == {
        "AP": pytest.approx(100.0),
        "recall": pytest.approx(100.0),
        "labelled_AP": pytest.approx(100.0),
        "labelled_recall": pytest.approx(100.0),
    }
    saved = load_search_results(str(tmp_path / "search_results.pth"))
    assert saved.dataset_name == dataset and saved.settings["det_thresh"] == 0.5
    assert len(saved.detections.scores) == 6  # the 0.3 detection is stored too
    assert not list(tmp_path.glob(".search_results.*"))  # no temporary file left behind


def test_evaluate_saved_reproduces_and_rethresholds(dataset, tmp_path):
    ev = PersonSearchEvaluator(dataset, det_thresh=0.5, output_dir=str(tmp_path))
    res = _run(ev, _dicts())
    path = str(tmp_path / "search_results.pth")
    tool = _tool()
    assert tool.main([path]) == res
    # re-threshold: the 0.3 negative in f1 (sim .875) joins query 0's ranking:
    # .875T .875N .5N .25T 0N -> (1/2 + 2/4) / 2 = 1/2
    low = tool.main(
        [path, "--det-thresh", "0.2", "--variants", "all", "--json", str(tmp_path / "m.json")]
    )
    direct = evaluate_search(
        _protocol(),
        detections([d for _, _, d in FRAMES.values()]),
        np.stack([QUERY_EMB] * 2),
        det_thresh=0.2,
        variants=["all"],
    )
    assert low["search"] == pytest.approx(summarize_search(direct, "all"))
    assert direct["all"].average_precision[0] == pytest.approx(0.5)
    assert json.loads((tmp_path / "m.json").read_text())["search"]["mAP"] == low["search"]["mAP"]
    # the protocol taken from the registered dataset instead of the file
    assert tool.main([path, "--dataset", dataset]) == res


def test_cbgm_saved_with_contexts_and_reevaluated(dataset, tmp_path):
    cbgm = CBGMParams(k1=2, k2=2)
    ev = PersonSearchEvaluator(dataset, det_thresh=0.2, output_dir=str(tmp_path), cbgm=cbgm)
    res = _run(ev, _dicts(), with_context=True)
    # Query 0 (all): f1 holds the person (.875) and the stranger (.875). Context [query,
    # stranger]: weights [[.875, .875], [.75, 1]] -> query<->person, stranger<->stranger: the
    # person gets max(.875, 1) = 1. Ranking 1T .875N .5N .25T 0N -> (1 + 2/4) / 2 = 3/4
    # (1/2 without CBGM). Query 1: its context is its box alone: 1.0N .875N .875N .25N 0T -> 1/5.
    assert res["search"]["all/mAP"] == pytest.approx(100 * (3 / 4 + 1 / 5) / 2)
    assert res["search"]["all/top1"] == pytest.approx(50.0)
    # cross-camera: query 0 searches f2, f3 only (no f1): unchanged, 1/2; query 1: 1/4.
    assert res["search"]["cross/mAP"] == pytest.approx(100 * (1 / 2 + 1 / 4) / 2)
    path = str(tmp_path / "search_results.pth")
    saved = load_search_results(path)
    assert saved.settings["cbgm_k1"] == 2 and saved.settings["cbgm_k2"] == 2
    np.testing.assert_array_equal(saved.query_contexts.offsets, [0, 2, 3])
    np.testing.assert_array_equal(saved.query_contexts.scores, np.float32([1.0, 0.9, 1.0]))
    results, per_variant = compute_person_search_metrics(
        saved.protocol,
        saved.ground_truth,
        saved.detections,
        saved.query_embeddings,
        det_thresh=0.2,
        variants=[saved.protocol.variant(n) for n in ("all", "cross")],
        cbgm=cbgm,
        contexts=saved.query_contexts,
    )
    assert results == res
    table = format_results_table(
        results, per_variant, dataset_name=dataset, det_thresh=0.2, cbgm=cbgm
    )
    assert "(det_thresh=0.2, CBGM as published by SeqNet, k1=2, k2=2)" in table
    tool = _tool()
    assert tool.main([path]) == res  # CBGM as saved: the evaluator's numbers
    plain = _run(PersonSearchEvaluator(dataset, det_thresh=0.2), _dicts())
    assert tool.main([path, "--no-cbgm"]) == plain
    assert plain["search"]["all/mAP"] == pytest.approx(100 * (1 / 2 + 1 / 5) / 2)
    with pytest.raises(ValueError, match="k2=3 context nodes asked for.*keeps 2 per query"):
        tool.main([path, "--k2", "3"])
    # A file saved without contexts cannot be re-evaluated with CBGM.
    _run(PersonSearchEvaluator(dataset, det_thresh=0.2, output_dir=str(tmp_path)), _dicts())
    with pytest.raises(ValueError, match="CBGM needs the query contexts"):
        tool.main([path, "--cbgm"])
    # Contexts for some queries only.
    ev = PersonSearchEvaluator(dataset, det_thresh=0.2)
    ev.reset()
    for d in _dicts():
        ev.process([d], [_outputs(d, with_context=d.get("query_index") == 0)])
    with pytest.raises(
        ValueError, match=r"no query_context for 1 of 2 queries \(e.g. query_index \[1\]"
    ):
        ev.evaluate()
    # CBGM on, but the model returns no contexts: stops at the first query.
    with pytest.raises(KeyError, match="CBGM is on but the model output has no 'query_context'"):
        _run(PersonSearchEvaluator(dataset, det_thresh=0.2, cbgm=cbgm), _dicts())


def test_version_1_files_are_read_without_contexts(dataset, tmp_path):
    """A file written before query contexts were saved (version 1) still re-evaluates."""
    cbgm = CBGMParams(k1=2, k2=2)
    ev = PersonSearchEvaluator(dataset, det_thresh=0.2, output_dir=str(tmp_path), cbgm=cbgm)
    _run(ev, _dicts(), with_context=True)
    path = tmp_path / "search_results.pth"
    payload = torch.load(path, weights_only=True)
    del payload["query_contexts"]
    payload["version"] = 1
    old = tmp_path / "v1.pth"
    torch.save(payload, old)
    assert load_search_results(str(old)).query_contexts is None
    tool = _tool()
    with pytest.raises(ValueError, match=r"does not hold.*\(--no-cbgm\)"):
        tool.main([str(old)])  # saved with CBGM: asked again by default
    plain = _run(PersonSearchEvaluator(dataset, det_thresh=0.2), _dicts())
    assert tool.main([str(old), "--no-cbgm"]) == plain
    payload["version"] = 4
    torch.save(payload, old)
    with pytest.raises(ValueError, match="version 4 is not supported.*versions 1, 2, 3"):
        load_search_results(str(old))


def test_results_file_errors(tmp_path):
    tool = _tool()
    with pytest.raises(FileNotFoundError, match="not found"):
        tool.main([str(tmp_path / "missing.pth")])
    other = tmp_path / "model_final.pth"
    torch.save({"model": {"w": torch.zeros(2)}}, other)
    with pytest.raises(ValueError, match="not a person-search results file"):
        tool.main([str(other)])
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="not a person-search results file"):
        tool.main([str(junk)])


def test_missing_outputs_and_bad_config(dataset):
    ev = PersonSearchEvaluator(dataset, det_thresh=0.5)
    dicts = [d for d in _dicts() if d["image_id"] != "f2.jpg" or "query_index" in d]
    with pytest.raises(ValueError, match="no model output for 1 of 5 gallery images"):
        _run(ev, dicts)
    dicts = [d for d in _dicts() if d.get("query_index") != 1]
    with pytest.raises(ValueError, match="no query embedding for 1 of 2 queries"):
        _run(ev, dicts)
    with pytest.raises(ValueError, match="det_thresh"):
        PersonSearchEvaluator(dataset, det_thresh=1.5)
    with pytest.raises(KeyError, match="no variant 'nope'"):
        _run(PersonSearchEvaluator(dataset, det_thresh=0.5, variants=["nope"]), _dicts())


def test_from_config(dataset, tmp_path):
    cfg = get_cfg()
    cfg.TEST.PERSON_SEARCH.DET_THRESH = 0.2
    cfg.TEST.PERSON_SEARCH.VARIANTS = ["all"]
    cfg.TEST.PERSON_SEARCH.SAVE_RESULTS = False
    cfg.TEST.PERSON_SEARCH.CBGM.ENABLED = True
    ev = PersonSearchEvaluator(cfg, dataset, str(tmp_path))
    res = _run(ev, _dicts(), with_context=True)
    assert set(res["search"]) == {"mAP", "top1", "top5", "top10"} | {
        f"all/{k}" for k in ("mAP", "top1", "top5", "top10")
    }
    assert not (tmp_path / "search_results.pth").exists()


def _with_masks(out: dict) -> dict:
    """Give gallery instances ``pred_masks``: the left half of each box."""
    if "instances" in out:
        inst = out["instances"]
        masks = torch.zeros(len(inst), 300, 300, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(inst.pred_boxes.tensor.int().tolist()):
            masks[k, y0:y1, x0 : (x0 + x1) // 2] = True
        inst.pred_masks = masks
    return out


def test_evaluator_keeps_box_masks_of_kept_detections(dataset, tmp_path):
    ev = PersonSearchEvaluator(dataset, det_thresh=0.5, output_dir=str(tmp_path))
    ev.reset()
    dicts = _dicts()
    ev.process(dicts, [_with_masks(_outputs(d)) for d in dicts])
    res = ev.evaluate()
    plain = PersonSearchEvaluator(dataset, det_thresh=0.5, output_dir=str(tmp_path / "plain"))
    assert res == _run(plain, dicts)  # masks change no metric
    saved = load_search_results(str(tmp_path / "search_results.pth"))
    masks = saved.detection_masks
    assert masks is not None and len(masks.rows) == len(saved.detections.scores) == 6
    # f1's 0.3-score detection (row 2) is below det_thresh: no mask kept
    assert masks.rows.tolist() == [0, 1, -1, 2, 3, 4] and masks.mask(2) is None
    half = masks.mask(0)
    assert half.shape == (28, 28) and half[:, :14].all() and not half[:, 14:].any()
    assert (
        load_search_results(str(tmp_path / "plain" / "search_results.pth")).detection_masks is None
    )


# ------------------------------------------------------------------ occluded-query evaluation
# Two settings (grid 2x1, cell probabilities 0.25 and 0.5): the first re-embeds every query as
# the unoccluded one, the second as its opposite (every similarity negated).
OCCLUSION = QueryOcclusion(((2, 1),), (0.25, 0.5), "mean", 0.0, 0)
COVERED = [[0.1, 0.3], [0.2, 0.5]]  # per query, per setting


def _occluded_inputs_outputs(d, with_context=False):
    out = _outputs(d, with_context)
    if "query_index" in d:
        d = dict(d, occluded_query_coverage=torch.tensor(COVERED[d["query_index"]]))
        out["occluded_query_embeddings"] = torch.from_numpy(np.stack([QUERY_EMB, -QUERY_EMB]))
    return d, out


def _run_occluded(evaluator, dicts):
    evaluator.reset()
    pairs = [_occluded_inputs_outputs(d) for d in dicts]
    for start in range(0, len(pairs), 3):
        batch = pairs[start : start + 3]
        evaluator.process([i for i, _ in batch], [o for _, o in batch])
    return evaluator.evaluate()


def test_occluded_queries_by_hand_saved_and_reevaluated(dataset, tmp_path):
    out = tmp_path / "eval"
    ev = PersonSearchEvaluator(
        dataset, det_thresh=0.5, output_dir=str(out), occluded_queries=OCCLUSION
    )
    res = _run_occluded(ev, _dicts())
    occ = res["occluded_query"]
    assert occ["clean/mAP"] == pytest.approx(res["search"]["mAP"])
    assert occ["clean/top1"] == pytest.approx(res["search"]["top1"])
    # the same embedding as unoccluded: the same numbers
    assert occ["2x1@0.25/mAP"] == pytest.approx(res["search"]["mAP"])
    # negated similarities. Query 0: f4 (0) N, f2 (-.25) T, f3 (-.5) N, f1 (-.875) T ->
    # (1/2 + 2/4) / 2 = 1/2, top-1 wrong; query 1: f4 (0) T first -> 1, top-1 right
    assert occ["2x1@0.50/mAP"] == pytest.approx(100 * (1 / 2 + 1) / 2)
    assert occ["2x1@0.50/top1"] == pytest.approx(50.0)
    assert occ["2x1@0.25/covered"] == pytest.approx(100 * (0.1 + 0.2) / 2)
    assert occ["2x1@0.50/covered"] == pytest.approx(100 * (0.3 + 0.5) / 2)
    png = (out / "occluded_queries.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    # saved with the results; evaluate_saved reproduces them and draws the curve again
    path = str(out / "search_results.pth")
    saved = load_search_results(path)
    assert saved.occluded_queries.embeddings.shape == (2, 2, len(QUERY_EMB))
    assert saved.occluded_queries.names == ["2x1@0.25", "2x1@0.50"]
    curve = tmp_path / "curve.png"
    again = _tool().main([path, "--occlusion-curve", str(curve)])
    assert again == res
    assert curve.read_bytes().startswith(b"\x89PNG")
    # a file saved without the evaluation has no curve to draw
    plain = tmp_path / "plain"
    _run(PersonSearchEvaluator(dataset, det_thresh=0.5, output_dir=str(plain)), _dicts())
    with pytest.raises(ValueError, match="holds no occluded-query embeddings"):
        _tool().main([str(plain / "search_results.pth"), "--occlusion-curve", str(curve)])


def test_occluded_queries_missing_inputs_are_named(dataset):
    ev = PersonSearchEvaluator(dataset, det_thresh=0.5, occluded_queries=OCCLUSION)
    with pytest.raises(KeyError, match="has no 'occluded_query_coverage'.*test mapper"):
        _run(ev, _dicts())  # plain inputs
    query = next(d for d in _dicts() if "query_index" in d)
    inp, out = _occluded_inputs_outputs(query)
    del out["occluded_query_embeddings"]
    with pytest.raises(KeyError, match="no 'occluded_query_embeddings'"):
        ev.process([inp], [out])
    inp, out = _occluded_inputs_outputs(query)
    out["occluded_query_embeddings"] = out["occluded_query_embeddings"][:1]
    with pytest.raises(ValueError, match="expected 2 occluded versions"):
        ev.process([inp], [out])
    with pytest.raises(ValueError, match=r"must be \(Q, 2, D\) for 1 grids x 2 coverages"):
        OccludedQueryData([(2, 1)], [0.25, 0.5], "mean", 0, np.zeros((2, 3, 4)), np.zeros((2, 3)))


def test_occluded_queries_from_config(dataset):
    cfg = get_cfg()
    q = cfg.TEST.PERSON_SEARCH.OCCLUDED_QUERIES
    q.ENABLED, q.GRIDS, q.COVERAGES = True, [[2, 1]], [0.25, 0.5]
    ev = PersonSearchEvaluator(cfg, dataset)
    assert ev._occlusion == OCCLUSION
    res = _run_occluded(ev, _dicts())
    assert res["occluded_query"]["2x1@0.50/top1"] == pytest.approx(50.0)
