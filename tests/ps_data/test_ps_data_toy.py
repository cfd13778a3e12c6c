"""Toy generator: identities/rendering, determinism, atomic output, CLI."""

from __future__ import annotations

import glob
import hashlib
import json
import os

import numpy as np
import pytest
import scipy.io
from PIL import Image
from ps_data_helpers import TOY_CUHK_SIZES, TOY_PRW_SIZES, load_tool

from person_search.data.datasets import load_cuhk_sysu_test, load_cuhk_sysu_train
from person_search.data.toy import (
    PARSING_CLASSES,
    make_identities,
    make_toy_dataset,
    render_person,
)
from person_search.data.toy.scenes import ScenePerson, compose_scene

TINY_PRW = {
    "num_train_ids": 2,
    "num_test_ids": 2,
    "num_train_frames": 4,
    "num_test_frames": 4,
    "num_cameras": 2,
    "num_unlabelled_ids": 2,
}


def _digests(root: str) -> dict[str, str]:
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_parsing_classes():
    assert PARSING_CLASSES == (
        "background",
        "head",
        "upper_body",
        "lower_body",
        "shoes",
        "accessory",
    )


def test_identities_deterministic_and_distinct():
    a, b = make_identities(40, seed=3), make_identities(40, seed=3)
    assert a == b
    assert [i.pid for i in a] == list(range(40))
    combos = {(i.upper, i.lower, i.upper_pattern) for i in a}
    assert len(combos) == 40
    assert make_identities(40, seed=4) != a
    for ident in a:
        assert 0 < ident.leg_frac < 1


def test_render_person_outputs():
    ident = make_identities(5, seed=0)[2]
    img, mask = render_person(ident, 96, 40, np.random.default_rng(0))
    assert img.shape == (96, 40, 3) and img.dtype == np.uint8
    assert mask.shape == (96, 40) and mask.dtype == np.uint8
    assert mask.max() < len(PARSING_CLASSES)
    assert (img[mask == 0] == 0).all()  # transparent background
    classes = set(np.unique(mask).tolist())
    assert {0, 1, 2, 3, 4} <= classes
    # Head on top, shoes at the bottom.
    rows_head = np.flatnonzero((mask == 1).any(axis=1))
    rows_shoes = np.flatnonzero((mask == 4).any(axis=1))
    assert rows_head.max() < rows_shoes.min()
    img2, mask2 = render_person(ident, 96, 40, np.random.default_rng(0))
    assert np.array_equal(img, img2) and np.array_equal(mask, mask2)
    dark, _ = render_person(ident, 96, 40, np.random.default_rng(0), brightness=0.5)
    assert dark[mask > 0].mean() < 0.7 * img[mask > 0].mean()


def test_same_identity_looks_alike():
    """Mean upper-body colour: closer between renders of one identity than of two identities."""
    ids = make_identities(2, seed=1)
    rng = np.random.default_rng(0)

    def upper_colour(ident):
        img, mask = render_person(ident, 120, 50, rng)
        return img[mask == 2].mean(axis=0)

    a1, a2, b = upper_colour(ids[0]), upper_colour(ids[0]), upper_colour(ids[1])
    assert np.linalg.norm(a1 - a2) < np.linalg.norm(a1 - b)


def test_render_person_rejects_tiny_patch():
    with pytest.raises(ValueError, match="too small"):
        render_person(make_identities(1, 0)[0], 4, 2, np.random.default_rng(0))


def test_cuhk_deterministic(toy_cuhk, tmp_path):
    root, summary = toy_cuhk
    again = str(tmp_path / "again")
    assert make_toy_dataset("cuhk_sysu", again, 0, **TOY_CUHK_SIZES) == summary
    first, second = _digests(root), _digests(again)
    assert first == second
    assert "annotation/test/train_test/TestG50.mat" in first
    other = str(tmp_path / "other")
    make_toy_dataset("cuhk_sysu", other, 1, **TOY_CUHK_SIZES)
    assert _digests(other)["annotation/Images.mat"] != first["annotation/Images.mat"]


def test_prw_deterministic(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    make_toy_dataset("prw", a, 5, **TINY_PRW)
    make_toy_dataset("prw", b, 5, **TINY_PRW)
    make_toy_dataset("prw", c, 6, **TINY_PRW)
    assert _digests(a) == _digests(b)
    assert _digests(a) != _digests(c)


def test_refuses_non_empty_dir_and_overwrites(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_toy_dataset("prw", str(out), 0, **TINY_PRW)
    assert os.listdir(out) == ["keep.txt"]
    make_toy_dataset("prw", str(out), 0, overwrite=True, **TINY_PRW)
    assert "keep.txt" not in os.listdir(out)
    assert os.path.isfile(out / "query_info.txt")
    # An empty existing directory is fine without --overwrite.
    empty = tmp_path / "empty"
    empty.mkdir()
    make_toy_dataset("prw", str(empty), 0, **TINY_PRW)
    assert os.path.isfile(empty / "frame_test.mat")


def test_failed_generation_leaves_nothing(tmp_path):
    out = tmp_path / "ds"
    sizes = dict(TOY_CUHK_SIZES, num_test_images=10)  # too few for a 50-image gallery
    with pytest.raises(ValueError, match="too few"):
        make_toy_dataset("cuhk_sysu", str(out), 0, **sizes)
    assert os.listdir(tmp_path) == []


def test_unknown_format_and_option(tmp_path):
    with pytest.raises(ValueError, match="unknown toy format"):
        make_toy_dataset("coco", str(tmp_path / "x"), 0)
    with pytest.raises(TypeError, match="num_images"):
        make_toy_dataset("prw", str(tmp_path / "x"), 0, num_images=3)
    assert os.listdir(tmp_path) == []


def test_cli(tmp_path, capsys):
    main = load_tool("make_toy_dataset").main
    out = str(tmp_path / "cli")
    args = ["--format", "prw", "--out", out, "--seed", "2"]
    for key, value in TINY_PRW.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    summary = main(args)
    assert json.loads(capsys.readouterr().out) == summary
    assert summary["test_ids"] == TINY_PRW["num_test_ids"]
    with pytest.raises(SystemExit):
        main(args)  # non-empty output without --overwrite


def test_prw_sizes_in_summary(toy_prw):
    _, summary = toy_prw
    assert summary["train_frames"] == TOY_PRW_SIZES["num_train_frames"]
    assert summary["queries"] >= TOY_PRW_SIZES["num_test_ids"]


def test_cuhk_scenes_persons_scales_occlusion(toy_cuhk):
    """Several persons per scene at several scales, labelled and unlabelled; some query persons
    partly hidden (toy_info.json lists 1 - visible fraction of the Occlusion.mat queries)."""
    root, summary = toy_cuhk
    train = load_cuhk_sysu_train(root).dicts
    test = load_cuhk_sysu_test(root).dicts
    scenes = train + [d for d in test if "query_index" not in d]
    per_image = np.array([len(d["annotations"]) for d in scenes])
    assert per_image.min() >= 1 and per_image.max() >= 3
    assert np.mean(per_image >= 2) >= 0.5
    heights = np.array([a["bbox"][3] - a["bbox"][1] for d in scenes for a in d["annotations"]])
    rel = heights / np.repeat([d["height"] for d in scenes], per_image)
    assert rel.min() < 0.45 and rel.max() > 0.6  # drawn from 30%..75% of the image height
    for split in (train, test):
        pids = [a["person_id"] for d in split if "annotations" in d for a in d["annotations"]]
        assert any(p >= 0 for p in pids) and any(p == -1 for p in pids)
    occ = scipy.io.loadmat(os.path.join(root, "annotation", "test", "subset", "Occlusion.mat"))
    assert occ["Occlusion1"].size == len(summary["occluded_fractions"])
    assert max(summary["occluded_fractions"]) > 0.1


def test_prw_cameras_lighting_and_backgrounds(toy_prw):
    """Each camera has its own background and lighting: the mean colour of the top image rows
    (wall, rarely covered by a person's head) varies more across cameras than within one."""
    root, _ = toy_prw
    by_camera: dict[str, list[np.ndarray]] = {}
    for path in sorted(glob.glob(os.path.join(root, "frames", "*.jpg"))):
        with Image.open(path) as im:
            top = np.asarray(im.convert("RGB"), dtype=np.float64)[:20]
        by_camera.setdefault(os.path.basename(path)[:2], []).append(top.mean(axis=(0, 1)))
    assert len(by_camera) == TOY_PRW_SIZES["num_cameras"]
    means = {c: np.mean(v, axis=0) for c, v in by_camera.items()}
    within = np.mean([np.linalg.norm(v - means[c], axis=1).mean() for c, v in by_camera.items()])
    cams = sorted(means)
    across = np.mean(
        [np.linalg.norm(means[a] - means[b]) for i, a in enumerate(cams) for b in cams[i + 1 :]]
    )
    assert across > 2 * within


def test_compose_scene_occlusion_and_brightness():
    """A person standing in front hides part of the one behind; brightness scales the image."""
    ids = make_identities(2, seed=0)
    back = ScenePerson(ids[0], (20, 10, 30, 80))  # bottom at 90
    front = ScenePerson(ids[1], (35, 20, 30, 80))  # bottom at 100: drawn later, in front
    background = np.full((120, 100, 3), 100.0)
    for seed in range(20):  # a seed without a random scene occluder
        image, vis = compose_scene(background, [back, front], np.random.default_rng(seed))
        if vis[1] == 1.0:
            break
    assert vis[1] == 1.0 and 0.2 < vis[0] < 0.95
    dim, _ = compose_scene(background, [back, front], np.random.default_rng(seed), brightness=0.5)
    np.testing.assert_allclose(dim.astype(float), np.rint(image / 2.0), atol=1.0)
