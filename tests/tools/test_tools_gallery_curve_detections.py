"""tools/plot_gallery_curve.py (the gallery-size curve of saved results, any model), the
detection view (person_search.visualization.detection_view, tools/visualize_detections.py
--show-masks) and the search visualizer drawing instance masks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances
from tools_testutils import REPO

from person_search.evaluation.gallery_curve import gallery_size_curve
from person_search.evaluation.person_search_evaluator import load_protocol_and_ground_truth
from person_search.evaluation.saved_results import load_search_results, save_search_results
from person_search.evaluation.search_metrics import GalleryDetections
from person_search.visualization.detection_view import DETECTION_COLOR, draw_detections
from person_search.visualization.search_visualizer import WRONG_COLOR, draw_panel

DATASET = "toy_cuhk_sysu_test"


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_tool", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _results_file(path: str, seed: int) -> str:
    """Every ground-truth person of the tiny toy test set detected, random 8-d embeddings
    (the query's own person made more similar with ``seed``)."""
    protocol, gt = load_protocol_and_ground_truth(DATASET)
    rng = np.random.default_rng(seed)
    per_image = []
    for g in range(len(protocol.gallery_image_ids)):
        boxes = gt.boxes[gt.offsets[g] : gt.offsets[g + 1]].astype(np.float32)
        per_image.append(
            (boxes, np.full(len(boxes), 0.9, np.float32), rng.normal(size=(len(boxes), 8)))
        )
    save_search_results(
        path,
        dataset_name=DATASET,
        protocol=protocol,
        variants=[protocol.variant(n) for n in protocol.variant_loaders],
        ground_truth=gt,
        detections=GalleryDetections.from_per_image(per_image, embedding_dim=8),
        query_embeddings=rng.normal(size=(len(protocol.queries), 8)).astype(np.float32),
        settings={"det_thresh": 0.5, "cbgm_k1": None, "cbgm_k2": None},
    )
    return path


def test_plot_gallery_curve_tool(tiny_cuhk, tmp_path):
    a = _results_file(str(tmp_path / "a.pth"), 0)
    b = _results_file(str(tmp_path / "b.pth"), 1)
    png, points = str(tmp_path / "curve.png"), str(tmp_path / "curve.json")
    tool = _load_tool("plot_gallery_curve")
    out = tool.main([f"A={a}", f"B={b}", "--output", png, "--json", points, "--dataset", DATASET])
    picture = cv2.imread(png)
    assert picture is not None and picture.shape[0] > 200 and picture.shape[1] > 400
    expected = gallery_size_curve(load_search_results(a))
    assert out["A"] == [vars(p) for p in expected] == json.loads(Path(points).read_text())["A"]
    assert [p["gallery_size"] for p in out["B"]] == [50]  # the tiny toy set's only size
    with pytest.raises(ValueError, match="two results are labelled 'A'"):
        tool.main([f"A={a}", f"A={b}", "--output", png])
    with pytest.raises(SystemExit):
        tool.main([a, "--output", str(tmp_path / "curve.jpg")])


def _instances(with_masks: bool) -> Instances:
    inst = Instances((60, 80))
    inst.pred_boxes = Boxes(torch.tensor([[10.0, 10, 30, 50], [50, 5, 70, 40]]))
    inst.scores = torch.tensor([0.9, 0.2])
    if with_masks:
        masks = torch.zeros(2, 60, 80, dtype=torch.bool)
        masks[0, 20:40, 15:25] = True
        masks[1, 10:30, 55:65] = True
        inst.pred_masks = masks
    return inst


def test_draw_detections_with_and_without_masks():
    image = np.full((60, 80, 3), 255, np.uint8)
    boxes_only = draw_detections(image, _instances(True), score_thresh=0.5)
    with_masks = draw_detections(image, _instances(True), score_thresh=0.5, show_masks=True)
    assert boxes_only.shape == with_masks.shape == (60, 80, 3)
    # inside detection 0's mask the picture is tinted with the detection colour ...
    tint = with_masks[30, 20].astype(int) - boxes_only[30, 20].astype(int)
    green = int(np.argmax(DETECTION_COLOR))
    assert tint[green] > tint[(green + 1) % 3] and np.abs(tint).sum() > 30
    # ... the 0.2-score detection is not drawn, and outside the masks nothing changes
    np.testing.assert_array_equal(with_masks[20, 60], boxes_only[20, 60])
    np.testing.assert_array_equal(with_masks[5, 5], boxes_only[5, 5])
    with pytest.raises(ValueError, match="no pred_masks"):
        draw_detections(image, _instances(False), show_masks=True)
    with pytest.raises(ValueError, match="pred_masks are"):
        draw_detections(image[:30], _instances(True), score_thresh=0.5, show_masks=True)


def test_search_panel_draws_the_match_mask():
    image = np.full((100, 80, 3), 255, np.uint8)
    box = (20.0, 10.0, 60.0, 90.0)
    mask = np.zeros((28, 28), bool)
    mask[:, :14] = True  # the left half of the box
    plain = draw_panel(image, box, "x", WRONG_COLOR, height=112)
    drawn = draw_panel(image, box, "x", WRONG_COLOR, height=112, mask=mask)
    scale = (112 - 12) / 100  # panel inner height / image height
    left = (int(60 * scale) + 6, int(30 * scale) + 6)  # (row, col) inside the left half
    right = (int(60 * scale) + 6, int(50 * scale) + 6)
    assert np.abs(drawn[left].astype(int) - plain[left].astype(int)).sum() > 30
    np.testing.assert_array_equal(drawn[right], plain[right])


def test_visualize_detections_refuses_masks_of_a_model_without_mask_branch(tmp_path):
    tool = _load_tool("visualize_detections")
    config = str(REPO / "configs" / "oim" / "oim_toy_cuhk_sysu.yaml")
    with pytest.raises(ValueError, match="has no mask branch"):
        tool.main(
            [
                "--config-file",
                config,
                "--output",
                str(tmp_path),
                "--show-masks",
                "MODEL.WEIGHTS",
                "w.pth",
            ]
        )
    with pytest.raises(ValueError, match="needs MODEL.WEIGHTS"):
        tool.main(["--config-file", config, "--output", str(tmp_path)])
    with pytest.raises(ValueError, match="expected MODULE:FUNCTION"):
        tool.main(["--config-file", config, "--output", str(tmp_path), "--add-config", "pan"])
