"""Every config of projects/MGOFE/configs merges (with add_mgofe_config) and builds its model
(full configs on the meta device, the toy config on CPU); ablations change only their key;
bad MGOFE settings stop with an error naming the key."""

import glob
import os

import pytest
import torch
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from mgofe_testutils import MGOFE_DIR, REPO, toy_cfg

from mgofe import MGOFERCNN, MGOFEROIHeads, add_mgofe_config
from person_search.engine import load_config

_CONFIG_DIR = os.path.join(MGOFE_DIR, "configs")
_CONFIGS = sorted(glob.glob(os.path.join(_CONFIG_DIR, "**", "*.yaml"), recursive=True))
_DATASETS = ("cuhk_sysu", "prw")


def _load(path: str, *opts: str):
    cfg = load_config(path, ["MODEL.DEVICE", "cpu", *opts], add_mgofe_config)
    cfg.MODEL.OIM.NUM_PERSON_IDS = 7  # from dataset metadata otherwise
    return cfg


def _name(path: str) -> str:
    return os.path.relpath(path, _CONFIG_DIR)


def test_every_dataset_ablation_and_cross_dataset_has_a_config():
    names = {_name(p) for p in _CONFIGS}
    for d in _DATASETS:
        assert f"mgofe_{d}.yaml" in names
        for ablation in ("baseline", "mgro_only", "no_mgffe", "no_mgfa", "m1", "m3"):
            assert f"ablations/{d}_{ablation}.yaml" in names
        assert {f"ablations/{d}_roi7.yaml", f"ablations/{d}_roi18.yaml"} <= names
    assert {"mgofe_cuhk_sysu_to_prw.yaml", "mgofe_prw_to_cuhk_sysu.yaml"} <= names
    assert "mgofe_toy_cuhk_sysu.yaml" in names


@pytest.mark.parametrize("path", [p for p in _CONFIGS if "toy" not in p], ids=_name)
def test_full_config_builds(path):
    cfg = _load(path, "MODEL.BACKBONE.PRETRAINED_FILE", "")
    with torch.device("meta"):
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    assert cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION in (7, 14, 18)
    assert (cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BASE_LR, cfg.SOLVER.IMS_PER_BATCH) == (
        "Adam",
        1e-4,
        6,
    )
    assert cfg.SOLVER.MAX_ITER == 30 and cfg.SOLVER.SCHEDULE_UNIT == "epoch"
    if _name(path).endswith("baseline.yaml"):  # SeqNeXt itself
        assert type(model).__name__ == "PersonSearchRCNN"
        assert type(model.roi_heads).__name__ == "SeqNetROIHeads"
        return
    assert isinstance(model, MGOFERCNN) and isinstance(model.roi_heads, MGOFEROIHeads)
    m = cfg.MODEL.MGOFE
    assert (model.roi_heads.mgffe is not None) == m.MGFFE.ENABLED
    assert (model.roi_heads.mgfa is not None) == m.MGFA.ENABLED
    assert len(model.mgro.grids) == len(cfg.INPUT.MGRO.GRIDS)
    assert not model.test_copies  # the default test mode: no copies at inference


@pytest.mark.parametrize("dataset", _DATASETS)
def test_ablations_change_only_their_key(dataset):
    full = _load(os.path.join(_CONFIG_DIR, f"mgofe_{dataset}.yaml"))
    expected = {
        "m1": ("INPUT.MGRO.GRIDS", [[2, 1]]),
        "m3": ("INPUT.MGRO.GRIDS", [[2, 1], [2, 2], [4, 2]]),
        "roi7": ("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7),
        "roi18": ("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 18),
        "no_mgffe": ("MODEL.MGOFE.MGFFE.ENABLED", False),
        "no_mgfa": ("MODEL.MGOFE.MGFA.ENABLED", False),
    }
    for ablation, (key, value) in expected.items():
        cfg = _load(os.path.join(_CONFIG_DIR, "ablations", f"{dataset}_{ablation}.yaml"))
        diff = _diff(full, cfg)
        assert set(diff) == {key, "OUTPUT_DIR"}, (ablation, diff)
        assert diff[key] == value
    only = _load(os.path.join(_CONFIG_DIR, "ablations", f"{dataset}_mgro_only.yaml"))
    assert set(_diff(full, only)) == {
        "MODEL.MGOFE.MGFFE.ENABLED",
        "MODEL.MGOFE.MGFA.ENABLED",
        "MODEL.MGOFE.COPY_DETECTION_LOSS.ENABLED",
        "OUTPUT_DIR",
    }
    baseline = _load(os.path.join(_CONFIG_DIR, "ablations", f"{dataset}_baseline.yaml"))
    seqnext = _load(os.path.join(REPO, "configs", "seqnext", f"seqnext_{dataset}.yaml"))
    assert set(_diff(seqnext, baseline)) == {"OUTPUT_DIR"}
    assert baseline.SOLVER == full.SOLVER and baseline.DATASETS == full.DATASETS


def test_cross_dataset_configs_swap_the_test_set():
    for train, test in (("cuhk_sysu", "prw"), ("prw", "cuhk_sysu")):
        cfg = _load(os.path.join(_CONFIG_DIR, f"mgofe_{train}_to_{test}.yaml"))
        assert (f"{train}_train",) == cfg.DATASETS.TRAIN
        assert (f"{test}_test",) == cfg.DATASETS.TEST


def _diff(a, b, prefix: str = "") -> dict:
    """Keys whose values differ between two configs -> the value in ``b``."""
    out = {}
    for k in set(a) | set(b):
        key = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if hasattr(va, "keys") and hasattr(vb, "keys"):
            out.update(_diff(va, vb, key + "."))
        elif va != vb:
            out[key] = vb
    return out


def test_toy_config_is_seqnext_toy_plus_mgofe():
    toy = toy_cfg()
    seqnext = _load(os.path.join(REPO, "configs", "seqnext", "seqnext_toy_cuhk_sysu.yaml"))
    seqnext.MODEL.SEQNET.FIRST_SCORE_THRESH_TEST = 0.0
    seqnext.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    seqnext.MODEL.OIM.NUM_PERSON_IDS = toy.MODEL.OIM.NUM_PERSON_IDS
    diff = set(_diff(seqnext, toy))
    changed = {k for k in diff if not k.startswith(("MODEL.MGOFE.", "INPUT.MGRO."))}
    # equal data, schedule and iterations: only the architecture names and the output differ
    assert changed == {"MODEL.META_ARCHITECTURE", "MODEL.ROI_HEADS.NAME", "OUTPUT_DIR"}
    torch.manual_seed(0)
    model = build_model(toy)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    assert model.roi_heads.feature_sizes == (32, 64)


@pytest.mark.parametrize(
    "opts, message",
    [
        (["INPUT.MGRO.GRIDS", "[]"], "INPUT.MGRO.GRIDS must list at least one"),
        (["INPUT.MGRO.GRIDS", "[[0, 2]]"], "INPUT.MGRO.GRIDS must list at least one"),
        (["INPUT.MGRO.FILL", "'blur'"], "INPUT.MGRO.FILL='blur' is not one of"),
        (
            ["INPUT.MGRO.ENABLED", "False"],
            "MODEL.MGOFE.MGFFE.ENABLED is True but INPUT.MGRO.ENABLED is False",
        ),
        (
            ["INPUT.MGRO.ENABLED", "False", "MODEL.MGOFE.MGFFE.ENABLED", "False"],
            "MODEL.MGOFE.MGFA.ENABLED is True but INPUT.MGRO.ENABLED is False",
        ),
        (
            ["MODEL.MGOFE.MGFFE.ENABLED", "False", "MODEL.MGOFE.MGFA.ENABLED", "False"],
            "INPUT.MGRO.ENABLED is True but nothing uses the copies",
        ),
        (
            ["MODEL.MGOFE.MGFFE.ENABLED", "False", "MODEL.MGOFE.TEST_COPIES", "True"],
            "MODEL.MGOFE.TEST_COPIES is True but MODEL.MGOFE.MGFFE.ENABLED is False",
        ),
        (["MODEL.MGOFE.MGFA.LOSS_WEIGHT", "-1.0"], "MODEL.MGOFE.MGFA.LOSS_WEIGHT must be >= 0"),
        (["MODEL.MGOFE.MGFFE.DIM", "-2"], "MODEL.MGOFE.MGFFE.DIM must be >= 0"),
        (["MODEL.ROI_HEADS.NAME", "'SeqNetROIHeads'"], "MODEL.ROI_HEADS.NAME='SeqNetROIHeads'"),
    ],
)
def test_bad_config_names_the_key(opts, message):
    with pytest.raises(ValueError, match=message.replace("(", "\\(").replace("[", "\\[")):
        build_model(toy_cfg(*opts))
