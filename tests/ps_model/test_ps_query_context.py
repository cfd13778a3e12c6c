"""The CBGM query context of PersonSearchRCNN: the model's detections in the query image with the
query box forced into the RoI heads' final NMS (SeqNet's query pass), for every head type."""

from __future__ import annotations

import person_search  # noqa: F401  (compat layer + registration, before detectron2 imports)

# isort: split
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, pairwise_iou
from ps_baselines_testutils import (
    single_thread,  # noqa: F401  (fixture)
    toy_cfg,
    train_step,
    training_inputs,
)

from person_search.modeling.roi_heads.hoim_roi_heads import HOIMROIHeads
from person_search.modeling.roi_heads.oim_roi_heads import OIMROIHeads
from person_search.modeling.roi_heads.seqnet_roi_heads import SeqNetROIHeads

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIGS = [
    "oim/oim_toy_cuhk_sysu.yaml",
    "seqnet/seqnet_toy_cuhk_sysu.yaml",
    "seqnext/seqnext_toy_cuhk_sysu.yaml",
    "hoim/hoim_toy_cuhk_sysu.yaml",
]
K2 = 50  # every row: a difference anywhere in the NMS output shows
QUERY_BOX = [40.0, 20.0, 70.0, 90.0]  # in the (96, 128) input
SCALE = 2.0  # original image size / input size


def _model(config: str, cbgm: bool):
    torch.manual_seed(0)
    cfg = toy_cfg(config)
    cfg.TEST.PERSON_SEARCH.CBGM.ENABLED = cbgm
    cfg.TEST.PERSON_SEARCH.CBGM.K2 = K2
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0  # an untrained model: keep every candidate
    cfg.MODEL.SEQNET.FIRST_SCORE_THRESH_TEST = 0.0
    cfg.MODEL.RPN.NMS_THRESH = 0.95  # many overlapping proposals: work for the final NMS
    cfg.MODEL.SEQNET.FIRST_NMS_THRESH_TEST = 0.95
    model = build_model(cfg)
    train_step(model, training_inputs())  # BatchNorm running statistics are no longer 0/1
    return model.eval()


def _inputs():
    image = torch.randint(0, 256, (3, 96, 128), generator=torch.Generator().manual_seed(1))
    scene = {"image": image.to(torch.uint8), "height": 192, "width": 256, "image_id": "s.jpg"}
    query = dict(scene, query_boxes=Boxes(torch.tensor([QUERY_BOX])), query_index=0)
    return scene, query


def _final_nms(heads) -> tuple[str, str]:
    """Where each head type keeps its final NMS IoU threshold and top-k (see
    person_search.modeling.roi_heads.forced_detections)."""
    if isinstance(heads, SeqNetROIHeads):
        return "second_nms_thresh", "test_topk"
    if isinstance(heads, HOIMROIHeads):
        return "test_nms_thresh", "test_topk"
    assert isinstance(heads, OIMROIHeads)
    return "box_predictor.test_nms_thresh", "box_predictor.test_topk_per_image"


def _get(obj, path):
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def _set(obj, path, value):
    *parents, name = path.split(".")
    setattr(_get(obj, ".".join(parents)) if parents else obj, name, value)


def _greedy_nms(first: list[int], boxes: torch.Tensor, nms_thresh: float) -> list[int]:
    """Greedy NMS by hand: the rows ``first`` are kept (in that order), then every other row in
    order (scores decreasing) unless it overlaps a kept one by more than ``nms_thresh``."""
    kept = list(first)
    for i in range(len(boxes)):
        if i in first:
            continue
        if (
            not kept
            or pairwise_iou(Boxes(boxes[i : i + 1]), Boxes(boxes[kept])).max() <= nms_thresh
        ):
            kept.append(i)
    return kept


def _context_by_hand(q_box, cand, nms_thresh, *, nms_before_query: bool = False) -> list[int]:
    """Rows (0 = the query box, i + 1 = candidate i) of the context: one NMS over the candidates
    and the query box kept first (SeqNet), or, to tell them apart, the query box added to the
    output of a first NMS over the candidates alone."""
    boxes = torch.cat([q_box[None], cand.pred_boxes.tensor])
    rows = list(range(1, len(boxes)))
    if nms_before_query:
        rows = [r + 1 for r in _greedy_nms([], boxes[1:], nms_thresh)]
    order = [0, *rows]
    return [order[i] for i in _greedy_nms([0], boxes[order], nms_thresh)]


def _discriminating_query(cand, nms_thresh) -> torch.Tensor:
    """A query box (near a candidate) for which the two NMS orders of _context_by_hand differ."""
    for box in cand.pred_boxes.tensor:
        for dx in (-8.0, -4.0, 0.0, 4.0, 8.0):
            for dy in (-8.0, -4.0, 0.0, 4.0, 8.0):
                q = box + torch.tensor([dx + 1, dy + 1, dx - 1, dy - 1])
                if q[0] < 0 or q[1] < 0 or q[2] > 256 or q[3] > 192:
                    continue
                one = _context_by_hand(q, cand, nms_thresh)
                if one != _context_by_hand(q, cand, nms_thresh, nms_before_query=True):
                    return q
    raise AssertionError("no query box tells one NMS from two on these candidates")


@pytest.mark.parametrize("config", CONFIGS)
def test_context_is_one_nms_over_candidates_and_the_query_box(config):
    model = _model(config, cbgm=True)
    assert model.query_context_size == K2
    scene, query = _inputs()
    # The head's final-NMS candidates (that NMS switched off), sorted by score.
    iou_key, topk_key = _final_nms(model.roi_heads)
    nms_thresh, topk = _get(model.roi_heads, iou_key), _get(model.roi_heads, topk_key)
    _set(model.roi_heads, iou_key, 1.0)  # suppresses nothing (IoU > 1 never holds)
    _set(model.roi_heads, topk_key, -1)
    with torch.no_grad():
        cand = model([scene])[0]["instances"]
    _set(model.roi_heads, iou_key, nms_thresh)
    _set(model.roi_heads, topk_key, topk)
    # The query: where NMS over candidates + query box (SeqNet) differs from the query box added
    # after an NMS of the candidates (a detection removed by one the query box then removes).
    q_box = _discriminating_query(cand, nms_thresh)
    query["query_boxes"] = Boxes(q_box[None] / SCALE)

    with torch.no_grad():
        out_scene, out_query = model([scene, query])
    ctx = out_query["query_context"]
    # Row 0: the query box (original coordinates), score 1, the query's own embedding.
    torch.testing.assert_close(ctx.pred_boxes.tensor[0], q_box)
    assert ctx.scores[0] == 1.0 and ctx.image_size == (192, 256)
    assert torch.equal(ctx.embeddings[:1], out_query["query_embeddings"])
    # Then exactly one NMS by hand over the candidates and the query box, top-k, first K2 rows.
    rows = [r - 1 for r in _context_by_hand(q_box, cand, nms_thresh)[1:]]
    rows = rows[: (topk if topk >= 0 else len(rows)) - 1][: K2 - 1]
    assert len(ctx) == 1 + len(rows) >= 3
    # (The reference ran in another batch: float32 rounding may differ in the last bits.)
    torch.testing.assert_close(
        ctx.pred_boxes.tensor[1:], cand.pred_boxes.tensor[rows], rtol=1e-5, atol=1e-3
    )
    torch.testing.assert_close(ctx.scores[1:], cand.scores[rows], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ctx.embeddings[1:], cand.embeddings[rows], rtol=1e-5, atol=1e-6)
    # The gallery pass is unchanged by the context (same as a model built with CBGM off).
    plain = _model(config, cbgm=False)
    assert plain.query_context_size == 0
    with torch.no_grad():
        plain_scene, plain_query = plain([scene, query])
    assert "query_context" not in plain_query
    a, b = out_scene["instances"], plain_scene["instances"]
    assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.embeddings, b.embeddings)


def test_context_needs_one_query_box_and_inference():
    model = _model(CONFIGS[0], cbgm=True)
    _, query = _inputs()
    query["query_boxes"] = Boxes(torch.tensor([QUERY_BOX, QUERY_BOX]))
    with pytest.raises(ValueError, match="one query box per image, got 2"), torch.no_grad():
        model([query])
    heads = model.roi_heads.train()
    with pytest.raises(ValueError, match="forced_detections are an inference input"):
        heads(None, {}, [], [], forced_detections=[])
