"""tools/visualize_search.py and person_search.visualization.search_visualizer: the ranking
drawn (the evaluation's, CBGM included), which matches are marked correct, the pictures, and the
errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from tools_testutils import REPO

from person_search.engine import PersonSearchTrainer, load_config
from person_search.evaluation.cbgm import CBGMParams
from person_search.evaluation.person_search_evaluator import load_protocol_and_ground_truth
from person_search.evaluation.saved_results import load_search_results, save_search_results
from person_search.evaluation.search_metrics import GalleryDetections, evaluate_search
from person_search.visualization.search_visualizer import (
    CORRECT_COLOR,
    FRAME,
    PANEL_HEIGHT,
    QUERY_COLOR,
    WRONG_COLOR,
    dataset_image_paths,
    image_root_paths,
    rank_query,
    visualize_saved_results,
)

TOOL = REPO / "tools" / "visualize_search.py"
DATASET = "toy_cuhk_sysu_test"
DIM = 4
E0 = np.eye(DIM, dtype=np.float32)[0]  # the chosen query's direction
E1 = np.eye(DIM, dtype=np.float32)[1]  # everything else


def _direction(similarity: float) -> np.ndarray:
    """Unit vector whose cosine with E0 is ``similarity``."""
    return similarity * E0 + np.sqrt(1.0 - similarity**2) * E1


def _load_tool():
    spec = importlib.util.spec_from_file_location("visualize_search_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def saved_case(tiny_cuhk, tmp_path):
    """A results file over the tiny toy test set whose ranking of one query is known.

    Every gallery person is detected at its ground-truth box with an embedding orthogonal to
    the query's (similarity 0), except, for query ``q`` (the first with two positive images
    P0, P1 in its gallery, and N0 a searched image without the person):

    =====  ============================  ======  ==========  ========================
    image  box                           sim     score       verdict
    =====  ============================  ======  ==========  ========================
    P0     the person's box              1.00    0.9         correct
    P0     the box shifted by 2 px       0.97    0.9         wrong (not the best there)
    P1     far from the person           0.95    0.9         wrong (IoU 0)
    N0     a person's box                0.90    0.9         wrong (not the person)
    P1     the person's box              0.80    0.9         correct
    N0     another box                   0.99    0.3         below det_thresh 0.5
    =====  ============================  ======  ==========  ========================
    """
    protocol, gt = load_protocol_and_ground_truth(DATASET)
    variant = protocol.variant(protocol.default_variant)
    pos = next(
        (i for i, (images, _) in enumerate(variant.positives) if len(np.unique(images)) >= 2),
        None,
    )
    if pos is None:
        pytest.fail("the tiny toy set has no query with two positive gallery images")
    q = int(variant.query_indices[pos])
    pos_images, pos_boxes = variant.positives[pos]
    pos_images = np.asarray(pos_images)
    p0, p1 = (int(i) for i in pos_images[:2])
    box0, box1 = np.asarray(pos_boxes[0], float), np.asarray(pos_boxes[1], float)
    searched = np.asarray(variant.galleries[pos])
    n0 = int(next(i for i in searched if i not in set(pos_images.tolist())))

    per_image = []
    for g in range(len(protocol.gallery_image_ids)):
        boxes = list(gt.boxes[gt.offsets[g] : gt.offsets[g + 1]])
        sims = [0.0] * len(boxes)
        scores = [0.9] * len(boxes)
        if g == p0:
            k = int(np.argmin(np.abs(np.asarray(boxes) - box0).sum(1)))
            sims[k] = 1.0
            boxes.append(box0 + 2.0)
            sims.append(0.97)
            scores.append(0.9)
        if g == p1:
            k = int(np.argmin(np.abs(np.asarray(boxes) - box1).sum(1)))
            sims[k] = 0.8
            # A box of IoU 0 with the person: in the corner, or right of the person.
            w = box1[2] - box1[0]
            far = np.array([0.0, 0.0, 8.0, 16.0]) if box1[0] > 20 else box1 + [w + 20, 0, w + 20, 0]
            boxes.append(far)
            sims.append(0.95)
            scores.append(0.9)
        if g == n0:
            sims[0] = 0.9
            boxes.append(np.array([1.0, 1.0, 11.0, 31.0]))
            sims.append(0.99)
            scores.append(0.3)
        emb = np.stack([_direction(s) for s in sims])
        per_image.append((np.asarray(boxes, np.float32), np.asarray(scores, np.float32), emb))
    detections = GalleryDetections.from_per_image(per_image, embedding_dim=DIM)
    queries = np.tile(E1, (len(protocol.queries), 1))
    queries[q] = E0
    path = str(tmp_path / "search_results.pth")
    save = {
        "dataset_name": DATASET,
        "protocol": protocol,
        "variants": [variant],
        "ground_truth": gt,
        "detections": detections,
        "query_embeddings": queries,
    }
    save_search_results(
        path, **save, settings={"det_thresh": 0.5, "cbgm_k1": None, "cbgm_k2": None}
    )
    # The same results evaluated with CBGM (k1 = 3, k2 = 2): query q's context is its box and a
    # person looking like every other gallery person (E1); other queries' is their box alone.
    contexts = GalleryDetections.from_per_image(
        [
            (np.zeros((1 + (i == q), 4)), np.ones(1 + (i == q)), np.stack([e, E1][: 1 + (i == q)]))
            for i, e in enumerate(queries)
        ],
        embedding_dim=DIM,
    )
    cbgm_path = str(tmp_path / "search_results_cbgm.pth")
    save_search_results(
        cbgm_path,
        **save,
        settings={"det_thresh": 0.5, "cbgm_k1": 3, "cbgm_k2": 2},
        query_contexts=contexts,
    )
    return {"path": path, "cbgm_path": cbgm_path, "query": q, "p0": p0, "p1": p1, "n0": n0}


def _evaluation(saved, query: int, cbgm: CBGMParams | None = None):
    """The evaluator's per-query results of the default variant, and the query's row."""
    variant = saved.protocol.variant(saved.protocol.default_variant)
    res = evaluate_search(
        saved.protocol,
        saved.detections,
        saved.query_embeddings,
        det_thresh=0.5,
        variants=[variant],
        cbgm=cbgm,
        contexts=saved.query_contexts,
    )[variant.name]
    return res, int(np.flatnonzero(variant.query_indices == query)[0])


def test_ranking_and_verdicts_follow_the_evaluation(saved_case):
    saved = load_search_results(saved_case["path"])
    variant = saved.protocol.variant(saved.protocol.default_variant)
    matches = rank_query(saved, saved_case["query"], top_k=5, det_thresh=0.5, variant=variant)
    p0, p1, n0 = saved_case["p0"], saved_case["p1"], saved_case["n0"]
    assert [m.gallery_index for m in matches] == [p0, p0, p1, n0, p1]
    np.testing.assert_allclose([m.similarity for m in matches], [1.0, 0.97, 0.95, 0.9, 0.8], 1e-5)
    assert [m.correct for m in matches] == [True, False, False, False, True]
    assert [m.rank for m in matches] == [1, 2, 3, 4, 5]

    # The evaluator, independently: a top-1 hit; true positives at similarity 1.0 (rank 1),
    # 0.8 (rank 5) and 0 in the other positive images (tied with all n searched detections).
    res, row = _evaluation(saved, saved_case["query"])
    positives = np.unique(np.asarray(variant.positives[row][0]))
    assert res.topk_hits[row, 0]
    assert res.count_tp[row] == res.count_gt[row] == len(positives)
    kept = saved.detections.above(0.5)
    n = int(np.diff(kept.offsets)[np.unique(variant.galleries[row])].sum())
    rest = len(positives) - 2
    expected_ap = (1 / 1 + 2 / 5 + rest * len(positives) / n) / len(positives)
    assert res.average_precision[row] == pytest.approx(expected_ap)


def test_cbgm_ranking_is_drawn_as_evaluated(saved_case, tmp_path):
    """A results file evaluated with CBGM is drawn with CBGM (unless told otherwise)."""
    saved = load_search_results(saved_case["cbgm_path"])
    q, p0, p1, n0 = (saved_case[k] for k in ("query", "p0", "p1", "n0"))
    (record,) = visualize_saved_results(
        saved, dataset_image_paths(DATASET), str(tmp_path / "vis"), [q], top_k=5
    )
    # The 3 most similar detections (P0 1.0, P0 .97, P1 .95) select P0 and P1. Context
    # [query, E1]: in P0 the query keeps the person (1 + 1 beats any other pair): max 1,
    # unchanged; in P1 the query takes the far box (.95 + 1 beats .8 + 1): it gets max(.95, 1)
    # = 1, tied with P0's person, and ties are drawn negatives first; N0 (.9) is not re-scored.
    matches = record.matches
    assert [m.gallery_index for m in matches] == [p1, p0, p0, n0, p1]
    np.testing.assert_allclose([m.similarity for m in matches], [1.0, 1.0, 0.97, 0.9, 0.8], 1e-5)
    assert [m.correct for m in matches] == [False, True, False, False, True]
    # The evaluation with the same CBGM: a negative ties the best true positive: top-1 miss,
    # as the first panel shows.
    res, row = _evaluation(saved, q, cbgm=CBGMParams(k1=3, k2=2))
    assert res.topk_hits[row].tolist() == [False, True, True]
    # --no-cbgm draws the plain ranking.
    (plain,) = visualize_saved_results(
        saved, dataset_image_paths(DATASET), str(tmp_path / "plain"), [q], top_k=5, cbgm=False
    )
    assert [m.gallery_index for m in plain.matches] == [p0, p0, p1, n0, p1]
    with pytest.raises(ValueError, match="CBGM needs the query contexts"):
        visualize_saved_results(
            load_search_results(saved_case["path"]),
            dataset_image_paths(DATASET),
            str(tmp_path / "none"),
            [q],
            cbgm=True,
        )


def _near(pixels: np.ndarray, color, tol: int = 25) -> np.ndarray:
    return (np.abs(pixels.astype(int) - np.asarray(color)) <= tol).all(axis=-1)


def test_pictures_mark_correct_and_wrong_matches(saved_case, tmp_path):
    saved = load_search_results(saved_case["path"])
    out_dir = tmp_path / "vis"
    (record,) = visualize_saved_results(
        saved, dataset_image_paths(DATASET), str(out_dir), [saved_case["query"]], top_k=5
    )
    assert record.path == str(out_dir / f"query_{saved_case['query']:04d}.png")
    image = cv2.imread(record.path)[:, :, ::-1]  # RGB
    assert image.shape == (PANEL_HEIGHT, record.panel_columns[-1][1], 3)
    assert len(record.panel_columns) == 6  # query + 5 matches

    expected = [QUERY_COLOR] + [CORRECT_COLOR if m.correct else WRONG_COLOR for m in record.matches]
    gallery_files = dataset_image_paths(DATASET)
    boxes = [saved.protocol.queries[record.query_index].box] + [m.box for m in record.matches]
    images = [saved.protocol.queries[record.query_index].image_id] + [
        m.image_id for m in record.matches
    ]
    for (x0, x1), color, box, image_id in zip(record.panel_columns, expected, boxes, images):
        panel = image[:, x0:x1]
        # The frame, all around, in the verdict's colour (exactly: drawn after resizing).
        frame = np.concatenate(
            [
                panel[:FRAME].reshape(-1, 3),
                panel[-FRAME:].reshape(-1, 3),
                panel[:, :FRAME].reshape(-1, 3),
                panel[:, -FRAME:].reshape(-1, 3),
            ]
        )
        assert (frame == np.asarray(color, np.uint8)).all()
        # The box, drawn by Visualizer: its left edge is in the verdict's colour over most of
        # its height, and the other verdict's colour is nowhere on it.
        height = cv2.imread(gallery_files(image_id)).shape[0]
        scale = (PANEL_HEIGHT - 2 * FRAME) / height
        bx0, by0, _, by1 = (np.asarray(box, float) * scale).round().astype(int)
        rows = range(FRAME + by0 + 4, FRAME + min(by1, PANEL_HEIGHT - 2 * FRAME) - 4)
        edge = np.stack([panel[r, FRAME + bx0 - 3 : FRAME + bx0 + 4] for r in rows])
        assert _near(edge, color).any(axis=1).mean() > 0.8
        other = WRONG_COLOR if color == CORRECT_COLOR else CORRECT_COLOR
        assert not _near(edge, other).any()


def test_tool_errors_name_the_problem(saved_case, tmp_path):
    tool = _load_tool()
    bad = tmp_path / "bad.pth"
    bad.write_text("not a results file")
    with pytest.raises(ValueError, match="bad.pth.*not a person-search results file"):
        tool.main(["--results", str(bad), "--output", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        tool.main(["--results", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "o")])
    with pytest.raises(ValueError, match=r"query indices \[99\] are out of range \[0, \d+\)"):
        tool.main(["--results", saved_case["path"], "--output", str(tmp_path), "--queries", "99"])
    with pytest.raises(KeyError, match="no variant 'gallery_7'"):
        tool.main(
            ["--results", saved_case["path"], "--output", str(tmp_path), "--variant", "gallery_7"]
        )
    config = str(REPO / "configs" / "oim" / "oim_toy_cuhk_sysu.yaml")
    with pytest.raises(ValueError, match="needs MODEL.WEIGHTS"):
        tool.main(["--config-file", config, "--output", str(tmp_path)])
    with pytest.raises(NotADirectoryError, match="nowhere"):
        tool.main(
            [
                "--results",
                saved_case["path"],
                "--output",
                str(tmp_path),
                "--image-root",
                str(tmp_path / "nowhere"),
            ]
        )


def test_tool_command_line(saved_case, tmp_path):
    """The script itself: a drawing from an image root, then an error and exit status 1."""
    env = dict(os.environ)
    root = os.path.join(env["DETECTRON2_DATASETS"], "toy_cuhk_sysu", "Image", "SSM")
    q = str(saved_case["query"])
    args = [sys.executable, str(TOOL), "--results", saved_case["path"], "--image-root", root]
    ok = subprocess.run(
        [*args, "--output", str(tmp_path / "vis"), "--queries", q, "--top-k", "3"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert f"query {q}: " in ok.stdout and "[+ - -]" in ok.stdout
    assert (tmp_path / "vis" / f"query_{int(q):04d}.png").is_file()
    bad = subprocess.run(
        [*args, "--output", str(tmp_path / "vis"), "--queries", "1000"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert bad.returncode == 1
    assert "error: query indices [1000] are out of range" in bad.stderr


def test_tool_runs_a_model(tiny_cuhk, tmp_path):
    """--config-file: inference with MODEL.WEIGHTS on the test set, then the pictures."""
    config = str(REPO / "configs" / "oim" / "oim_toy_cuhk_sysu.yaml")
    torch.manual_seed(0)
    model = PersonSearchTrainer.build_model(load_config(config))
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    overrides = ["MODEL.WEIGHTS", str(weights), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    tool = _load_tool()
    records = tool.main(
        [
            "--config-file",
            config,
            "--output",
            str(tmp_path / "vis"),
            "--num-queries",
            "2",
            "--top-k",
            "2",
            "--det-thresh",
            "0",
            *overrides,
        ]
    )
    results = tmp_path / "vis" / "inference" / DATASET / "search_results.pth"
    assert results.is_file()
    assert [r.query_index for r in records] == [0, 1]
    for r in records:
        assert len(r.matches) == 2 and os.path.isfile(r.path)
        assert cv2.imread(r.path).shape[:2] == (PANEL_HEIGHT, r.panel_columns[-1][1])


def test_corrupt_gallery_image_is_named(saved_case, tmp_path):
    """A gallery image that is not an image stops the drawing with its path."""
    image_root = tmp_path / "images"
    image_root.mkdir()
    saved = load_search_results(saved_case["path"])
    for image_id in saved.protocol.gallery_image_ids:
        (image_root / image_id).write_bytes(b"\x00not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image .*images"):
        visualize_saved_results(
            saved, image_root_paths(str(image_root)), str(tmp_path / "out"), [0]
        )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


@pytest.mark.slow
def test_model_cbgm_evaluation_is_reproduced_from_the_saved_file(tiny_cuhk, tmp_path):
    """A model run with CBGM on: the evaluator's numbers come back from the saved file alone
    (that CBGM changes them is shown on hand-built outputs in tests/ps_eval)."""
    config = str(REPO / "configs" / "oim" / "oim_toy_cuhk_sysu.yaml")
    opts = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.PERSON_SEARCH.DET_THRESH", "0.05"]
    opts += ["TEST.PERSON_SEARCH.CBGM.ENABLED", "True", "TEST.PERSON_SEARCH.CBGM.K1", "4"]
    cfg = load_config(config, opts)
    torch.manual_seed(0)
    model = PersonSearchTrainer.build_model(cfg)
    out_dir = str(tmp_path / "inference")
    results = PersonSearchTrainer.test(
        cfg, model, evaluators=[PersonSearchTrainer.build_evaluator(cfg, DATASET, out_dir)]
    )
    path = os.path.join(out_dir, "search_results.pth")
    saved = load_search_results(path)
    contexts = saved.query_contexts
    assert contexts.num_images == len(saved.protocol.queries)
    assert (contexts.scores[contexts.offsets[:-1]] == 1.0).all()  # the query box first
    assert np.diff(contexts.offsets).max() == 3  # K2 rows at most
    spec = importlib.util.spec_from_file_location(
        "evaluate_saved", TOOL.parent / "evaluate_saved.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([path]) == results  # (Trainer.test unwraps a single dataset)
