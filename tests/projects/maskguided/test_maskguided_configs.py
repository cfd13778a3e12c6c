"""Every config of projects/MaskGuidedPS/configs merges (with add_maskguided_config) and builds
its model with the values the paper and the comments state: the full model, the mask-fraction
ablation, OIM without masks (the paper's baseline), PRW and the toy config."""

from __future__ import annotations

import glob
import os

import pytest
from detectron2.modeling import build_model
from maskguided_testutils import CONFIG_DIR, REPO

from maskguided import MaskGuidedROIHeads, add_maskguided_config
from person_search.engine import load_config
from person_search.modeling.roi_heads.oim_roi_heads import OIMROIHeads

_CONFIGS = sorted(glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True))
_FULL = os.path.join(CONFIG_DIR, "maskguided_R50_cuhk_sysu.yaml")
# Table 4 of the paper: alpha, the fraction of the training images with masks.
_ALPHAS = {"03": 0.03, "06": 0.06, "09": 0.09, "12": 0.12, "15": 0.15}


def _load(path: str, *opts: str):
    extra = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"]
    if "toy" in os.path.basename(path):
        extra += ["MODEL.OIM.NUM_PERSON_IDS", "7"]  # else read from the generated toy set
    return load_config(path, [*extra, *opts], add_maskguided_config)


def _name(path: str) -> str:
    return os.path.relpath(path, CONFIG_DIR)


def test_every_required_config_exists():
    names = {_name(p) for p in _CONFIGS}
    assert {
        "maskguided_R50_cuhk_sysu.yaml",
        "maskguided_R50_prw.yaml",
        "oim_R50_cuhk_sysu_no_masks.yaml",
        "maskguided_toy_cuhk_sysu.yaml",
    } <= names
    assert {f"ablations/maskguided_R50_cuhk_sysu_alpha_{a}.yaml" for a in _ALPHAS} <= names


@pytest.mark.parametrize("path", _CONFIGS, ids=_name)
def test_config_builds_its_model(path):
    cfg = _load(path)
    model = build_model(cfg)
    heads = model.roi_heads
    if "no_masks" in path:
        assert type(heads) is OIMROIHeads and not heads.mask_on
        assert not cfg.MODEL.MASK_ON
        return
    assert isinstance(heads, MaskGuidedROIHeads) and heads.labelled_only
    assert heads.mask_head.loss_weight == cfg.MODEL.MASKGUIDED.MASK_LOSS_WEIGHT == 1.0
    assert cfg.INPUT.PERSON_SEARCH_MAPPER == "MaskGuidedDatasetMapper"
    assert cfg.INPUT.MASK_FORMAT == "polygon" and cfg.INPUT.MASKGUIDED.MASKS
    # Mask R-CNN's C4 head on the 7x7 res5 RoI maps: one 2x2 deconvolution to 14x14.
    assert cfg.MODEL.ROI_MASK_HEAD.NUM_CONV == 0
    assert cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION == 14  # -> res5 (stride 2) 7x7
    assert heads.mask_head.deconv.kernel_size == (2, 2)


def test_full_model_follows_the_paper():
    cfg = _load(_FULL)
    assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM == 256
    assert cfg.SOLVER.BASE_LR == 4e-4 and cfg.SOLVER.IMS_PER_BATCH == 1
    assert cfg.SOLVER.SCHEDULE_UNIT == "epoch"
    assert cfg.SOLVER.MAX_ITER == 12 and tuple(cfg.SOLVER.STEPS) == (4, 8)
    assert cfg.INPUT.MIN_SIZE_TRAIN == (600,) and cfg.INPUT.RANDOM_FLIP == "horizontal"
    assert cfg.INPUT.MASKGUIDED.IMAGE_FRACTION == -1.0  # "Full"
    assert cfg.DATASETS.TRAIN == ("cuhk_sysu_train",)


def test_baseline_and_ablations_differ_from_the_full_model_by_their_keys_only():
    full = _load(_FULL)
    baseline = _load(os.path.join(CONFIG_DIR, "oim_R50_cuhk_sysu_no_masks.yaml"))
    for group in ("SOLVER", "DATASETS"):
        assert baseline[group] == full[group], group
    assert baseline.INPUT.MIN_SIZE_TRAIN == full.INPUT.MIN_SIZE_TRAIN
    assert baseline.MODEL.BACKBONE == full.MODEL.BACKBONE and baseline.MODEL.OIM == full.MODEL.OIM
    for suffix, alpha in _ALPHAS.items():
        path = os.path.join(
            CONFIG_DIR, "ablations", f"maskguided_R50_cuhk_sysu_alpha_{suffix}.yaml"
        )
        cfg = _load(path)
        assert alpha == cfg.INPUT.MASKGUIDED.IMAGE_FRACTION
        cfg.INPUT.MASKGUIDED.IMAGE_FRACTION = full.INPUT.MASKGUIDED.IMAGE_FRACTION
        cfg.OUTPUT_DIR = full.OUTPUT_DIR
        assert cfg == full, path


def test_toy_config_is_the_toy_oim_with_the_mask_branch():
    toy = _load(os.path.join(CONFIG_DIR, "maskguided_toy_cuhk_sysu.yaml"))
    oim = load_config(
        os.path.join(REPO, "configs", "oim", "oim_toy_cuhk_sysu.yaml"), [], add_maskguided_config
    )
    assert toy.SOLVER == oim.SOLVER and toy.DATASETS == oim.DATASETS  # equal iterations
    assert (
        toy.MODEL.RESNETS == oim.MODEL.RESNETS
        and toy.INPUT.MIN_SIZE_TRAIN == oim.INPUT.MIN_SIZE_TRAIN
    )
    assert toy.MODEL.MASK_ON and not oim.MODEL.MASK_ON


@pytest.mark.parametrize(
    "opts, match",
    [
        (["MODEL.MASK_ON", "False"], "MODEL.MASK_ON"),
        (["MODEL.MASKGUIDED.MASK_LOSS_WEIGHT", "-1.0"], "MODEL.MASKGUIDED.MASK_LOSS_WEIGHT=-1"),
    ],
)
def test_bad_model_config_names_the_key(opts, match):
    cfg = _load(_FULL, *opts)
    with pytest.raises(ValueError, match=match):
        build_model(cfg)


def test_unknown_key_is_refused_by_name():
    with pytest.raises(KeyError, match="MASK_FRACTON"):
        _load(_FULL, "INPUT.MASKGUIDED.MASK_FRACTON", "0.1")
