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
    dicts, num_ids, _ = load_cuhk_sysu_train(root)
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
    dicts, protocol, _ = load_cuhk_sysu_test(root)
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
    train, num_ids, _ = load_prw_train(root)
    assert num_ids == summary["train_ids"] and len(train) == summary["train_frames"]
    _check_scene_dicts(train)
    pids = {a["person_id"] for d in train for a in d["annotations"]}
    assert pids == set(range(num_ids)) | {-1}
    dicts, protocol, _ = load_prw_test(root)
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
        assert "search_protocol" not in meta.__dict__  # computed, not stored in the metadata
        again = DatasetCatalog.get(f"{prefix}_test")  # read once per process: the same protocol
        assert again == first and again is not first and meta.search_protocol is protocol


def test_real_names_are_strict(toy_prw, tmp_path, monkeypatch):
    """The real names assert the real sizes: a toy set under the real name is refused."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    shutil.copytree(toy_prw[0], tmp_path / "prw")
    with pytest.raises(AnnotationError, match="expected 5704 train_frames"):
        DatasetCatalog.get("prw_train")
    with pytest.raises(FileNotFoundError, match="cuhk_sysu"):
        DatasetCatalog.get("cuhk_sysu_train")


def test_real_train_id_counts_known_without_the_files(tmp_path, monkeypatch):
    """An OIM model for --eval-only on the real datasets sizes its lookup table from the
    published identity counts, without the training annotations being present."""
    from person_search.config import get_cfg
    from person_search.modeling.roi_heads.oim_roi_heads import resolve_num_person_ids

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))  # empty: nothing to read
    assert MetadataCatalog.get("cuhk_sysu_train").num_person_ids == 5532
    assert MetadataCatalog.get("prw_train").num_person_ids == 483
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("cuhk_sysu_train", "prw_train")
    assert resolve_num_person_ids(cfg) == 5532 + 483


def _fields(arr: np.ndarray) -> tuple[str, ...]:
    return tuple(arr.dtype.names or ())


def test_toy_cuhk_files_have_the_real_nesting(toy_cuhk):
    """The toy MAT files nest as loadmat returns the real ones (struct arrays, cells, 1x4 boxes,
    1x0 empty boxes), checked here directly, without the loader."""
    root, summary = toy_cuhk
    ann = os.path.join(root, "annotation")
    img = scipy.io.loadmat(os.path.join(ann, "Images.mat"))["Img"]
    assert img.shape == (1, summary["images"])
    assert _fields(img) == ("imname", "nAppear", "box")
    box = img[0, 0]["box"]
    assert box.shape[0] == 1 and _fields(box) == ("idlocate", "ishard")
    assert box[0, 0]["idlocate"].shape == (1, 4)
    assert img[0, 0]["imname"].dtype.kind == "U"
    pool = scipy.io.loadmat(os.path.join(ann, "pool.mat"))["pool"]
    assert pool.shape == (summary["test_images"], 1) and pool.dtype == object
    train = scipy.io.loadmat(os.path.join(ann, "test", "train_test", "Train.mat"))["Train"]
    assert train.shape == (summary["train_ids"], 1) and train.dtype == object
    ident = train[0, 0]
    assert ident.shape == (1, 1) and _fields(ident) == ("idname", "nAppear", "scene")
    assert _fields(ident[0, 0]["scene"]) == ("imname", "idlocate", "ishard")
    for n in summary["gallery_sizes"]:
        path = os.path.join(ann, "test", "train_test", f"TestG{n}.mat")
        protoc = scipy.io.loadmat(path)[f"TestG{n}"]
        assert protoc.shape == (1, summary["queries"]) and _fields(protoc) == ("Query", "Gallery")
        query, gallery = protoc[0, 0]["Query"], protoc[0, 0]["Gallery"]
        assert query.shape == (1, 1)
        assert _fields(query) == ("imname", "idlocate", "ishard", "idname")
        assert gallery.shape == (1, n) and _fields(gallery) == ("imname", "idlocate", "ishard")
        boxes = [g["idlocate"].shape for g in gallery[0]]
        assert boxes[0] == (1, 4) and boxes[-1] == (1, 0)  # persons first, then absent
    for file_name, variable in (("Occlusion.mat", "Occlusion1"), ("Resolution.mat", "Test_Size")):
        subset = scipy.io.loadmat(os.path.join(ann, "test", "subset", file_name))[variable]
        assert {"Query", "Gallery"} <= set(_fields(subset))


def test_toy_prw_files_have_the_real_nesting(toy_prw):
    root, summary = toy_prw
    frames = scipy.io.loadmat(os.path.join(root, "frame_test.mat"))["img_index_test"]
    assert frames.shape == (summary["test_frames"], 1) and frames.dtype == object
    name = str(frames[0, 0][0])
    assert not name.endswith(".jpg")
    data = scipy.io.loadmat(os.path.join(root, "annotations", name + ".jpg.mat"))
    (variable,) = [k for k in data if not k.startswith("__")]
    rows = data[variable]
    assert variable in ("box_new", "anno_file", "anno_previous")
    assert rows.ndim == 2 and rows.shape[1] == 5 and rows.dtype == np.float64
    with open(os.path.join(root, "query_info.txt"), "rb") as f:
        lines = f.read().split(b"\r\n")
    assert lines[-1] == b"" and len(lines) - 1 == summary["queries"]
    assert all(len(line.split()) == 6 for line in lines[:-1])


def test_toy_prw_negative_coordinates_are_clipped(toy_prw):
    """Some toy persons stick out of the left border (x < 0) like in the real files; the loader
    clips x1 to 0 and keeps x2 = x + w."""
    root, _ = toy_prw
    stored = {}
    for path in glob.glob(os.path.join(root, "annotations", "*.jpg.mat")):
        data = scipy.io.loadmat(path)
        (variable,) = [k for k in data if not k.startswith("__")]
        stored[os.path.basename(path)[: -len(".mat")]] = data[variable]
    negative = {name: rows for name, rows in stored.items() if (rows[:, 1] < 0).any()}
    assert negative
    train = load_prw_train(root).dicts
    dicts = train + [d for d in load_prw_test(root)[0] if "query_index" not in d]
    by_id = {d["image_id"]: d for d in dicts}
    for name, rows in negative.items():
        row = rows[np.argmin(rows[:, 1])]
        boxes = [a["bbox"] for a in by_id[name]["annotations"]]
        assert [0.0, row[2], row[1] + row[3], row[2] + row[4]] in boxes
