"""Partial masks in the person-search mapper (gt_has_mask, empty placeholders) and MGRO (the
occluded copies of the training mapper, seeded by (SEED, iteration, image id))."""

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
    RandomBoxOcclusion,
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
