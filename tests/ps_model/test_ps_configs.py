"""Every config under configs/ merges into get_cfg(); every person-search config builds its model
and fits the ImageNet weights it names; the paper configs follow the papers' schedules."""

from __future__ import annotations

import person_search  # noqa: F401  (compat layer + registration, before detectron2 imports)

# isort: split
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from detectron2.data import DatasetCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.structures import Boxes
from ps_baselines_testutils import single_thread  # noqa: F401  (fixture)

from person_search.engine import TASKS, load_config
from person_search.modeling.pretrained import (
    convert_state_dict,
    find_head_stages,
    load_pretrained_parts,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
ALL_CONFIGS = sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml"))
PS_CONFIGS = [c for c in ALL_CONFIGS if load_config(str(CONFIG_DIR / c)).TASK == "person_search"]
TOY_CONFIGS = [c for c in PS_CONFIGS if "toy" in c]
FULL_CONFIGS = [c for c in PS_CONFIGS if "toy" not in c]
# RoI heads of each family (the config directory; Base-PersonSearch.yaml is OIM's base).
HEADS = {"oim": "OIMROIHeads", "seqnet": "SeqNetROIHeads", "seqnext": "SeqNetROIHeads"}
HEADS["hoim"] = "HOIMROIHeads"


def _family(config: str) -> str:
    return config.split("/")[0] if "/" in config else "oim"


def _cfg(relpath: str):
    """The config on CPU, LUT size fixed (no dataset needed), no weights file read."""
    cfg = load_config(str(CONFIG_DIR / relpath))
    cfg.MODEL.OIM.NUM_PERSON_IDS = 4
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    return cfg


def test_config_lists_cover_the_families():
    families = {c.split("/")[0] for c in ALL_CONFIGS if "/" in c}
    assert families == {"oim", "seqnet", "seqnext", "hoim", "reid"}
    assert {c.split("/")[0] for c in TOY_CONFIGS} == {"oim", "seqnet", "seqnext", "hoim"}


@pytest.mark.parametrize("config", ALL_CONFIGS)
def test_every_config_merges_and_names_local_registered_data(config):
    cfg = load_config(str(CONFIG_DIR / config))
    assert cfg.TASK in TASKS
    # Weights come from local files, never from a URL (no download at run time).
    for key, value in [
        ("MODEL.WEIGHTS", cfg.MODEL.WEIGHTS),
        ("MODEL.BACKBONE.PRETRAINED_FILE", cfg.MODEL.BACKBONE.PRETRAINED_FILE),
    ]:
        assert "://" not in value, f"{config}: {key}={value!r} is a URL"
    registered = set(DatasetCatalog.list())
    for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        assert name in registered, f"{config}: dataset {name!r} is not registered"


def _source_network(cfg) -> torch.nn.Module:
    """The ImageNet network whose weights the config names (random weights)."""
    if cfg.MODEL.BACKBONE.PRETRAINED_FORMAT == "torchvision_resnet":
        return torchvision.models.resnet50()
    return timm.create_model(cfg.MODEL.TIMM.ARCH, pretrained=False)


@pytest.mark.parametrize("config", FULL_CONFIGS)
def test_full_config_structure_fits_its_imagenet_weights(config):
    """Built on the meta device (shapes only: fast, no memory)."""
    cfg = _cfg(config)
    with torch.device("meta"):
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
        assert type(model.roi_heads).__name__ == HEADS[_family(config)]
        if not cfg.MODEL.BACKBONE.PRETRAINED_FILE:
            return
        source = _source_network(cfg).state_dict()
    stages = find_head_stages(model)
    assert len(stages) == (2 if config.startswith("seq") else 1)
    # Every trunk and head-stage tensor receives a weight of the right shape (strict).
    parts = convert_state_dict(source, cfg.MODEL.BACKBONE.PRETRAINED_FORMAT)
    load_pretrained_parts(parts, model.backbone, stages, source=config)


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("config", TOY_CONFIGS)
def test_toy_config_builds_on_cpu(config):
    model = build_model(_cfg(config))
    assert type(model.roi_heads).__name__ == HEADS[_family(config)]
    assert sum(p.numel() for p in model.parameters()) < 2_000_000  # CPU-sized


@pytest.mark.slow
@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("config", [c for c in FULL_CONFIGS if c.endswith("cuhk_sysu.yaml")])
def test_full_config_builds_and_runs_on_cpu(config):
    """One paper config per family (the PRW ones differ in sizes of the OIM tables only)."""
    torch.manual_seed(0)
    cfg = _cfg(config)
    cfg.MODEL.BACKBONE.PRETRAINED_FILE = ""  # random weights
    model = build_model(cfg).eval()
    image = torch.randint(0, 256, (3, 160, 224), dtype=torch.uint8)
    query = {"image": image, "query_boxes": Boxes(torch.tensor([[20.0, 10.0, 70.0, 150.0]]))}
    with torch.no_grad():
        scene, q = model([{"image": image, "height": 160, "width": 224}, query])
    assert q["query_embeddings"].shape == (1, cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM)
    assert torch.isfinite(q["query_embeddings"]).all()
    assert scene["instances"].embeddings.shape[1] == cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM


# What the papers (or, for SeqNet, its public defaults) state; see the one-line comments in the
# configs for the sources and for the values the texts leave open (not checked here).
# config prefix: (optimizer, base lr, images per batch, epochs, lr steps in epochs or None)
PAPER_SCHEDULES = {
    "oim/oim_R50_": ("SGD", 0.0004, 1, 12, (4, 8)),  # MaskGuidedPS sec. 4.2
    "seqnet/seqnet_R50_": ("SGD", 0.003, 5, 20, (16,)),  # SeqNet defaults
    "seqnext/seqnext_": ("Adam", 0.0001, 6, 30, None),  # MGOFE: decay epoch unreadable
    "hoim/hoim_res2net50_": ("SGD", 0.003, 5, 23, (16,)),  # IIDFC sec. IV-B
}


@pytest.mark.parametrize("config", [c for c in FULL_CONFIGS if "Base" not in c])
def test_paper_configs_follow_the_papers(config):
    cfg = load_config(str(CONFIG_DIR / config))
    (prefix,) = [p for p in PAPER_SCHEDULES if config.startswith(p)]
    optimizer, lr, batch, epochs, steps = PAPER_SCHEDULES[prefix]
    s = cfg.SOLVER
    assert (optimizer, lr, batch) == (s.OPTIMIZER, s.BASE_LR, s.IMS_PER_BATCH)
    assert s.SCHEDULE_UNIT == "epoch" and epochs == s.MAX_ITER
    if steps is not None:
        assert tuple(s.STEPS) == steps
    if not prefix.startswith("oim/"):  # SeqNet and IIDFC warm up over the first epoch
        dataset_images = 11206 if "cuhk_sysu" in config else 5704
        assert -(-dataset_images // batch) == s.WARMUP_ITERS
    # OIM loss: tau = 1/30, momentum 0.5, queue 5,000 (CUHK-SYSU) / 500 (PRW), LUT from data.
    oim = cfg.MODEL.OIM
    assert (oim.SCALAR, oim.MOMENTUM, oim.NUM_PERSON_IDS) == (30.0, 0.5, 0)
    assert (5000 if "cuhk_sysu" in config else 500) == oim.QUEUE_SIZE
    assert cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM == 256
    assert cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION == 14
