"""PersonSearchDatasetMapper and the person-search loader builders."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import SizeMismatchError
from detectron2.structures import BoxMode
from ps_data_helpers import write_jpeg

from person_search.config import get_cfg
from person_search.data import (
    MAPPER_REGISTRY,
    PersonSearchDatasetMapper,
    build_person_search_test_loader,
    build_person_search_train_loader,
)
from person_search.data.build import build_person_search_mapper, get_person_search_train_dicts

HEIGHT, WIDTH = 40, 60


def _anno(box, pid, **extra) -> dict:
    return {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "person_id": pid, **extra}


@pytest.fixture
def image_dict(tmp_path) -> dict:
    path = str(tmp_path / "s1.jpg")
    write_jpeg(path, HEIGHT, WIDTH)
    return {
        "file_name": path,
        "image_id": "s1.jpg",
        "height": HEIGHT,
        "width": WIDTH,
        "camera_id": -1,
        "annotations": [
            _anno([10, 5, 20, 25], 3),
            _anno([30, 10, 50, 35], -1),
            _anno([5, 5, 5, 20], 7),  # no area: dropped with its pid
        ],
    }


def _mapper(is_train: bool, flip: bool, **kwargs) -> PersonSearchDatasetMapper:
    augs = [T.ResizeShortestEdge(2 * HEIGHT, 1000)]
    if flip:
        augs.append(T.RandomFlip(prob=1.0, horizontal=True))
    return PersonSearchDatasetMapper(is_train, augmentations=augs, image_format="BGR", **kwargs)


def test_train_resize_flip_boxes_and_pids(image_dict):
    before = repr(image_dict)
    out = _mapper(True, flip=True)(image_dict)
    assert repr(image_dict) == before  # input not modified
    assert out["image"].shape == (3, 2 * HEIGHT, 2 * WIDTH) and out["image"].dtype == torch.uint8
    assert (out["height"], out["width"]) == (HEIGHT, WIDTH)
    inst = out["instances"]
    # Scale 2, then x -> 120 - x.
    expected = torch.tensor([[80.0, 10, 100, 50], [20, 20, 60, 70]])
    torch.testing.assert_close(inst.gt_boxes.tensor, expected)
    assert inst.gt_pids.tolist() == [3, -1] and inst.gt_pids.dtype == torch.int64
    assert inst.gt_classes.tolist() == [0, 0]
    assert "annotations" not in out


def test_train_without_flip(image_dict):
    inst = _mapper(True, flip=False)(image_dict)["instances"]
    torch.testing.assert_close(inst.gt_boxes.tensor[0], torch.tensor([20.0, 10, 40, 50]))


def test_train_masks(image_dict):
    for a in image_dict["annotations"]:
        x1, y1, x2, y2 = a["bbox"]
        a["segmentation"] = [[x1, y1, x2, y1, x2, y2, x1, y2]]
    inst = _mapper(True, flip=True, use_instance_mask=True)(image_dict)["instances"]
    assert len(inst.gt_masks) == 2 and inst.gt_has_mask.tolist() == [True, True]
    np.testing.assert_allclose(inst.gt_masks.polygons[0][0], [100, 10, 80, 10, 80, 50, 100, 50])
    # Partial masks: the person without one gets an empty placeholder and gt_has_mask False
    # (the mask loss never reads it); the other keeps its flipped polygon.
    image_dict["annotations"][0].pop("segmentation")
    inst = _mapper(True, flip=True, use_instance_mask=True)(image_dict)["instances"]
    assert inst.gt_pids.tolist() == [3, -1] and inst.gt_has_mask.tolist() == [False, True]
    assert inst.gt_masks.polygons[0] == []
    np.testing.assert_allclose(inst.gt_masks.polygons[1][0], [60, 20, 20, 20, 20, 70, 60, 70])
    # Masks off: segmentations ignored.
    inst = _mapper(True, flip=False)(image_dict)["instances"]
    assert not inst.has("gt_masks") and not inst.has("gt_has_mask")


def test_query_box_resized(image_dict):
    query = {k: v for k, v in image_dict.items() if k != "annotations"}
    query.update(query_index=4, query_box=[10.0, 5.0, 20.0, 25.0], person_id=9)
    out = _mapper(False, flip=False)(query)
    torch.testing.assert_close(out["query_boxes"].tensor, torch.tensor([[20.0, 10, 40, 50]]))
    assert out["query_index"] == 4 and out["person_id"] == 9
    assert "instances" not in out and "query_box" not in out


def test_test_scene_image(image_dict):
    out = _mapper(False, flip=False)(image_dict)
    assert "instances" not in out
    assert out["annotations"] == image_dict["annotations"]  # original coordinates


def test_corrupt_missing_and_mismatched_images(image_dict, tmp_path):
    mapper = _mapper(False, flip=False)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="bad.jpg"):
        mapper(dict(image_dict, file_name=str(bad)))
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        mapper(dict(image_dict, file_name=str(tmp_path / "gone.jpg")))
    with pytest.raises(SizeMismatchError):
        mapper(dict(image_dict, height=HEIGHT + 1))


def test_from_config_and_registry(image_dict):
    cfg = get_cfg()
    assert cfg.INPUT.PERSON_SEARCH_MAPPER == "PersonSearchDatasetMapper"
    assert "PersonSearchDatasetMapper" in MAPPER_REGISTRY
    cfg.INPUT.MIN_SIZE_TRAIN = (2 * HEIGHT,)
    cfg.INPUT.MIN_SIZE_TEST = HEIGHT
    cfg.INPUT.RANDOM_FLIP = "none"
    train = build_person_search_mapper(cfg, True)
    assert isinstance(train, PersonSearchDatasetMapper) and train.is_train
    assert train(image_dict)["image"].shape == (3, 2 * HEIGHT, 2 * WIDTH)
    test = build_person_search_mapper(cfg, False)
    assert test(image_dict)["image"].shape == (3, HEIGHT, WIDTH)
    cfg.INPUT.PERSON_SEARCH_MAPPER = "NoSuchMapper"
    with pytest.raises(KeyError, match="INPUT.PERSON_SEARCH_MAPPER='NoSuchMapper'"):
        build_person_search_mapper(cfg, True)


def test_train_dicts_filter_and_offsets(image_dict):
    only_unlabelled = dict(image_dict, image_id="u", annotations=[_anno([1, 1, 9, 9], -1)])
    empty = dict(image_dict, image_id="e", annotations=[])
    names = ("_ps_data_test_a", "_ps_data_test_b")
    DatasetCatalog.register(names[0], lambda: [image_dict, empty, only_unlabelled])
    DatasetCatalog.register(names[1], lambda: [image_dict])
    MetadataCatalog.get(names[0]).set(num_person_ids=5)
    MetadataCatalog.get(names[1]).set(num_person_ids=2)
    try:
        dicts, num_ids = get_person_search_train_dicts(names)
        assert num_ids == 7
        assert [d["image_id"] for d in dicts] == ["s1.jpg", "u", "s1.jpg"]
        assert [a["person_id"] for a in dicts[0]["annotations"]] == [3, -1, 7]
        assert [a["person_id"] for a in dicts[2]["annotations"]] == [8, -1, 12]  # offset 5
        assert image_dict["annotations"][0]["person_id"] == 3  # the catalog's dicts untouched
        with pytest.raises(ValueError, match="empty"):
            get_person_search_train_dicts(())
    finally:
        for name in names:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def test_loaders_on_toy(toy_prw, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    shutil.copytree(toy_prw[0], tmp_path / "toy_prw")
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("toy_prw_train",)
    cfg.INPUT.MIN_SIZE_TRAIN = (120,)
    cfg.INPUT.MAX_SIZE_TRAIN = 200
    cfg.INPUT.MIN_SIZE_TEST = 120
    cfg.INPUT.MAX_SIZE_TEST = 200
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    batch = next(iter(build_person_search_train_loader(cfg)))
    assert len(batch) == 2
    for item in batch:
        assert item["image"].shape[1] == 120
        assert len(item["instances"]) == len(item["instances"].gt_pids) > 0
    items = [x[0] for x in build_person_search_test_loader(cfg, "toy_prw_test")]
    protocol = MetadataCatalog.get("toy_prw_test").search_protocol
    queries = [x for x in items if "query_index" in x]
    assert len(queries) == len(protocol.queries)
    assert len(items) - len(queries) == len(protocol.gallery_image_ids)
    cfg.DATALOADER.SAMPLER_TRAIN = "RepeatFactorTrainingSampler"
    with pytest.raises(ValueError, match="SAMPLER_TRAIN"):
        build_person_search_train_loader(cfg)


def test_config_shortest_edge_and_max_size(image_dict):
    """INPUT.MIN_SIZE_* / MAX_SIZE_* drive the resize. 40x60 with short edge 80, max 100:
    80x120 exceeds 100, so 100/120 more -> 66.67x100 -> rounded to 67x100 (Detectron2 rounds
    each side); boxes scale by 100/60 in x and 67/40 in y."""
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (2 * HEIGHT,)
    cfg.INPUT.MAX_SIZE_TRAIN = 100
    cfg.INPUT.MIN_SIZE_TEST = 2 * HEIGHT
    cfg.INPUT.MAX_SIZE_TEST = 100
    cfg.INPUT.RANDOM_FLIP = "none"
    sx, sy = 100 / 60, 67 / 40
    expected = torch.tensor(
        [[10 * sx, 5 * sy, 20 * sx, 25 * sy], [30 * sx, 10 * sy, 50 * sx, 35 * sy]]
    )
    out = build_person_search_mapper(cfg, True)(image_dict)
    assert out["image"].shape == (3, 67, 100)
    torch.testing.assert_close(out["instances"].gt_boxes.tensor, expected)
    assert out["instances"].gt_pids.tolist() == [3, -1]
    # Test mode: same resize, no instances; the query box goes through the same resize.
    query = {k: v for k, v in image_dict.items() if k != "annotations"}
    query.update(query_index=0, query_box=[10.0, 5.0, 20.0, 25.0], person_id=3)
    out = build_person_search_mapper(cfg, False)(query)
    assert out["image"].shape == (3, 67, 100)
    torch.testing.assert_close(out["query_boxes"].tensor, expected[:1])


def test_config_random_flip(image_dict):
    """RANDOM_FLIP="horizontal" flips about half the time; each output is exactly one of the
    two: scale 2, then x -> 120 - x when flipped. Test mode never flips."""
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (2 * HEIGHT,)
    cfg.INPUT.MIN_SIZE_TEST = 2 * HEIGHT
    cfg.INPUT.RANDOM_FLIP = "horizontal"
    plain = torch.tensor([[20.0, 10, 40, 50], [60, 20, 100, 70]])
    flipped = torch.tensor([[80.0, 10, 100, 50], [20, 20, 60, 70]])
    train = build_person_search_mapper(cfg, True)
    seen = set()
    for _ in range(40):
        boxes = train(image_dict)["instances"].gt_boxes.tensor
        seen.add("flipped" if torch.equal(boxes, flipped) else "plain")
        assert torch.equal(boxes, flipped) or torch.equal(boxes, plain)
    assert seen == {"flipped", "plain"}  # fails with probability 2 * 0.5**40
    query = {k: v for k, v in image_dict.items() if k != "annotations"}
    query.update(query_index=0, query_box=[10.0, 5.0, 20.0, 25.0], person_id=3)
    test = build_person_search_mapper(cfg, False)
    for _ in range(10):
        torch.testing.assert_close(test(query)["query_boxes"].tensor, plain[:1])


def test_query_mapper_on_toy_cuhk(toy_cuhk, tmp_path, monkeypatch):
    """Every toy CUHK-SYSU query box, read from TestG*.mat, scales with its image exactly."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    shutil.copytree(toy_cuhk[0], tmp_path / "toy_cuhk_sysu")
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 120
    cfg.INPUT.MAX_SIZE_TEST = 150
    mapper = build_person_search_mapper(cfg, False)
    queries = [d for d in DatasetCatalog.get("toy_cuhk_sysu_test") if "query_index" in d]
    assert queries
    for q in queries:
        out = mapper(q)
        _, new_h, new_w = out["image"].shape
        assert min(new_h, new_w) <= 120 and max(new_h, new_w) <= 150
        x1, y1, x2, y2 = q["query_box"]
        sx, sy = new_w / q["width"], new_h / q["height"]
        torch.testing.assert_close(
            out["query_boxes"].tensor, torch.tensor([[x1 * sx, y1 * sy, x2 * sx, y2 * sy]])
        )
        assert out["person_id"] == q["person_id"] and out["query_index"] == q["query_index"]
