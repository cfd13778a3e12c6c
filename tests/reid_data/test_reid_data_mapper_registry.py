"""Re-id mappers through REID_MAPPER_REGISTRY: INPUT.REID.MAPPER selects the mapper the train
and test loaders build from a config."""

import itertools

import pytest
import torch
from detectron2.data import DatasetCatalog

from person_search.config import get_cfg
from person_search.data import (
    REID_MAPPER_REGISTRY,
    build_reid_mapper,
    build_reid_test_loader,
    build_reid_train_loader,
)
from person_search.data.reid_mapper import ReIDDatasetMapper

_DATASET = "reid_data_test_registry_set"


@REID_MAPPER_REGISTRY.register()
class ReIDDataTestMapper:
    """Reads no file: a constant image per dict, tagged with the mode it was built for."""

    def __init__(self, cfg, is_train: bool):
        self.is_train = is_train
        self.size = tuple(cfg.INPUT.REID.SIZE_TRAIN if is_train else cfg.INPUT.REID.SIZE_TEST)

    def __call__(self, d: dict) -> dict:
        image = torch.full((3, *self.size), d["person_id"], dtype=torch.uint8)
        return dict(d, image=image, mapped_for_training=self.is_train)


@pytest.fixture
def registry_cfg():
    records = [
        {"file_name": f"missing/{i}.jpg", "image_id": str(i), "person_id": i % 4, "split": s}
        for i, s in enumerate(["query"] * 4 + ["gallery"] * 12)
    ]
    DatasetCatalog.register(_DATASET, lambda: records)
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = (_DATASET,)
    cfg.INPUT.REID.MAPPER = "ReIDDataTestMapper"
    cfg.INPUT.REID.SIZE_TRAIN = (8, 4)
    cfg.INPUT.REID.SIZE_TEST = (6, 2)
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.DATALOADER.NUM_INSTANCES = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.TEST.REID.IMS_PER_BATCH = 5
    cfg.SEED = 0
    yield cfg
    DatasetCatalog.remove(_DATASET)


def test_default_mapper_is_the_library_one():
    cfg = get_cfg()
    assert cfg.INPUT.REID.MAPPER == "ReIDDatasetMapper"
    assert REID_MAPPER_REGISTRY.get("ReIDDatasetMapper") is ReIDDatasetMapper
    assert isinstance(build_reid_mapper(cfg, is_train=False), ReIDDatasetMapper)
    assert "obj(cfg, is_train)" in REID_MAPPER_REGISTRY.__doc__


def test_loaders_use_the_configured_mapper(registry_cfg):
    batch = next(iter(build_reid_train_loader(registry_cfg)))
    assert len(batch) == 4 and all(d["mapped_for_training"] for d in batch)
    assert all(d["image"].shape == (3, 8, 4) for d in batch)
    batches = list(build_reid_test_loader(registry_cfg, _DATASET))
    seen = [d for b in batches for d in b]
    assert len(seen) == 16 and not any(d["mapped_for_training"] for d in seen)
    assert all(d["image"].shape == (3, 6, 2) for d in seen)
    assert [len(b) for b in itertools.islice(batches, 3)] == [5, 5, 5]


def test_unknown_mapper_names_the_key(registry_cfg):
    registry_cfg.INPUT.REID.MAPPER = "NoSuchMapper"
    with pytest.raises(KeyError, match=r"INPUT.REID.MAPPER='NoSuchMapper'.*ReIDDataTestMapper"):
        build_reid_train_loader(registry_cfg)
    with pytest.raises(KeyError, match="INPUT.REID.MAPPER"):
        build_reid_test_loader(registry_cfg, _DATASET)
