"""Dataset facts as cached functions of the dataset name: read once per process, nothing written
into the metadata at load, reloaded when a file changes, summary printed once."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from person_search.data.datasets import (
    clear_dataset_cache,
    get_load_summary,
    get_num_person_ids,
    get_search_protocol,
)
from person_search.data.datasets import cuhk_sysu as cuhk_module
from person_search.data.search_protocol import SearchProtocol
from person_search.evaluation.person_search_evaluator import load_protocol_and_ground_truth


@pytest.fixture
def toy_root(toy_cuhk, toy_prw, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    shutil.copytree(toy_cuhk[0], tmp_path / "toy_cuhk_sysu")
    shutil.copytree(toy_prw[0], tmp_path / "toy_prw")
    clear_dataset_cache()
    yield str(tmp_path)
    clear_dataset_cache()


def _count_reads(monkeypatch) -> list[str]:
    """Record every protocol file the CUHK-SYSU loader reads."""
    reads: list[str] = []
    real = cuhk_module.read_protocol_file

    def counting(path, variable, cache=None):
        reads.append(os.path.basename(path))
        return real(path, variable, cache)

    monkeypatch.setattr(cuhk_module, "read_protocol_file", counting)
    return reads


def test_protocol_read_once_per_process(toy_root, monkeypatch):
    """Loading, the evaluator's reads, the metadata and every variant: each protocol file is
    read once, and every caller gets the same protocol object."""
    reads = _count_reads(monkeypatch)
    name = "toy_cuhk_sysu_test"
    dicts = DatasetCatalog.get(name)
    protocol = get_search_protocol(name)
    assert sorted(reads) == ["Occlusion.mat", "Resolution.mat", "TestG50.mat"]
    for _ in range(2):  # e.g. two evaluation periods
        again, ground_truth = load_protocol_and_ground_truth(name)
        assert again is protocol and MetadataCatalog.get(name).search_protocol is protocol
        for variant in protocol.variant_loaders:
            assert protocol.variant(variant) is protocol.variant(variant)  # built once
        assert DatasetCatalog.get(name) == dicts
    assert len(reads) == 3
    assert ground_truth.offsets[-1] == sum(
        len(d["annotations"]) for d in dicts if "annotations" in d
    )


def test_restricted_variants(toy_root):
    name = "toy_cuhk_sysu_test"
    protocol = get_search_protocol(name)
    only = get_search_protocol(name, variants=["occlusion"])
    assert list(only.variant_loaders) == ["occlusion"]
    assert only.variant("occlusion") is protocol.variant("occlusion")  # shared, built once
    assert only.default_variant == protocol.default_variant
    with pytest.raises(KeyError, match="has no variant 'gallery_4000'"):
        get_search_protocol(name, variants=["gallery_4000"])


def test_no_metadata_written_at_load(toy_root):
    for name in ("toy_cuhk_sysu_train", "toy_cuhk_sysu_test", "toy_prw_train", "toy_prw_test"):
        meta = MetadataCatalog.get(name)
        before = dict(meta.__dict__)
        DatasetCatalog.get(name)
        summary = meta.load_summary
        assert summary is get_load_summary(name) and summary.images > 0
        if name.endswith("_train"):
            assert meta.num_person_ids == get_num_person_ids(name) == 5
            assert not hasattr(meta, "search_protocol")
        else:
            assert isinstance(meta.search_protocol, SearchProtocol)
            assert not hasattr(meta, "num_person_ids")
        assert meta.__dict__ == before


def test_summary_printed_once_at_load(toy_root, caplog):
    name = "toy_prw_test"
    with caplog.at_level(logging.INFO, logger="person_search.data.datasets.facts"):
        for _ in range(3):
            DatasetCatalog.get(name)
        get_search_protocol(name)
    printed = [r.getMessage() for r in caplog.records if r.getMessage().startswith(name)]
    assert printed == [f"{name}: {get_load_summary(name)}"]
    assert "80 images" not in printed[0] and "14 images" in printed[0]  # the test toy sizes


def test_reloaded_when_a_file_changes(toy_root, caplog):
    name = "toy_prw_test"
    protocol = get_search_protocol(name)
    path = os.path.join(toy_root, "toy_prw", "query_info.txt")
    with open(path, "rb") as f:
        lines = f.read().split(b"\r\n")
    with open(path, "wb") as f:
        f.write(b"\r\n".join(lines[1:]))  # one query less
    changed = get_search_protocol(name)
    assert changed is not protocol and len(changed.queries) == len(protocol.queries) - 1
    assert len(DatasetCatalog.get(name)) == len(protocol.gallery_image_ids) + len(changed.queries)


def test_returned_dicts_are_copies(toy_root):
    name = "toy_cuhk_sysu_train"
    first = DatasetCatalog.get(name)
    first[0]["annotations"][0]["bbox"][0] = -1.0
    first[0]["annotations"].clear()
    first.clear()
    again = DatasetCatalog.get(name)
    assert again and again[0]["annotations"] and again[0]["annotations"][0]["bbox"][0] >= 0


def test_root_change_reloads(toy_root, tmp_path, monkeypatch):
    name = "toy_cuhk_sysu_train"
    assert len(DatasetCatalog.get(name)) == 12
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("DETECTRON2_DATASETS", str(other))
    with pytest.raises(FileNotFoundError, match=str(other)):
        DatasetCatalog.get(name)


def test_identity_counts(toy_root, monkeypatch):
    # Real training sets: static, published counts (no files needed).
    assert get_num_person_ids("cuhk_sysu_train") == 5532
    assert get_num_person_ids("prw_train") == 483
    assert get_num_person_ids("market1501_train") == 751
    # Toy sets: counted from the loaded data.
    assert get_num_person_ids("toy_prw_train") == 5
    with pytest.raises(ValueError, match="'toy_prw_test' has no positive identity count"):
        get_num_person_ids("toy_prw_test")
    with pytest.raises(ValueError, match="'no_such_set' is not registered"):
        get_num_person_ids("no_such_set")
    # A dataset registered elsewhere: static metadata, else counted in its dicts.
    name = "facts_test_foreign_train"
    DatasetCatalog.register(name, lambda: [{"person_id": i % 4} for i in range(8)])
    try:
        assert get_num_person_ids(name) == 4
        MetadataCatalog.get(name).set(num_person_ids=7)
        assert get_num_person_ids(name) == 7
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_static_protocol_of_a_foreign_dataset():
    name = "facts_test_foreign_test"
    protocol = SearchProtocol("x", ["a.jpg"], np.full(1, -1), [])
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(search_protocol=protocol)
    try:
        assert get_search_protocol(name) is protocol
        with pytest.raises(ValueError, match="has no search protocol"):
            get_search_protocol("toy_prw_train")
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
