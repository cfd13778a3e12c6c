"""Loader options: config keys, the cache directory's environment variable, --no-cache."""

from __future__ import annotations

import dataclasses
import os

import pytest
from ps_data_helpers import load_tool

from person_search.config import get_cfg
from person_search.data.datasets import apply_data_config, data_options, set_data_options
from person_search.data.datasets.options import CACHE_DIR_ENV, cache_directory


@pytest.fixture(autouse=True)
def _restore_options():
    saved = data_options()
    yield
    set_data_options(**dataclasses.asdict(saved))


def test_config_keys_set_the_options(tmp_path):
    cfg = get_cfg()
    assert cfg.DATASETS.PROTOCOL_CACHE.ENABLED and cfg.DATASETS.PROTOCOL_CACHE.DIR == ""
    assert cfg.DATASETS.DROP_NEGATIVE_BOXES is False
    cfg.DATASETS.PROTOCOL_CACHE.ENABLED = False
    cfg.DATASETS.PROTOCOL_CACHE.DIR = str(tmp_path)
    cfg.DATASETS.DROP_NEGATIVE_BOXES = True
    previous = apply_data_config(cfg)
    assert data_options() == dataclasses.replace(
        previous, protocol_cache=False, cache_dir=str(tmp_path), drop_negative_boxes=True
    )


def test_cache_directory_order(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    set_data_options(cache_dir="")
    assert cache_directory() == os.path.join(str(tmp_path / "xdg"), "person_search")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "env"))
    assert cache_directory() == str(tmp_path / "env")
    set_data_options(cache_dir=str(tmp_path / "cfg"))  # the config key wins
    assert cache_directory() == str(tmp_path / "cfg")


def test_evaluate_saved_no_cache(monkeypatch):
    tool = load_tool("evaluate_saved")
    assert tool.parse_args(["f.pth", "--no-cache"]).no_cache
    assert not tool.parse_args(["f.pth"]).no_cache

    def stop(path):
        raise RuntimeError("options checked")

    monkeypatch.setattr(tool, "load_search_results", stop)
    assert data_options().protocol_cache
    with pytest.raises(RuntimeError, match="options checked"):
        tool.main(["f.pth", "--dataset", "toy_cuhk_sysu_test", "--no-cache"])
    assert not data_options().protocol_cache
