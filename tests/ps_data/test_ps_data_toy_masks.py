"""Person masks of the toy CUHK-SYSU (``mask_fraction``): the paper's image selection, both
layouts (labelme directory, COCO instances) holding the same polygons, masks of labelled
persons only and inside their boxes, and scenes identical with or without masks."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.structures import BoxMode
from ps_data_helpers import TOY_CUHK_SIZES, load_tool

from person_search.data.datasets.cuhk_sysu import load_cuhk_sysu_train
from person_search.data.toy import make_toy_dataset
from person_search.data.toy.person_masks import (
    COCO_MASK_FILE,
    LABELME_MASK_DIR,
    owner_polygons,
    select_mask_images,
)


@pytest.fixture(scope="module")
def masked_cuhk(tmp_path_factory) -> tuple[str, dict]:
    root = str(tmp_path_factory.mktemp("ps_data_masks") / "toy_cuhk_sysu")
    return root, make_toy_dataset("cuhk_sysu", root, 0, mask_fraction=1.0, **TOY_CUHK_SIZES)


def test_select_mask_images_by_portions():
    rng = np.random.default_rng(0)
    order = list(range(11))
    has_labelled = [i != 4 for i in range(11)]
    chosen = select_mask_images(order, has_labelled, 0.2, rng)
    # Portions of 5: [0..4], [5..10] (the last takes the remainder); one image drawn from each,
    # image 4 (no labelled person) dropped if drawn.
    assert len(chosen) <= 2 and all(has_labelled[i] for i in chosen)
    assert not chosen or chosen[0] <= 4 or chosen[0] >= 5
    assert [i for i in chosen if i >= 5] == [i for i in chosen[-1:] if i >= 5]
    all_images = select_mask_images(order, has_labelled, 1.0, np.random.default_rng(1))
    assert all_images == [i for i in order if i != 4]
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=f"mask_fraction must be in \\(0, 1\\], got {bad}"):
            select_mask_images(order, has_labelled, bad, rng)


def test_owner_polygons_trace_each_piece():
    owner = np.full((10, 12), -1)
    owner[1:5, 1:4] = 0  # a 4x3 block
    owner[7:9, 8:11] = 0  # a second piece of person 0
    owner[1:3, 6:9] = 1
    polygons = owner_polygons(owner, 0)
    assert len(polygons) == 2
    rasterized = np.zeros((10, 12), bool)
    for p in polygons:
        rles = mask_util.frPyObjects([p], 10, 12)
        rasterized |= mask_util.decode(mask_util.merge(rles)).astype(bool)
    # The outline runs through the boundary pixels' centres: rasterized (pycocotools), it stays
    # within the pieces and covers each of them (less a half-pixel rim).
    assert not (rasterized & (owner != 0)).any()
    assert rasterized[2:5, 2:4].all() and rasterized[8, 9:11].all()
    assert rasterized.sum() == 6 + 2
    assert owner_polygons(owner, 5) == []


def test_both_layouts_hold_the_same_masks_of_labelled_persons(masked_cuhk):
    root, summary = masked_cuhk
    labelme_files = sorted(glob.glob(os.path.join(root, LABELME_MASK_DIR, "*.json")))
    with open(os.path.join(root, COCO_MASK_FILE)) as f:
        coco = json.load(f)
    assert summary["mask_fraction"] == 1.0
    assert len(labelme_files) == len(coco["images"]) == summary["mask_images"] > 0
    assert len(coco["annotations"]) == summary["mask_persons"]
    split = load_cuhk_sysu_train(root)
    dicts = {os.path.basename(d["file_name"]): d for d in split.dicts}
    with_labelled = [
        n for n, d in dicts.items() if any(a["person_id"] >= 0 for a in d["annotations"])
    ]
    assert sorted(os.path.basename(i["file_name"]) for i in coco["images"]) == sorted(with_labelled)
    coco_by_image = {
        i["file_name"]: [a for a in coco["annotations"] if a["image_id"] == i["id"]]
        for i in coco["images"]
    }
    for path in labelme_files:
        with open(path) as f:
            labelme = json.load(f)
        name = os.path.basename(labelme["imagePath"])
        assert os.path.isfile(os.path.join(os.path.dirname(path), labelme["imagePath"]))
        record = dicts[name]
        assert (labelme["imageHeight"], labelme["imageWidth"]) == (
            record["height"],
            record["width"],
        )
        groups: dict[int, list] = {}
        for shape in labelme["shapes"]:
            assert shape["shape_type"] == "polygon" and shape["label"] == "person"
            groups.setdefault(shape["group_id"], []).append(sum(shape["points"], []))
        annotations = coco_by_image[name]
        assert [a["segmentation"] for a in annotations] == list(groups.values())
        labelled = [
            BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            for a in record["annotations"]
            if a["person_id"] >= 0
        ]
        assert len(groups) <= len(labelled)
        for polygons in groups.values():
            points = np.concatenate([np.reshape(p, (-1, 2)) for p in polygons])
            lo, hi = points.min(0), points.max(0)
            # inside exactly one labelled person's box (its visible part)
            inside = [np.all(lo >= b[:2]) and np.all(hi <= b[2:]) for b in np.asarray(labelled)]
            assert any(inside), (name, lo, hi)


def test_masks_change_no_scene(masked_cuhk, tmp_path):
    root, _ = masked_cuhk
    plain = str(tmp_path / "plain")
    summary = make_toy_dataset("cuhk_sysu", plain, 0, **TOY_CUHK_SIZES)
    assert summary["mask_images"] == 0 and not os.path.exists(os.path.join(plain, "masks"))
    for sub in ("Image/SSM", "annotation"):
        for path in glob.glob(os.path.join(plain, sub, "**", "*.*"), recursive=True):
            other = os.path.join(root, os.path.relpath(path, plain))
            with open(path, "rb") as a, open(other, "rb") as b:
                assert a.read() == b.read(), path


def test_fraction_selects_fewer_images_and_the_tool_takes_it(masked_cuhk, tmp_path):
    _, full = masked_cuhk
    out = str(tmp_path / "fifth")
    summary = load_tool("make_toy_dataset").main(
        ["--format", "cuhk_sysu", "--out", out, "--seed", "0", "--mask-fraction", "0.2"]
        + [a for k, v in TOY_CUHK_SIZES.items() for a in ("--" + k.replace("_", "-"), str(v))]
    )
    assert 0 < summary["mask_images"] <= TOY_CUHK_SIZES["num_train_images"] // 5
    assert summary["mask_images"] < full["mask_images"]
    with pytest.raises(ValueError, match="mask_fraction must be in"):
        make_toy_dataset("cuhk_sysu", str(tmp_path / "bad"), 0, mask_fraction=2.0, **TOY_CUHK_SIZES)
