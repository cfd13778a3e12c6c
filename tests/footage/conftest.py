"""Fixtures of the footage tests: a tiny toy CUHK-SYSU and the weights of a tiny OIM model."""

from __future__ import annotations

import person_search  # noqa: F401  (compat layer first; registers the datasets and models)

# isort: split
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng
from footage_testutils import (
    OIM_TOY_CONFIG,
    TINY_CUHK_SIZES,
    TINY_OVERRIDES,
    TRAIN_OVERRIDES,
    tiny_cfg,
)

from person_search.data.toy import make_toy_dataset
from person_search.engine import PersonSearchTrainer, load_config
from person_search.footage import FootageModel


@pytest.fixture(scope="session")
def tiny_cuhk_root(tmp_path_factory) -> str:
    """A DETECTRON2_DATASETS root holding a tiny ``toy_cuhk_sysu`` (seed 0)."""
    root = tmp_path_factory.mktemp("footage_datasets")
    make_toy_dataset("cuhk_sysu", str(root / "toy_cuhk_sysu"), 0, **TINY_CUHK_SIZES)
    return str(root)


@pytest.fixture(scope="session")
def untrained_weights(tmp_path_factory) -> str:
    """A weights file of the tiny OIM model as initialised with seed 0."""
    torch.manual_seed(0)
    model = build_model(load_config(str(OIM_TOY_CONFIG), TINY_OVERRIDES))
    path = tmp_path_factory.mktemp("footage_weights") / "untrained.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="session")
def trained_weights(tiny_cuhk_root, tmp_path_factory) -> str:
    """``model_final.pth`` of the tiny OIM model trained a few dozen iterations on the tiny toy
    CUHK-SYSU (a detector that finds persons; an untrained one scores every box ~1e-20)."""
    out = tmp_path_factory.mktemp("footage_trained")
    previous = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETECTRON2_DATASETS", tiny_cuhk_root)
        torch.set_num_threads(1)
        cfg = load_config(str(OIM_TOY_CONFIG), [*TINY_OVERRIDES, *TRAIN_OVERRIDES])
        cfg.OUTPUT_DIR = str(out)
        cfg.freeze()
        seed_all_rng(cfg.SEED)  # the data order too: the same model every run
        trainer = PersonSearchTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        torch.set_num_threads(previous)
    return str(out / "model_final.pth")


@pytest.fixture(scope="session")
def trained_model(trained_weights) -> FootageModel:
    """The trained tiny model, loaded as the tools load a model."""
    return FootageModel.load(tiny_cfg(trained_weights))


@pytest.fixture
def single_thread():
    """One intra-op thread (on a busy 2-core machine two threads make small convolutions many
    times slower). Restores the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
