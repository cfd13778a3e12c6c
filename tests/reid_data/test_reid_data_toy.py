"""The toy Market-1501-layout re-id set: layout, determinism, distractors/junk, masks, occlusion."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from person_search.data.toy.identities import make_identities
from person_search.data.toy.reid_writer import _occlude, write_market1501

SMALL = {
    "num_ids": 6,
    "num_cameras": 3,
    "images_per_camera": (1, 2),
    "height": 32,
    "width": 16,
    "num_distractors": 2,
    "num_junk": 2,
}


def _digest(folder: str) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("reid_toy")
    summary = write_market1501(str(root / "toy_market1501"), 3, **SMALL)
    return root, summary


def test_layout_and_loading(toy_root, monkeypatch):
    root, summary = toy_root
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    train = DatasetCatalog.get("toy_market1501_train")
    test = DatasetCatalog.get("toy_market1501_test")
    assert len(train) == summary["train"]
    assert sorted({d["person_id"] for d in train}) == list(range(summary["train_ids"]))
    assert MetadataCatalog.get("toy_market1501_train").num_person_ids == summary["train_ids"]
    query = [d for d in test if d["split"] == "query"]
    gallery = [d for d in test if d["split"] == "gallery"]
    assert len(query) == summary["query"]
    # junk (-1) files exist on disk but are dropped; distractors (0) stay in the gallery
    junk = [f for f in os.listdir(root / "toy_market1501" / "bounding_box_test") if f[:2] == "-1"]
    assert len(junk) == SMALL["num_junk"]
    assert len(gallery) == summary["gallery"] - SMALL["num_junk"]
    assert sum(d["person_id"] == 0 for d in gallery) == SMALL["num_distractors"]
    # every query has a gallery image of its id under another camera
    for q in query:
        assert any(
            g["person_id"] == q["person_id"] and g["camera_id"] != q["camera_id"] for g in gallery
        )
    # train and test identities are disjoint; original ids are ToyIdentity.pid + 1
    train_ids = {d["original_person_id"] for d in train}
    assert train_ids == set(range(1, summary["train_ids"] + 1))
    assert not train_ids & {d["person_id"] for d in test}
    for d in train + test:
        assert os.path.isfile(d["parsing_file"])
        with Image.open(d["file_name"]) as img:
            assert img.size == (SMALL["width"], SMALL["height"])
        with Image.open(d["parsing_file"]) as m:
            mask = np.asarray(m)
        assert mask.shape == (SMALL["height"], SMALL["width"])
        assert set(np.unique(mask)) <= {0, 1, 5, 9, 13, 18}  # LIP labels only


def test_deterministic_and_seeded(toy_root, tmp_path):
    root, _ = toy_root
    write_market1501(str(tmp_path / "same"), 3, **SMALL)
    reference = _digest(str(root / "toy_market1501"))
    assert _digest(str(tmp_path / "same")) == reference
    write_market1501(str(tmp_path / "other"), 4, **SMALL)
    assert _digest(str(tmp_path / "other")) != reference
    with pytest.raises(FileExistsError):
        write_market1501(str(tmp_path / "same"), 3, **SMALL)
    write_market1501(str(tmp_path / "same"), 4, overwrite=True, **SMALL)
    assert _digest(str(tmp_path / "same")) == _digest(str(tmp_path / "other"))
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p or ".old-" in p]


def test_identities_shared_with_person_search_toy():
    # The person-search toy writers draw make_identities(train + test + unlabelled, seed) (60 by
    # default for CUHK-SYSU); the re-id writer make_identities(num_ids, seed): identity k must
    # be the same synthetic person whatever the count.
    reid = make_identities(SMALL["num_ids"], 3)
    person_search = make_identities(24 + 16 + 20, 3)
    assert reid == person_search[: SMALL["num_ids"]]
    assert make_identities(SMALL["num_ids"], 4) != reid  # and the seed matters


def test_make_toy_dataset_entry_point(toy_root, tmp_path):
    # tools/make_toy_dataset.py --format market1501 goes through make_toy_dataset
    from person_search.data.toy import make_toy_dataset

    root, summary = toy_root
    out = make_toy_dataset("market1501", str(tmp_path / "cli"), 3, **SMALL)
    assert out == summary
    assert _digest(str(tmp_path / "cli")) == _digest(str(root / "toy_market1501"))
    with open(tmp_path / "cli" / "toy_info.json") as f:
        assert json.load(f) == summary
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_occluded_queries_and_masks_cover_the_body(toy_root):
    root, summary = toy_root
    base = root / "toy_market1501"
    assert 0 < summary["occluded_queries"] <= summary["query"]
    for folder in ("query", "bounding_box_train"):
        for name in os.listdir(base / folder):
            with Image.open(base / "parsing" / folder / (name[:-4] + ".png")) as m:
                mask = np.asarray(m)
            assert (mask > 0).any(), name  # every crop shows (part of) a person


def test_occluder_is_background_in_mask():
    rng = np.random.default_rng(0)
    image = np.full((40, 20, 3), 100, dtype=np.uint8)
    mask = np.full((40, 20), 5, dtype=np.uint8)
    _occlude(image, mask, rng)
    covered = mask == 0
    assert 0.25 * mask.size <= covered.sum() <= 0.55 * mask.size
    assert (image[covered] != 100).any() and (image[~covered] == 100).all()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_ids"):
        write_market1501(str(tmp_path / "x"), 0, num_ids=2)
    assert not (tmp_path / "x").exists()
