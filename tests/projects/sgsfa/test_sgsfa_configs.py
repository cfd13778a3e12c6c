"""Every config of projects/SGSFA merges (with add_sgsfa_config) and builds the SGSFA model."""

import glob
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from sgsfa_testutils import CONFIG_DIR, sgsfa_cfg

from person_search.data.reid_mapper import check_parsing_groups
from person_search.engine import Trainer, build_optimizer, load_config, resolve_schedule
from person_search.modeling.meta_arch.reid import ReIDBaseline
from sgsfa.backbone import SGSFAResNet
from sgsfa.head import SGSFAHead

CONFIGS = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.yaml")))
# Identities given to the toy config (it reads them from the dataset, not generated here).
_TOY_IDS = 7
# The datasets of the paper's tables, each with a config (train, test).
_PAPER_SETS = {
    "occluded_dukemtmc": ("occluded_dukemtmc_train", "occluded_dukemtmc_test"),
    "p_dukemtmc": ("market1501_train", "p_dukemtmc_test"),
    "p_dukemtmc_supervised": ("p_dukemtmc_train", "p_dukemtmc_test"),
    "occluded_reid": ("market1501_train", "occluded_reid_test"),
    "partial_reid": ("market1501_train", "partial_reid_test"),
    "market1501": ("market1501_train", "market1501_test"),
    "dukemtmc": ("dukemtmc_train", "dukemtmc_test"),
    "occluded_dukemtmc_no_whole_attention": ("occluded_dukemtmc_train", "occluded_dukemtmc_test"),
    "occluded_dukemtmc_no_sfa": ("occluded_dukemtmc_train", "occluded_dukemtmc_test"),
    "toy_market1501": ("toy_market1501_train", "toy_market1501_test"),
}


def test_every_listed_config_exists_with_its_datasets():
    names = {os.path.splitext(os.path.basename(p))[0] for p in CONFIGS}
    assert names == set(_PAPER_SETS) | {"Base-SGSFA"}
    registered = set(DatasetCatalog.list())
    for name, (train, test) in _PAPER_SETS.items():
        cfg = sgsfa_cfg(config=os.path.join(CONFIG_DIR, f"{name}.yaml"))
        assert [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST] == [train, test], name
        assert {train, test} <= registered


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_builds_the_sgsfa_model(path):
    cfg = sgsfa_cfg(config=path)
    assert cfg.TASK == "reid"
    # SGSFA's LIP grouping is the project's (the library groups nothing by default)
    assert tuple(cfg.INPUT.REID.PARSING_PART_NAMES) == ("head", "upper", "lower", "shoes")
    groups = check_parsing_groups(cfg.INPUT.REID.PARSING_GROUPS)
    assert sorted(c for g in groups for c in g) == list(range(1, 20))  # every LIP class once
    assert cfg.INPUT.REID.LOAD_PARSING and not cfg.INPUT.REID.LOAD_PARSING_AT_TEST
    assert cfg.TEST.REID.FEATURE == "parts" and cfg.TEST.REID.PART_DISTANCE == "sum"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.REID.BACKBONE_WEIGHTS = ""  # ImageNet files are not part of the repository
    if cfg.MODEL.REID.HEAD.NUM_CLASSES == 0:
        cfg.MODEL.REID.HEAD.NUM_CLASSES = _TOY_IDS
    model = build_model(cfg)
    assert isinstance(model, ReIDBaseline)
    assert isinstance(model.backbone, SGSFAResNet) and isinstance(model.head, SGSFAHead)
    assert (model.backbone.whole_attention is not None) == cfg.MODEL.SGSFA.WHOLE_ATTENTION
    assert model.head.use_sfa == cfg.MODEL.SGSFA.SFA
    num_classes = model.head.sga_necks[0].fc.out_features
    for name in cfg.DATASETS.TRAIN:  # a stated identity count agrees with the release's
        official = MetadataCatalog.get(name).get("num_person_ids", None)
        if official is not None:
            assert num_classes == official, name
    if "toy" not in path:
        assert cfg.INPUT.REID.SIZE_TRAIN == (256, 128) and cfg.MODEL.REID.RESNET.DEPTH == 50
        assert cfg.MODEL.SGSFA.LAMBDA == 0.8 and cfg.SOLVER.BASE_LR == 0.0003
        # the paper's schedule: 120 epochs, x0.1 at 50/80/100 (and 120, the end); 200
        # iterations per epoch here
        cfg = resolve_schedule(cfg, num_images=200 * cfg.SOLVER.IMS_PER_BATCH)
        assert cfg.SOLVER.MAX_ITER == 24000 and cfg.SOLVER.STEPS == (10000, 16000, 20000)
    scheduler = Trainer.build_lr_scheduler(cfg, build_optimizer(cfg, model))
    assert scheduler is not None


def test_configs_need_the_project_keys():
    with pytest.raises(KeyError, match="add_"):
        load_config(os.path.join(CONFIG_DIR, "toy_market1501.yaml"))
