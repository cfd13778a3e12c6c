"""Every config of configs/reid merges into get_cfg() and builds a ReIDBaseline."""

import glob
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from person_search.config import get_cfg
from person_search.modeling.meta_arch.reid import ReIDBaseline
from person_search.modeling.reid_heads import resolve_num_classes

_CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "reid")
_CONFIGS = sorted(glob.glob(os.path.join(_CONFIG_DIR, "*.yaml")))
# Identities given to configs that read them from dataset metadata (the toy set is not
# generated in this unit test; test_reid_model_train_net.py trains with NUM_CLASSES 0 on it).
_NUM_CLASSES_IF_FROM_METADATA = 7


def test_reid_configs_exist():
    names = {os.path.basename(p) for p in _CONFIGS}
    assert {
        "Base-ReID.yaml",
        "market1501.yaml",
        "dukemtmc.yaml",
        "occluded_dukemtmc.yaml",
        "toy_market1501.yaml",
    } <= names


@pytest.mark.parametrize("path", _CONFIGS, ids=os.path.basename)
def test_reid_config_merges_and_builds(path):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    assert cfg.TASK == "reid"
    cfg.MODEL.DEVICE = "cpu"
    # ImageNet files are not part of the repository: build with random weights here.
    cfg.MODEL.REID.BACKBONE_WEIGHTS = ""
    from_metadata = cfg.MODEL.REID.HEAD.NUM_CLASSES == 0
    if from_metadata:
        cfg.MODEL.REID.HEAD.NUM_CLASSES = _NUM_CLASSES_IF_FROM_METADATA
    model = build_model(cfg)
    assert isinstance(model, ReIDBaseline)
    num_classes = cfg.MODEL.REID.HEAD.NUM_CLASSES
    assert model.head.classifier.out_features == num_classes
    for name in [] if from_metadata else cfg.DATASETS.TRAIN:
        # Real releases register their official identity count up front: a yaml that states
        # a count must agree with it.
        official = MetadataCatalog.get(name).get("num_person_ids", None)
        if official is not None:
            assert num_classes == official, name


def test_base_config_names_a_local_imagenet_file():
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(_CONFIG_DIR, "market1501.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    path = cfg.MODEL.REID.BACKBONE_WEIGHTS
    assert path.endswith(".pth")
    if not os.path.isfile(path):
        with pytest.raises(FileNotFoundError, match=os.path.basename(path)):
            build_model(cfg)


def test_num_classes_from_train_metadata():
    name = "reid_model_test_tiny_train"
    dicts = [{"file_name": f"{i}.jpg", "person_id": i % 3} for i in range(6)]
    DatasetCatalog.register(name, lambda: dicts)
    try:
        cfg = get_cfg()
        cfg.DATASETS.TRAIN = (name,)
        cfg.MODEL.REID.HEAD.NUM_CLASSES = 0
        assert resolve_num_classes(cfg) == 3  # counted from the dicts
        MetadataCatalog.get(name).set(num_person_ids=5)
        assert resolve_num_classes(cfg) == 5  # metadata wins
        cfg.DATASETS.TRAIN = (name, name)
        assert resolve_num_classes(cfg) == 10  # concatenated sets: ids shifted, counts add
        cfg.MODEL.REID.HEAD.NUM_CLASSES = 4
        assert resolve_num_classes(cfg) == 4
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_toy_config_is_cpu_sized():
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(_CONFIG_DIR, "toy_market1501.yaml"))
    cfg.MODEL.REID.HEAD.NUM_CLASSES = _NUM_CLASSES_IF_FROM_METADATA
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    h, w = cfg.INPUT.REID.SIZE_TEST
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.zeros(3, h, w, dtype=torch.uint8)}])
    assert out[0]["features"].shape == (128,)
