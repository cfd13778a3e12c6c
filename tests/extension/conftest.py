"""Fixtures of the extension-point tests: tiny toy datasets (CUHK-SYSU and Market-1501
formats) under one DETECTRON2_DATASETS root."""

from __future__ import annotations

import pytest

import person_search  # noqa: F401  (compat layer, registers the library)
from person_search.data.toy import make_toy_dataset

# The smallest toy CUHK-SYSU with a gallery-50 protocol (>= 51 test images).
TINY_CUHK_SIZES = {
    "num_train_ids": 4,
    "num_test_ids": 3,
    "num_train_images": 6,
    "num_test_images": 52,
    "num_unlabelled_ids": 3,
}
TINY_MARKET_SIZES = {
    "num_ids": 8,
    "num_cameras": 3,
    "height": 64,
    "width": 32,
    "num_distractors": 2,
    "num_junk": 1,
}


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> str:
    """A datasets root holding ``toy_cuhk_sysu`` and ``toy_market1501`` (seed 0)."""
    root = tmp_path_factory.mktemp("extension_datasets")
    make_toy_dataset("cuhk_sysu", str(root / "toy_cuhk_sysu"), 0, **TINY_CUHK_SIZES)
    make_toy_dataset("market1501", str(root / "toy_market1501"), 0, **TINY_MARKET_SIZES)
    return str(root)


@pytest.fixture
def toy_datasets(toy_root, monkeypatch) -> str:
    """``toy_root`` with DETECTRON2_DATASETS pointing at it, one intra-op thread."""
    import torch

    monkeypatch.setenv("DETECTRON2_DATASETS", toy_root)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield toy_root
    torch.set_num_threads(previous)
