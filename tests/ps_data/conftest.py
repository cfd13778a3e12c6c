"""Fixtures of the person-search data tests: small toy datasets in both formats."""

from __future__ import annotations

import pytest
from ps_data_helpers import TOY_CUHK_SIZES, TOY_PRW_SIZES

import person_search  # noqa: F401  (applies the compat layer, registers datasets)
from person_search.data.toy import make_toy_dataset


@pytest.fixture(scope="session")
def toy_cuhk(tmp_path_factory) -> tuple[str, dict]:
    """(root, summary) of a small toy CUHK-SYSU dataset, seed 0."""
    root = str(tmp_path_factory.mktemp("ps_data") / "toy_cuhk_sysu")
    return root, make_toy_dataset("cuhk_sysu", root, 0, **TOY_CUHK_SIZES)


@pytest.fixture(scope="session")
def toy_prw(tmp_path_factory) -> tuple[str, dict]:
    """(root, summary) of a small toy PRW dataset, seed 0."""
    root = str(tmp_path_factory.mktemp("ps_data") / "toy_prw")
    return root, make_toy_dataset("prw", root, 0, **TOY_PRW_SIZES)
