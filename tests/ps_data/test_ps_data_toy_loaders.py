"""The real-format loaders on toy datasets of both formats, directly and through the catalog."""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest
import scipy.io
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from person_search.data.datasets import (
    load_cuhk_sysu_test,
    load_cuhk_sysu_train,
    load_prw_test,
    load_prw_train,
)
from person_search.data.datasets.matfile import AnnotationError
from person_search.data.search_protocol import SearchProtocol


def _check_scene_dicts(dicts: list[dict]) -> None:
    for d in dicts:
        assert os.path.isfile(d["file_name"])
        assert d["image_id"] == os.path.basename(d["file_name"])
        for a in d["annotations"]:
            x1, y1, x2, y2 = a["bbox"]
            assert a["bbox_mode"] == BoxMode.XYXY_ABS and a["category_id"] == 0
            assert 0 <= x1 < x2 and 0 <= y1 < y2
            assert y2 <= d["height"]


def test_toy_cuhk_train(toy_cuhk):
    root, summary = toy_cuhk
    dicts, num_ids = load_cuhk_sysu_train(root)
    assert len(dicts) == summary["train_images"]
    assert num_ids == summary["train_ids"]
    _check_scene_dicts(dicts)
    pids = np.asarray([a["person_id"] for d in dicts for a in d["annotations"]])
    assert set(pids[pids >= 0].tolist()) == set(range(num_ids))
    assert (pids == -1).any()
    # The generator writes one w=0 box into the first training image: dropped.
    img = scipy.io.loadmat(os.path.join(root, "annotation", "Images.mat"))["Img"]
    stored = sum(rec["box"].size for rec in img[0])
    test_boxes = sum(
        len(d["annotations"]) for d in load_cuhk_sysu_test(root)[0] if "annotations" in d
    )
    assert len(pids) + test_boxes == stored - 2


def test_toy_cuhk_test_protocol(toy_cuhk):
    root, summary = toy_cuhk
    dicts, protocol = load_cuhk_sysu_test(root)
    gallery = [d for d in dicts if "query_index" not in d]
    queries = [d for d in dicts if "query_index" in d]
    assert len(gallery) == summary["test_images"] and len(queries) == summary["queries"]
    _check_scene_dicts(gallery)
    assert [q["query_index"] for q in queries] == list(range(len(queries)))
    assert protocol.gallery_image_ids == [d["image_id"] for d in gallery]
    assert protocol.default_variant == "gallery_50"  # TestG100 needs >= 101 test images
    assert set(protocol.variant_loaders) == {"gallery_50", "occlusion", "resolution", "all"}
    by_id = {d["image_id"]: d for d in gallery}
    g50 = protocol.variant("gallery_50")
    every = protocol.variant("all")
    assert every.galleries is None
    for qi, (gal, (pos_img, pos_box)) in enumerate(zip(g50.galleries, g50.positives)):
        query = protocol.queries[qi]
        assert len(gal) == 50
        own = protocol.gallery_image_ids.index(query.image_id)
        assert own not in gal
        # Every positive box is a gt box of that image carrying the query's original id.
        for i, box in zip(pos_img, pos_box):
            annos = by_id[protocol.gallery_image_ids[i]]["annotations"]
            assert any(
                a["person_id"] == query.person_id and np.allclose(a["bbox"], box) for a in annos
            )
        # "all" finds the same positives (the toy gallery lists hold every image of the person).
        assert sorted(pos_img.tolist()) == sorted(every.positives[qi][0].tolist())
        assert queries[qi]["query_box"] == pytest.approx(query.box.tolist())
    for name in ("occlusion", "resolution"):
        subset = protocol.variant(name)
        assert 1 <= len(subset.query_indices) == summary[f"{name}_queries"]
        assert len(subset.galleries) == len(subset.query_indices)


def test_toy_prw(toy_prw):
    root, summary = toy_prw
    train, num_ids = load_prw_train(root)
    assert num_ids == summary["train_ids"] and len(train) == summary["train_frames"]
    _check_scene_dicts(train)
    pids = {a["person_id"] for d in train for a in d["annotations"]}
    assert pids == set(range(num_ids)) | {-1}
    dicts, protocol = load_prw_test(root)
    gallery = [d for d in dicts if "query_index" not in d]
    assert len(gallery) == summary["test_frames"]
    assert len(protocol.queries) == summary["queries"]
    assert set(protocol.variant_loaders) == {"all", "cross_camera"}
    cross = protocol.variant("cross_camera")
    assert cross.cross_camera and cross.galleries is None
    for q, (imgs, _) in zip(protocol.queries, cross.positives):
        assert len(imgs) > 0  # each test identity appears under >= 2 cameras
        assert (protocol.gallery_camera_ids[imgs] != q.camera_id).all()
    # The generator uses the alternative variable names in some files, like the real data.
    names = set()
    for path in glob.glob(os.path.join(root, "annotations", "*.mat")):
        names |= {v[0] for v in scipy.io.whosmat(path)}
    assert {"box_new", "anno_file"} <= names


def test_registered_toy_names(toy_cuhk, toy_prw, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    shutil.copytree(toy_cuhk[0], tmp_path / "toy_cuhk_sysu")
    shutil.copytree(toy_prw[0], tmp_path / "toy_prw")
    for prefix in ("toy_cuhk_sysu", "toy_prw"):
        meta = MetadataCatalog.get(f"{prefix}_test")
        assert meta.evaluator_type == "person_search" and meta.thing_classes == ["person"]
        DatasetCatalog.get(f"{prefix}_train")
        assert MetadataCatalog.get(f"{prefix}_train").num_person_ids == 5
        first = DatasetCatalog.get(f"{prefix}_test")
        protocol = meta.search_protocol
        assert isinstance(protocol, SearchProtocol) and protocol.name == f"{prefix}_test"
        again = DatasetCatalog.get(f"{prefix}_test")  # reloading replaces the protocol
        assert len(again) == len(first) and meta.search_protocol is not protocol


def test_real_names_are_strict(toy_prw, tmp_path, monkeypatch):
    """The real names assert the real sizes: a toy set under the real name is refused."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    shutil.copytree(toy_prw[0], tmp_path / "prw")
    with pytest.raises(AnnotationError, match="expected 5704 train_frames"):
        DatasetCatalog.get("prw_train")
    with pytest.raises(FileNotFoundError, match="cuhk_sysu"):
        DatasetCatalog.get("cuhk_sysu_train")
