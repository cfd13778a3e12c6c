"""Fixtures of the tools tests: a tiny toy CUHK-SYSU."""

from __future__ import annotations

import pytest
from tools_testutils import TINY_CUHK_SIZES

import person_search  # noqa: F401  (compat layer, registers the datasets)
from person_search.data.toy import make_toy_dataset


@pytest.fixture(scope="session")
def tiny_cuhk_root(tmp_path_factory) -> str:
    """A DETECTRON2_DATASETS root holding a tiny ``toy_cuhk_sysu`` (seed 0)."""
    root = tmp_path_factory.mktemp("tools_datasets")
    make_toy_dataset("cuhk_sysu", str(root / "toy_cuhk_sysu"), 0, **TINY_CUHK_SIZES)
    return str(root)


@pytest.fixture
def tiny_cuhk(tiny_cuhk_root, monkeypatch) -> str:
    """``tiny_cuhk_root`` with DETECTRON2_DATASETS pointing at it for the test."""
    monkeypatch.setenv("DETECTRON2_DATASETS", tiny_cuhk_root)
    return tiny_cuhk_root
