"""Re-id dataset loaders on hand-made file trees in each release's naming."""

from __future__ import annotations

import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from person_search.data.datasets.reid import (
    OCCLUDED_CAMERA_ID,
    REID_DATASETS,
    WHOLE_CAMERA_ID,
    ReIDDatasetSpec,
)
from person_search.data.datasets.reid_common import parse_market_name
from person_search.data.reid_mapper import check_parsing_files

SPECS = {s.name: s for s in REID_DATASETS}


def _unchecked(name: str) -> ReIDDatasetSpec:
    """The registered spec of ``name`` without the official-size check (tiny trees)."""
    spec = SPECS[name]
    return ReIDDatasetSpec(spec.name, spec.folders, spec.kind, None, spec.query_folder)


def test_market_train_relabel_and_junk(market_tree):
    dicts = _unchecked("market1501").load("train", str(market_tree))
    assert [d["image_id"] for d in dicts] == [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000301_01.jpg",
        "0007_c1s1_000151_01.jpg",
        "0010_c6s4_002202_02.jpg",
    ]  # junk dropped, sorted by file name
    assert [d["person_id"] for d in dicts] == [0, 0, 1, 2]  # sorted original ids 2, 7, 10
    assert [d["original_person_id"] for d in dicts] == [2, 2, 7, 10]
    assert [d["camera_id"] for d in dicts] == [1, 2, 1, 6]
    assert {d["split"] for d in dicts} == {"train"}
    assert all(os.path.isabs(d["file_name"]) and os.path.isfile(d["file_name"]) for d in dicts)
    assert all("parsing_file" not in d for d in dicts)
    again = _unchecked("market1501").load("train", str(market_tree))
    assert again == dicts  # deterministic


def test_market_test_keeps_distractors_drops_junk(market_tree):
    dicts = _unchecked("market1501").load("test", str(market_tree))
    query = [d for d in dicts if d["split"] == "query"]
    gallery = [d for d in dicts if d["split"] == "gallery"]
    assert [d["person_id"] for d in query] == [3, 5]  # original ids, not relabelled
    assert sorted(d["person_id"] for d in gallery) == [0, 0, 3, 3, 5]
    assert dicts[: len(query)] == query  # queries first
    assert all(d["person_id"] != -1 for d in dicts)


def test_market_folder_candidates(tmp_path, make_images):
    # torchreid's nesting: market1501/Market-1501-v15.09.15/
    base = tmp_path / "market1501" / "Market-1501-v15.09.15"
    make_images(str(base / "bounding_box_train"), ["0001_c1s1_000001_00.jpg"])
    dicts = _unchecked("market1501").load("train", str(tmp_path))
    assert dicts[0]["file_name"].startswith(str(base))


def test_duke_naming(tmp_path, make_images):
    base = tmp_path / "DukeMTMC-reID"
    make_images(str(base / "bounding_box_train"), ["0001_c2_f0046182.jpg", "0005_c8_f0000001.jpg"])
    dicts = _unchecked("dukemtmc").load("train", str(tmp_path))
    assert [(d["person_id"], d["camera_id"]) for d in dicts] == [(0, 2), (1, 8)]
    make_images(str(tmp_path / "Occluded_Duke" / "query"), ["0011_c3_f0000002.jpg"])
    make_images(str(tmp_path / "Occluded_Duke" / "bounding_box_test"), ["0011_c1_f0000003.jpg"])
    test = _unchecked("occluded_dukemtmc").load("test", str(tmp_path))
    assert [(d["split"], d["person_id"], d["camera_id"]) for d in test] == [
        ("query", 11, 3),
        ("gallery", 11, 1),
    ]


def test_unparseable_name_names_the_file(market_tree, make_images):
    make_images(str(market_tree / "Market-1501-v15.09.15" / "query"), ["Thumbs_x.jpg"])
    with pytest.raises(ValueError, match="Thumbs_x.jpg"):
        _unchecked("market1501").load("test", str(market_tree))
    with pytest.raises(ValueError, match="cannot parse"):
        parse_market_name("/a/c1s1_000151_01.jpg")


def test_missing_folders(tmp_path, market_tree):
    with pytest.raises(FileNotFoundError, match="DukeMTMC-reID"):
        _unchecked("dukemtmc").load("train", str(tmp_path))
    os.rename(
        market_tree / "Market-1501-v15.09.15" / "query", market_tree / "Market-1501-v15.09.15" / "q"
    )
    with pytest.raises(FileNotFoundError, match="query"):
        _unchecked("market1501").load("test", str(market_tree))
    (market_tree / "Market-1501-v15.09.15" / "query").mkdir()
    with pytest.raises(FileNotFoundError, match="no images found in .*query"):
        _unchecked("market1501").load("test", str(market_tree))


def test_official_size_check(market_tree, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(market_tree))
    with pytest.raises(RuntimeError, match="query: found 2, expected 3368"):
        DatasetCatalog.get("market1501_test")
    assert MetadataCatalog.get("market1501_test").evaluator_type == "reid"
    assert MetadataCatalog.get("market1501_train").num_person_ids == 751


def test_p_dukemtmc_layout(tmp_path, make_images):
    base = tmp_path / "P-DukeMTMC-reid"
    make_images(
        str(base / "train"),
        [
            "whole_body_images/0004/0004_c1_f0000100.jpg",
            "whole_body_images/0009/0009_c2_f0000200.jpg",
            "occluded_body_images/0004/0004_c3_f0000300.jpg",
        ],
    )
    make_images(
        str(base / "test"),
        [
            "occluded_body_images/0012/0012_c1_f0000400.jpg",
            "whole_body_images/0012/0012_c1_f0000500.jpg",
            "whole_body_images/0013/0013_c2_f0000600.jpg",
        ],
    )
    train = _unchecked("p_dukemtmc").load("train", str(tmp_path))
    assert [(d["person_id"], d["camera_id"]) for d in train] == [
        (0, WHOLE_CAMERA_ID),
        (1, WHOLE_CAMERA_ID),
        (0, OCCLUDED_CAMERA_ID),
    ]
    test = _unchecked("p_dukemtmc").load("test", str(tmp_path))
    assert [(d["split"], d["person_id"], d["camera_id"]) for d in test] == [
        ("query", 12, OCCLUDED_CAMERA_ID),
        ("gallery", 12, WHOLE_CAMERA_ID),
        ("gallery", 13, WHOLE_CAMERA_ID),
    ]


def test_occluded_reid_per_identity_folders(tmp_path, make_images):
    base = tmp_path / "Occluded_REID"
    make_images(str(base / "occluded_body_images"), ["001/001_01.tif", "002/002_01.tif"])
    make_images(str(base / "whole_body_images"), ["001/001_01.tif", "002/002_03.tif"])
    dicts = _unchecked("occluded_reid").load("test", str(tmp_path))
    assert [(d["split"], d["person_id"], d["camera_id"]) for d in dicts] == [
        ("query", 1, OCCLUDED_CAMERA_ID),
        ("query", 2, OCCLUDED_CAMERA_ID),
        ("gallery", 1, WHOLE_CAMERA_ID),
        ("gallery", 2, WHOLE_CAMERA_ID),
    ]
    with pytest.raises(ValueError, match="only a test split"):
        _unchecked("occluded_reid").load("train", str(tmp_path))
    make_images(str(base / "whole_body_images"), ["003/004_01.tif"])
    with pytest.raises(ValueError, match="004_01.tif"):
        _unchecked("occluded_reid").load("test", str(tmp_path))


def test_partial_reid_flat_names(tmp_path, make_images):
    base = tmp_path / "Partial_REID"
    make_images(str(base / "partial_body_images"), ["001_001.jpg", "060_005.jpg"])
    make_images(str(base / "whole_body_images"), ["001_002.jpg", "060_001.jpg"])
    make_images(str(base / "occluded_body_images"), ["001_003.jpg"])  # not used by the protocol
    dicts = _unchecked("partial_reid").load("test", str(tmp_path))
    assert [(d["split"], d["person_id"]) for d in dicts] == [
        ("query", 1),
        ("query", 60),
        ("gallery", 1),
        ("gallery", 60),
    ]
    make_images(str(base / "partial_body_images"), ["probe.jpg"])
    with pytest.raises(ValueError, match="probe.jpg"):
        _unchecked("partial_reid").load("test", str(tmp_path))


def test_parsing_files(market_tree):
    base = market_tree / "Market-1501-v15.09.15"
    (base / "parsing" / "query").mkdir(parents=True)
    mask = Image.fromarray(np.zeros((8, 4), dtype=np.uint8))
    mask.save(base / "parsing" / "query" / "0003_c1s1_001051_00.png")
    # a split with a parsing folder names every image's mirrored map; a missing one is an
    # error naming it where the config is known (the train loader / mapper), unless allowed
    dicts = _unchecked("market1501").load("test", str(market_tree))
    queries = [d for d in dicts if d["split"] == "query"]
    with pytest.raises(FileNotFoundError, match="0005_c2s1_000976_00.png"):
        check_parsing_files(queries, allow_missing=False)
    assert check_parsing_files(queries, allow_missing=True) == 1
    mask.save(base / "parsing" / "query" / "0005_c2s1_000976_00.png")
    assert check_parsing_files(queries, allow_missing=False) == 0
    dicts = _unchecked("market1501").load("test", str(market_tree))
    for d in dicts:  # the query split has masks, the gallery split has no parsing folder
        if d["split"] == "query":
            stem = os.path.splitext(d["image_id"])[0]
            assert d["parsing_file"] == str(base / "parsing" / "query" / f"{stem}.png")
        else:
            assert "parsing_file" not in d


def test_every_dataset_registered_for_reid_evaluation():
    expected = {
        "market1501": ("train", "test"),
        "dukemtmc": ("train", "test"),
        "occluded_dukemtmc": ("train", "test"),
        "p_dukemtmc": ("train", "test"),
        "occluded_reid": ("test",),
        "partial_reid": ("test",),
        "toy_market1501": ("train", "test"),
    }
    assert {s.name: s.splits for s in REID_DATASETS} == expected
    registered = set(DatasetCatalog.list())
    for name, splits in expected.items():
        for split in splits:
            assert f"{name}_{split}" in registered
            assert MetadataCatalog.get(f"{name}_{split}").evaluator_type == "reid"
    # every real release asserts its official sizes; the toy set does not
    assert all(s.expected is not None for s in REID_DATASETS if s.name != "toy_market1501")
    assert SPECS["occluded_dukemtmc"].expected.query == 2210
    assert SPECS["p_dukemtmc"].expected.train_ids == 665


def test_official_sizes_checked_for_grouped_and_p_duke(tmp_path, make_images, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    make_images(str(tmp_path / "Occluded_REID" / "occluded_body_images"), ["001/001_01.tif"])
    make_images(str(tmp_path / "Occluded_REID" / "whole_body_images"), ["001/001_01.tif"])
    with pytest.raises(RuntimeError, match="query: found 1, expected 1000"):
        DatasetCatalog.get("occluded_reid_test")
    base = tmp_path / "P-DukeMTMC-reid" / "train"
    make_images(str(base), ["whole_body_images/0004/0004_c1_f0000100.jpg"])
    make_images(str(base), ["occluded_body_images/0004/0004_c3_f0000300.jpg"])
    with pytest.raises(RuntimeError, match="train: found 2, expected 12927.*train ids"):
        DatasetCatalog.get("p_dukemtmc_train")
    with pytest.raises(FileNotFoundError, match="Partial_REID"):
        DatasetCatalog.get("partial_reid_test")


def test_real_size_layout_passes_the_check(tmp_path, make_images):
    # A tree of exactly the official Occluded-REID counts loads through the size check.
    base = tmp_path / "OccludedREID"
    names = [f"{pid:03d}/{pid:03d}_{n:02d}.tif" for pid in range(1, 201) for n in range(1, 6)]
    make_images(str(base / "occluded_body_images"), names)
    make_images(str(base / "whole_body_images"), names)
    dicts = SPECS["occluded_reid"].load("test", str(tmp_path))
    assert len(dicts) == 2000 and len({d["person_id"] for d in dicts}) == 200
