"""Every config of projects/PAN/configs merges (with add_pan_config) and builds a PAN model
with the values its comments state (datasets, backbones, ablations, toy)."""

import glob
import os

import pytest
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from pan_testutils import PAN_DIR

from pan import PANHead, add_pan_config
from person_search.config import get_cfg
from person_search.engine import load_config

_CONFIG_DIR = os.path.join(PAN_DIR, "configs")
_CONFIGS = sorted(glob.glob(os.path.join(_CONFIG_DIR, "**", "*.yaml"), recursive=True))
# Identities given to configs that read them from dataset metadata (toy, base).
_NUM_CLASSES_IF_FROM_METADATA = 7
_PAPER_MODELS = {
    f"pan_{backbone}_{dataset}.yaml": (backbone, dataset)
    for backbone in ("R50", "osnet")
    for dataset in ("occluded_dukemtmc", "market1501", "dukemtmc")
}


def _load(path: str):
    cfg = load_config(
        path, ["MODEL.DEVICE", "cpu", "MODEL.REID.BACKBONE_WEIGHTS", ""], add_pan_config
    )
    if cfg.MODEL.REID.HEAD.NUM_CLASSES == 0:
        cfg.MODEL.REID.HEAD.NUM_CLASSES = _NUM_CLASSES_IF_FROM_METADATA
    return cfg


def _name(path: str) -> str:
    return os.path.relpath(path, _CONFIG_DIR)


def test_every_dataset_backbone_and_ablation_has_a_config():
    names = {os.path.basename(p) for p in _CONFIGS}
    assert set(_PAPER_MODELS) <= names
    ablations = {
        os.path.basename(p) for p in glob.glob(os.path.join(_CONFIG_DIR, "ablations", "*"))
    }
    prefix = "pan_R50_occluded_dukemtmc_"
    assert {f"{prefix}masks_{p}.yaml" for p in (4, 8, 12, 16, 20)} <= ablations
    assert {f"{prefix}fc_per_part.yaml", f"{prefix}softmax.yaml"} <= ablations
    assert len([n for n in ablations if n.startswith(prefix + "sources_")]) == 5
    assert "pan_toy_market1501.yaml" in names


@pytest.mark.parametrize("path", _CONFIGS, ids=_name)
def test_config_builds_a_pan_model(path):
    cfg = _load(path)
    assert cfg.TASK == "reid"
    model = build_model(cfg)
    head = model.head
    assert isinstance(head, PANHead)
    assert head.num_masks == cfg.MODEL.PAN.NUM_MASKS
    assert (
        head.gamma == cfg.MODEL.PAN.NUM_MASKS * cfg.MODEL.PAN.LOCAL_DIM / cfg.MODEL.PAN.GLOBAL_DIM
    )
    assert head.global_classifier.out_features == cfg.MODEL.REID.HEAD.NUM_CLASSES
    # a count stated in a yaml agrees with the release's (real datasets: the toy set's count is
    # that of the generated data, read by loading it)
    for name in [n for n in cfg.DATASETS.TRAIN if not n.startswith("toy_")]:
        official = MetadataCatalog.get(name).get("num_person_ids", None)
        if official is not None:
            assert official == cfg.MODEL.REID.HEAD.NUM_CLASSES, name


@pytest.mark.parametrize("name", sorted(_PAPER_MODELS))
def test_paper_settings(name):
    backbone, dataset = _PAPER_MODELS[name]
    cfg = _load(os.path.join(_CONFIG_DIR, name))
    assert (16 if dataset == "market1501" else 14) == cfg.MODEL.PAN.NUM_MASKS
    assert (cfg.MODEL.PAN.LOCAL_DIM, cfg.MODEL.PAN.GLOBAL_DIM) == (256, 512)
    assert cfg.MODEL.PAN.SHARED_LOCAL_FC and not cfg.MODEL.PAN.MASK_SOFTMAX
    stage = "res5" if backbone == "R50" else "conv5"
    assert (stage, stage + "_buffer") == (cfg.MODEL.PAN.MASK_SOURCE, cfg.MODEL.PAN.LOCAL_SOURCE)
    assert cfg.MODEL.REID.HEAD.POOLING == "max" and cfg.MODEL.REID.LOSS.TRIPLET_SOFT_MARGIN
    assert cfg.INPUT.REID.SIZE_TRAIN == (256, 128) and cfg.INPUT.REID.FLIP_PROB == 0.5
    assert cfg.INPUT.REID.REA.ENABLED and cfg.INPUT.REID.PADDING == 0
    assert cfg.SOLVER.OPTIMIZER == "Adam" and cfg.SOLVER.BASE_LR == 3.5e-4
    assert cfg.SOLVER.WARMUP_FACTOR == 0.1 and cfg.SOLVER.STEPS == (60, 90)
    assert cfg.SOLVER.SCHEDULE_UNIT == "epoch"
    per_epoch = {"occluded_dukemtmc": 245, "market1501": 203, "dukemtmc": 259}[dataset]
    assert 20 * per_epoch == cfg.SOLVER.WARMUP_ITERS
    assert (f"{dataset}_train",) == cfg.DATASETS.TRAIN
    if dataset == "occluded_dukemtmc":
        assert build_model(cfg).head.gamma == 7.0


def test_ablations_change_only_their_key():
    base = _load(os.path.join(_CONFIG_DIR, "pan_R50_occluded_dukemtmc.yaml"))
    for path in glob.glob(os.path.join(_CONFIG_DIR, "ablations", "*.yaml")):
        cfg = _load(path)
        changed = {k for k in base.MODEL.PAN if cfg.MODEL.PAN[k] != base.MODEL.PAN[k]}
        name = os.path.basename(path)
        if "_masks_" in name:
            assert changed == {"NUM_MASKS"}
        elif "_sources_" in name:
            assert changed <= {"MASK_SOURCE", "LOCAL_SOURCE"} and changed
        else:
            assert changed == ({"SHARED_LOCAL_FC"} if "fc_per_part" in name else {"MASK_SOFTMAX"})
        assert cfg.DATASETS == base.DATASETS and cfg.SOLVER == base.SOLVER, name


def test_toy_config_is_the_toy_baseline_with_the_pan_head():
    toy = _load(os.path.join(_CONFIG_DIR, "pan_toy_market1501.yaml"))
    baseline = get_cfg()
    baseline.merge_from_file(
        os.path.join(PAN_DIR, "..", "..", "configs", "reid", "toy_market1501.yaml")
    )
    assert toy.SOLVER == baseline.SOLVER and toy.INPUT == baseline.INPUT  # equal iterations
    assert toy.DATASETS == baseline.DATASETS and toy.MODEL.REID.RESNET == baseline.MODEL.REID.RESNET
    model = build_model(toy)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    assert model.head.gamma == 7.0
    h, w = toy.INPUT.REID.SIZE_TEST
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.zeros(3, h, w, dtype=torch.uint8)}])
    assert out[0]["features"].shape == (32 + 14 * 16,)
