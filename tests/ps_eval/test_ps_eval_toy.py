"""PersonSearchEvaluator end to end on toy datasets of both formats, with an oracle "model".

The oracle detects every ground-truth person (score 0.9) and gives it a one-hot embedding: one
axis per labelled identity, one per unlabelled box; the query embedding is its identity's axis.
It also fires a false detection per image at score 0.3 carrying the query identities' axes
(under ``det_thresh`` 0.5, so it must not count) and one at 0.6 on an axis of its own. Every
true positive then has similarity 1 and every searched negative 0, so by hand:
AP = count_tp / count_gt per query, top-k = (count_tp > 0), detection AP = recall = 1 when all
persons are detected. Dropping the detections of some images removes exactly their true
positives.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances

from person_search.data.toy import make_toy_dataset
from person_search.evaluation import PersonSearchEvaluator
from person_search.evaluation.person_search_evaluator import logger as evaluator_logger
from person_search.evaluation.saved_results import load_search_results

TOY_SIZES = {
    "cuhk_sysu": {
        "num_train_ids": 2,
        "num_test_ids": 5,
        "num_train_images": 4,
        "num_test_images": 52,
        "num_unlabelled_ids": 4,
    },
    "prw": {
        "num_train_ids": 2,
        "num_test_ids": 4,
        "num_train_frames": 4,
        "num_test_frames": 14,
        "num_cameras": 3,
        "num_unlabelled_ids": 4,
    },
}
FALSE_BOX = [0.0, 0.0, 4.0, 4.0]  # far from every toy person (they are >= 30% image height)


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("ps_eval_toy")
    for fmt, sizes in TOY_SIZES.items():
        make_toy_dataset(fmt, str(root / f"toy_{fmt}"), 0, **sizes)
    return str(root)


class _Oracle:
    """Embeddings: axis per labelled identity (original id), then one per unlabelled box."""

    def __init__(self, dicts: list[dict]) -> None:
        gallery = [d for d in dicts if "query_index" not in d]
        pids = sorted(
            {a["person_id"] for d in dicts for a in d.get("annotations", ()) if a["person_id"] >= 0}
            | {d["person_id"] for d in dicts if "query_index" in d}
        )
        self.axis = {pid: i for i, pid in enumerate(pids)}
        num_unlabelled = sum(a["person_id"] < 0 for d in gallery for a in d["annotations"])
        self.dim = len(pids) + num_unlabelled + len(gallery)
        self.next_free = len(pids)
        self.query_pids = [self.axis[d["person_id"]] for d in dicts if "query_index" in d]

    def _unit(self, axes: list[int]) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        v[axes] = 1.0
        return v / np.linalg.norm(v)

    def _fresh(self) -> np.ndarray:
        self.next_free += 1
        return self._unit([self.next_free - 1])

    def outputs(self, d: dict, *, detect: bool) -> dict:
        if "query_index" in d:
            emb = self._unit([self.axis[d["person_id"]]])
            return {"query_embeddings": torch.from_numpy(emb)[None]}
        boxes, scores, embs = [], [], []
        if detect:
            for a in d["annotations"]:
                pid = a["person_id"]
                boxes.append(a["bbox"])
                scores.append(0.9)
                embs.append(self._unit([self.axis[pid]]) if pid >= 0 else self._fresh())
        boxes += [FALSE_BOX, FALSE_BOX]
        scores += [0.3, 0.6]
        embs += [self._unit(self.query_pids), self._fresh()]
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.scores = torch.tensor(scores, dtype=torch.float32)
        inst.embeddings = torch.from_numpy(np.stack(embs))
        return {"instances": inst}


def _evaluate(name: str, output_dir: str, detected) -> tuple[dict, list[dict]]:
    dicts = DatasetCatalog.get(name)
    oracle = _Oracle(dicts)
    evaluator = PersonSearchEvaluator(name, det_thresh=0.5, output_dir=output_dir)
    evaluator.reset()
    for d in dicts:
        evaluator.process([d], [oracle.outputs(d, detect=detected(d))])
    return evaluator.evaluate(), dicts


def _expected(protocol, variant_name: str, detected_images: set[str]) -> tuple[float, float]:
    """mAP and top-1 (percent) from the hand rule AP = count_tp / count_gt."""
    variant = protocol.variant(variant_name)
    ids = protocol.gallery_image_ids
    aps, top1 = [], []
    for pos, qi in enumerate(variant.query_indices):
        query = protocol.queries[qi]
        searched = (
            set(range(len(ids)))
            if variant.galleries is None
            else set(variant.galleries[pos].tolist())
        )
        searched.discard(ids.index(query.image_id))
        if variant.cross_camera:
            searched = {g for g in searched if protocol.gallery_camera_ids[g] != query.camera_id}
        listed = [int(g) for g in variant.positives[pos][0] if int(g) in searched]
        if not listed:
            continue
        found = {g for g in listed if ids[g] in detected_images}
        aps.append(len(found) / len(listed))
        top1.append(float(bool(found)))
    assert aps, f"{variant_name}: no query with ground truth"
    return 100 * float(np.mean(aps)), 100 * float(np.mean(top1))


@pytest.mark.parametrize("prefix", ["toy_cuhk_sysu", "toy_prw"])
def test_oracle_scores_full_marks(prefix, datasets_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", datasets_root)
    name = f"{prefix}_test"
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    level = evaluator_logger.level
    evaluator_logger.addHandler(handler)
    evaluator_logger.setLevel(logging.INFO)
    try:
        res, dicts = _evaluate(name, str(tmp_path), detected=lambda d: True)
    finally:
        evaluator_logger.removeHandler(handler)
        evaluator_logger.setLevel(level)
    protocol = MetadataCatalog.get(name).search_protocol
    search = res["search"]
    for variant in protocol.variant_loaders:
        assert search[f"{variant}/mAP"] == pytest.approx(100.0), variant
        assert search[f"{variant}/top1"] == pytest.approx(100.0), variant
    assert search["mAP"] == search[f"{protocol.default_variant}/mAP"]
    for key in ("AP", "recall", "labelled_recall"):
        assert res["detection"][key] == pytest.approx(100.0), key
    # Labelled only (the reference rule): gts are the labelled persons of images holding one,
    # but every detection there counts, so the detected unlabelled persons are false positives
    # tied with the true ones at 0.9: one threshold, precision L / (L + U), recall 1.
    with_labelled = [
        d
        for d in dicts
        if "query_index" not in d and any(a["person_id"] >= 0 for a in d["annotations"])
    ]
    num_l = sum(a["person_id"] >= 0 for d in with_labelled for a in d["annotations"])
    num_u = sum(a["person_id"] < 0 for d in with_labelled for a in d["annotations"])
    assert num_u > 0
    assert res["detection"]["labelled_AP"] == pytest.approx(100 * num_l / (num_l + num_u))
    # The printed table names the dataset, the detection threshold and every variant.
    table = next(m for m in messages if "Person search on" in m)
    assert f"Person search on {name} (det_thresh=0.5, CBGM off)" in table
    assert all(v in table for v in protocol.variant_loaders)
    saved = load_search_results(os.path.join(str(tmp_path), "search_results.pth"))
    num_gallery = len(protocol.gallery_image_ids)
    assert saved.detections.num_images == num_gallery
    assert len(saved.query_embeddings) == len(protocol.queries) == len(dicts) - num_gallery


@pytest.mark.parametrize("prefix", ["toy_cuhk_sysu", "toy_prw"])
def test_undetected_images_lower_ap_by_hand_rule(prefix, datasets_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", datasets_root)
    name = f"{prefix}_test"
    gallery_ids = [d["image_id"] for d in DatasetCatalog.get(name) if "query_index" not in d]
    detected_images = set(gallery_ids[1::2])  # every other gallery image has no true detection

    def detected(d: dict) -> bool:
        return d["image_id"] in detected_images

    res, dicts = _evaluate(name, str(tmp_path), detected)
    protocol = MetadataCatalog.get(name).search_protocol
    for variant in protocol.variant_loaders:
        m_ap, top1 = _expected(protocol, variant, detected_images)
        assert variant != protocol.default_variant or m_ap < 100.0
        assert res["search"][f"{variant}/mAP"] == pytest.approx(m_ap), variant
        assert res["search"][f"{variant}/top1"] == pytest.approx(top1), variant
    gallery = [d for d in dicts if "query_index" not in d]
    found = sum(len(d["annotations"]) for d in gallery if d["image_id"] in detected_images)
    total = sum(len(d["annotations"]) for d in gallery)
    # every detected person ranks above the 0.6 false positives: detection AP = recall
    assert res["detection"]["recall"] == pytest.approx(100 * found / total)
    assert res["detection"]["AP"] == pytest.approx(100 * found / total)
