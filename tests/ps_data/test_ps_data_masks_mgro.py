"""Partial masks in the person-search mapper (gt_has_mask, empty placeholders), MGRO (the
occluded copies of the training mapper, seeded by (SEED, iteration, image id)) and the test
mapper's occluded query copies (TEST.PERSON_SEARCH.OCCLUDED_QUERIES)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from ps_data_helpers import write_jpeg

from person_search.config import get_cfg
from person_search.data import build_person_search_train_loader
from person_search.data.build import ITERATION_KEY, build_person_search_mapper
from person_search.data.mappers import PersonSearchDatasetMapper
from person_search.data.occlusion import (
    MGRO,
    BoxOcclusionTransform,
    QueryOcclusion,
    RandomBoxOcclusion,
    box_pixel_count,
    mgro_seed,
)
from person_search.engine import data_stream_config

HEIGHT, WIDTH = 40, 60
BOXES = [[10, 5, 20, 25], [30, 10, 50, 35]]


@pytest.fixture
def image_dict(tmp_path) -> dict:
    path = str(tmp_path / "s1.jpg")
    write_jpeg(path, HEIGHT, WIDTH)
    annos = [
        {"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "person_id": pid}
        for b, pid in zip(BOXES, [3, -1])
    ]
    x1, y1, x2, y2 = BOXES[1]
    annos[1]["segmentation"] = [[x1, y1, x2, y1, x2, y2, x1, y2]]
    return {"file_name": path, "image_id": "s1.jpg", "height": HEIGHT, "width": WIDTH,
            "annotations": annos}  # fmt: skip


def _cfg(**mgro):
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (HEIGHT,)
    cfg.INPUT.MAX_SIZE_TRAIN = 1000
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.SEED = 7
    cfg.INPUT.MGRO.ENABLED = True
    for key, value in mgro.items():
        setattr(cfg.INPUT.MGRO, key, value)
    return cfg


# ----------------------------------------------------------------------------- partial masks
def test_bitmask_placeholders_are_all_zero(image_dict):
    mapper = PersonSearchDatasetMapper(
        True,
        augmentations=[],
        image_format="BGR",
        use_instance_mask=True,
        instance_mask_format="bitmask",
    )
    inst = mapper(image_dict)["instances"]
    assert inst.gt_has_mask.tolist() == [False, True]
    masks = inst.gt_masks.tensor
    assert masks.shape == (2, HEIGHT, WIDTH) and not masks[0].any()
    x1, y1, x2, y2 = BOXES[1]
    # The rasterised rectangle covers the box (polygon rasterisation: inclusive of its edges).
    assert masks[1, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].all() and masks[1].sum() < 30 * 30


def test_image_without_any_mask_trains_with_flags_off(image_dict):
    image_dict["annotations"][1].pop("segmentation")
    image_dict["annotations"][0]["segmentation"] = []  # an empty polygon list is no mask
    mapper = PersonSearchDatasetMapper(
        True, augmentations=[], image_format="BGR", use_instance_mask=True
    )
    inst = mapper(image_dict)["instances"]
    assert len(inst) == 2 and inst.gt_has_mask.tolist() == [False, False]
    assert inst.gt_masks.polygons == [[], []]
    with pytest.raises(ValueError, match="INPUT.MASK_FORMAT='rle'"):
        PersonSearchDatasetMapper(
            True, augmentations=[], image_format="BGR", instance_mask_format="rle"
        )


# -------------------------------------------------------------------------------------- MGRO
def test_mgro_copies_cover_cells_inside_boxes_only(image_dict):
    cfg = _cfg(GRIDS=[[2, 1], [2, 2]], CELL_PROB=1.0, FILL="constant", FILL_VALUE=0)
    mapper = build_person_search_mapper(cfg, True)
    out = mapper(dict(image_dict, **{ITERATION_KEY: 4}))
    image, copies = out["image"], out["occluded_images"]
    assert copies.shape == (2, 3, HEIGHT, WIDTH) and copies.dtype == torch.uint8
    inside = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    for x1, y1, x2, y2 in BOXES:
        inside[y1:y2, x1:x2] = True
    for level, cells in enumerate([2, 4]):
        changed = (copies[level] != image).any(dim=0)
        assert not changed[~inside].any()  # outside the boxes: untouched
        for x1, y1, x2, y2 in BOXES:
            zeroed = (copies[level][:, y1:y2, x1:x2] == 0).all(dim=0).float().mean().item()
            # cell_prob 1: every cell but one is covered (never a whole box).
            assert zeroed == pytest.approx(1.0 - 1.0 / cells, abs=0.1), (level, zeroed)
    # Test mappers never occlude; neither do training mappers with MGRO off.
    assert "occluded_images" not in build_person_search_mapper(cfg, False)(image_dict)
    cfg.INPUT.MGRO.ENABLED = False
    assert "occluded_images" not in build_person_search_mapper(cfg, True)(image_dict)


def test_mgro_seed_is_seed_iteration_and_image(image_dict):
    def copies(cfg, iteration, image_id="s1.jpg"):
        record = dict(image_dict, image_id=image_id, **{ITERATION_KEY: iteration})
        return build_person_search_mapper(cfg, True)(record)["occluded_images"]

    cfg = _cfg(CELL_PROB=0.5)
    first = copies(cfg, 3)
    assert torch.equal(first, copies(cfg, 3))  # reproducible
    assert not torch.equal(first, copies(cfg, 4))  # another iteration
    assert not torch.equal(first, copies(cfg, 3, "s2.jpg"))  # another image
    cfg.SEED = 8
    assert not torch.equal(first, copies(cfg, 3))  # another run seed
    # SEED < 0: the Trainer's data-stream seed seeds them.
    cfg.SEED = -1
    cfg.DATALOADER.SEED = 7
    assert torch.equal(first, copies(cfg, 3))
    seeds = {mgro_seed(7, i, "s1.jpg") for i in range(100)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(KeyError, match="train_iteration"):
        build_person_search_mapper(_cfg(), True)(image_dict)


def test_mgro_bad_settings_name_the_key():
    for key, value, match in [
        ("GRIDS", [], "INPUT.MGRO.GRIDS"),
        ("GRIDS", [[2, 0]], "INPUT.MGRO.GRIDS"),
        ("CELL_PROB", 1.5, "INPUT.MGRO.CELL_PROB"),
        ("FILL", "blur", "INPUT.MGRO.FILL='blur'"),
    ]:
        with pytest.raises(ValueError, match=match):
            MGRO.from_config(_cfg(**{key: value}))
    cfg = _cfg(FILL="constant", FILL_VALUE=300)
    with pytest.raises(ValueError, match="INPUT.MGRO.FILL_VALUE"):
        MGRO.from_config(cfg)
    cfg = _cfg()
    cfg.SEED = -1
    with pytest.raises(ValueError, match="SEED"):
        MGRO.from_config(cfg)


def test_resumed_loader_makes_the_same_copies(toy_prw, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    shutil.copytree(toy_prw[0], tmp_path / "toy_prw")
    cfg = _cfg()
    cfg.DATASETS.TRAIN = ("toy_prw_train",)
    cfg.INPUT.MIN_SIZE_TRAIN = (60,)  # no flip: the batches do not depend on numpy's RNG
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    full = iter(build_person_search_train_loader(data_stream_config(cfg, 5, 0)))
    batches = [next(full) for _ in range(4)]
    assert [[d[ITERATION_KEY] for d in b] for b in batches] == [[i, i] for i in range(4)]
    resumed = iter(build_person_search_train_loader(data_stream_config(cfg, 5, 2)))
    for expected in batches[2:]:
        got = next(resumed)
        assert [d["file_name"] for d in got] == [d["file_name"] for d in expected]
        for a, b in zip(got, expected):
            assert a[ITERATION_KEY] == b[ITERATION_KEY]
            assert torch.equal(a["occluded_images"], b["occluded_images"])


# --------------------------------------------------------------------- plain augmentation
def test_random_box_occlusion_augmentation():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    boxes = np.array(BOXES, dtype=np.float64)
    aug_input = T.AugInput(image.copy(), boxes=boxes.copy())
    np.random.seed(0)
    transform = T.AugmentationList([RandomBoxOcclusion([[2, 2]], cell_prob=1.0, fill="constant")])(
        aug_input
    )
    assert isinstance(transform[0], BoxOcclusionTransform)
    np.testing.assert_array_equal(aug_input.boxes, boxes)  # geometry unchanged
    changed = (aug_input.image != image).any(axis=2)
    inside = np.zeros((HEIGHT, WIDTH), dtype=bool)
    for x1, y1, x2, y2 in BOXES:
        inside[y1:y2, x1:x2] = True
        assert 0 < changed[y1:y2, x1:x2].mean() < 1  # some cells covered, never all
    assert not changed[~inside].any()
    skipped = T.AugInput(image.copy(), boxes=boxes.copy())
    RandomBoxOcclusion([[2, 2]], cell_prob=1.0, prob=0.0)(skipped)
    np.testing.assert_array_equal(skipped.image, image)


# ------------------------------------------------------------------ occluded-query copies
def test_box_pixel_count_by_hand():
    # pixel centres in [x1, x2) x [y1, y2): x 10.4 -> first centre 10.5, x2 19.6 -> last 19.5
    assert box_pixel_count([10.4, 5.0, 19.6, 25.0], HEIGHT, WIDTH) == 10 * 20
    assert box_pixel_count([-5.0, -5.0, 3.0, 2.0], HEIGHT, WIDTH) == 3 * 2  # clipped
    assert box_pixel_count([55.0, 38.0, 70.0, 50.0], HEIGHT, WIDTH) == 5 * 2
    assert box_pixel_count([10.0, 10.0, 10.2, 20.0], HEIGHT, WIDTH) == 0


def test_mgro_copies_of_a_tensor_equal_the_numpy_copies():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    mgro = MGRO.from_config(_cfg(GRIDS=[[2, 1], [2, 2]], CELL_PROB=0.5), base_seed=11)
    assert mgro.base_seed == 11
    boxes = np.asarray(BOXES, dtype=np.float64)
    expected = mgro.copies(image, boxes, 0, "q")
    got = mgro.copies_of_tensor(
        torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.tensor(boxes), 0, "q"
    )
    assert got.shape == (2, 3, HEIGHT, WIDTH) and got.dtype == torch.uint8
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), expected)


def _query_cfg(**settings):
    cfg = _cfg()
    cfg.INPUT.MGRO.ENABLED = False
    cfg.INPUT.MIN_SIZE_TEST = HEIGHT
    cfg.INPUT.MAX_SIZE_TEST = 1000
    q = cfg.TEST.PERSON_SEARCH.OCCLUDED_QUERIES
    q.ENABLED = True
    for key, value in settings.items():
        setattr(q, key, value)
    return cfg


def test_query_copies_cover_only_the_query_box_with_the_reported_coverage(image_dict):
    cfg = _query_cfg(GRIDS=[[2, 1], [2, 2]], COVERAGES=[0.25, 0.5, 1.0], FILL="noise")
    query = dict(image_dict, query_index=5, query_box=BOXES[1], person_id=3)
    out = build_person_search_mapper(cfg, False)(query)
    image, copies = out["image"], out["occluded_query_images"]
    coverage = out["occluded_query_coverage"]
    assert copies.shape == (6, 3, HEIGHT, WIDTH) and copies.dtype == torch.uint8
    assert coverage.shape == (6,) and coverage.dtype == torch.float32
    occlusion = QueryOcclusion.from_config(cfg)
    assert [QueryOcclusion.setting_name(g, c) for g, c in occlusion.settings] == [
        "2x1@0.25", "2x1@0.50", "2x1@1.00", "2x2@0.25", "2x2@0.50", "2x2@1.00"
    ]  # fmt: skip
    x1, y1, x2, y2 = BOXES[1]
    inside = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    inside[y1:y2, x1:x2] = True
    area = (x2 - x1) * (y2 - y1)
    for k in range(6):
        changed = (copies[k] != image).any(dim=0)
        assert not changed[~inside].any()  # the other person and the background: untouched
        assert changed.sum() < area  # never the whole box
        # noise fill: a covered pixel keeps its value in all channels with chance ~2^-24
        assert coverage[k].item() == pytest.approx(changed.sum().item() / area, abs=2 / area)
    # cell probability 1: all cells but one, never the whole box (the 25 rows split 12 + 13)
    assert coverage[2].item() in (pytest.approx(12 / 25), pytest.approx(13 / 25))
    assert coverage[5].item() == pytest.approx(0.75, abs=0.03)
    # fixed seed: the same copies again; another query index, other copies
    again = build_person_search_mapper(cfg, False)(dict(query))
    assert torch.equal(again["occluded_query_images"], copies)
    other = build_person_search_mapper(cfg, False)(dict(query, query_index=6))
    assert not torch.equal(other["occluded_query_images"][:2], copies[:2])
    # gallery images, training images and the option off: no copies
    assert "occluded_query_images" not in build_person_search_mapper(cfg, False)(image_dict)
    cfg.TEST.PERSON_SEARCH.OCCLUDED_QUERIES.ENABLED = False
    assert "occluded_query_images" not in build_person_search_mapper(cfg, False)(dict(query))
    no_index = {k: v for k, v in query.items() if k != "query_index"}
    with pytest.raises(KeyError, match="query_index"):
        build_person_search_mapper(_query_cfg(), False)(no_index)


def test_query_occlusion_bad_settings_name_the_key():
    prefix = "TEST.PERSON_SEARCH.OCCLUDED_QUERIES"
    for key, value, match in [
        ("GRIDS", [], f"{prefix}.GRIDS"),
        ("GRIDS", [[1, 0]], f"{prefix}.GRIDS"),
        ("COVERAGES", [], f"{prefix}.COVERAGES"),
        ("COVERAGES", [0.0], f"{prefix}.COVERAGES"),
        ("FILL", "blur", f"{prefix}.FILL='blur'"),
        ("SEED", -1, f"{prefix}.SEED"),
    ]:
        with pytest.raises(ValueError, match=match):
            QueryOcclusion.from_config(_query_cfg(**{key: value}))
    with pytest.raises(ValueError, match=f"{prefix}.FILL_VALUE"):
        QueryOcclusion.from_config(_query_cfg(FILL="constant", FILL_VALUE=256))
