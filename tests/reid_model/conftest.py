"""Fixtures of the re-id model tests: a tiny CPU config of the re-id baseline."""

import pytest
from reid_model_testutils import tiny_reid_cfg


@pytest.fixture
def tiny_cfg():
    return tiny_reid_cfg()
