"""ReIDDatasetMapper: the parsing mask follows the image; erasing; errors; part masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from person_search.config import get_cfg
from person_search.data.reid_mapper import (
    MISSING_PARSING,
    RandomErasing,
    ReIDDatasetMapper,
    check_parsing_files,
    check_parsing_groups,
    group_parsing,
)

H, W = 24, 12


def _write_pair(tmp_path, mask: np.ndarray, name: str = "0001_c1s1_000001_00"):
    """Image whose every channel equals 10 * class (PNG: lossless), and its parsing mask."""
    image = np.repeat((mask * 10).astype(np.uint8)[..., None], 3, axis=2)
    img_path, mask_path = tmp_path / f"{name}.png", tmp_path / f"{name}_mask.png"
    Image.fromarray(image).save(img_path)
    Image.fromarray(mask.astype(np.uint8)).save(mask_path)
    return {
        "file_name": str(img_path),
        "image_id": f"{name}.png",
        "person_id": 3,
        "camera_id": 2,
        "split": "train",
        "parsing_file": str(mask_path),
    }


def _mask(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = rng.integers(1, 20, size=(H, W))
    mask[:, : W // 3] = 0
    return mask


@pytest.mark.parametrize("seed", range(6))
def test_mask_follows_image_through_flip_and_crop(tmp_path, seed):
    record = _write_pair(tmp_path, _mask())
    mapper = ReIDDatasetMapper(
        is_train=True, size=(H, W), image_format="RGB", flip_prob=0.5, padding=4, load_parsing=True
    )
    np.random.seed(seed)
    out = mapper(record)
    image, parsing = out["image"], out["parsing"]
    assert image.shape == (3, H, W) and image.dtype == torch.uint8
    assert parsing.shape == (H, W) and parsing.dtype == torch.int64
    # same geometric transform: the image still encodes its mask pixel by pixel (padding: 0 / 0)
    assert torch.equal(image[0].long(), parsing * 10)
    assert {k: out[k] for k in ("person_id", "camera_id", "image_id", "split")} == {
        "person_id": 3,
        "camera_id": 2,
        "image_id": record["image_id"],
        "split": "train",
    }


def _coordinate_pair(tmp_path, axis: str, src_h: int = 80, src_w: int = 40) -> dict:
    """Image whose red/green channels are ramps 6 * x / 3 * y, and a mask holding x (or y)."""
    yy, xx = np.mgrid[0:src_h, 0:src_w]
    image = np.stack([6 * xx, 3 * yy, np.zeros_like(xx)], axis=2).astype(np.uint8)
    mask = (xx if axis == "x" else yy).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "ramp.png")
    Image.fromarray(mask).save(tmp_path / f"ramp_{axis}.png")
    return {
        "file_name": str(tmp_path / "ramp.png"),
        "parsing_file": str(tmp_path / f"ramp_{axis}.png"),
        "image_id": "ramp.png",
        "person_id": 1,
        "camera_id": 1,
        "split": "train",
    }


def _coordinate_error(out: dict, axis: str) -> torch.Tensor:
    """Per pixel |source coordinate read from the image - the one read from the mask|."""
    image = out["image"].long()
    coord = image[0] / 6.0 if axis == "x" else image[1] / 3.0
    padding = (image == 0).all(0)  # zero padding: image 0 and mask 0 (as is source pixel 0, 0)
    return torch.where(padding, out["parsing"].float(), (coord - out["parsing"]).abs())


@pytest.mark.parametrize("axis", ["x", "y"])
@pytest.mark.parametrize("seed", range(4))
def test_mask_aligned_under_resize_flip_pad_crop(tmp_path, axis, seed):
    # The image is resized bilinearly (80x40 -> 48x24), the mask with nearest neighbour; both
    # must then go through the same flip, padding and crop. The image's ramps say which source
    # pixel each output pixel shows; the mask must name the same one (within resampling error).
    # A flip of one but not the other, or crops 1 output pixel (1.7 source pixels) apart, fail.
    record = _coordinate_pair(tmp_path, axis)
    erasing = RandomErasing(prob=0.0, area_range=(0.1, 0.2), min_aspect=0.3, fill="random")
    mapper = ReIDDatasetMapper(
        is_train=True,
        size=(48, 24),
        image_format="RGB",
        flip_prob=0.5,
        padding=4,
        erasing=erasing,
        load_parsing=True,
    )
    np.random.seed(seed)
    out = mapper(record)
    assert out["image"].shape == (3, 48, 24) and out["parsing"].shape == (48, 24)
    error = _coordinate_error(out, axis)
    assert error.max() <= 1.0, error.max()
    # the check is discriminative: the same output with the mask flipped or shifted by one
    # pixel along the mask's axis fails it
    parsing = out["parsing"]
    moved = [parsing.flip(1), parsing.roll(1, 1)] if axis == "x" else [parsing.roll(1, 0)]
    for wrong in moved:
        assert _coordinate_error(dict(out, parsing=wrong), axis).max() > 1.0


def test_flip_and_crop_actually_move_pixels(tmp_path):
    mask = _mask()
    record = _write_pair(tmp_path, mask)
    flip = ReIDDatasetMapper(
        is_train=True, size=(H, W), image_format="RGB", flip_prob=1.0, load_parsing=True
    )
    assert np.array_equal(flip(record)["parsing"].numpy(), mask[:, ::-1])
    crop = ReIDDatasetMapper(
        is_train=True, size=(H, W), image_format="RGB", flip_prob=0.0, padding=4, load_parsing=True
    )
    outs = []
    for seed in range(8):
        np.random.seed(seed)
        outs.append(crop(record)["parsing"].numpy())
    assert any(not np.array_equal(o, mask) for o in outs)
    # each crop is a shift of the zero-padded mask
    padded = np.pad(mask, 4)
    for o in outs:
        assert any(
            np.array_equal(o, padded[y : y + H, x : x + W]) for y in range(9) for x in range(9)
        )


def test_resize_is_nearest_for_the_mask(tmp_path):
    record = _write_pair(tmp_path, _mask())
    mapper = ReIDDatasetMapper(is_train=False, size=(2 * H + 5, 2 * W + 3), load_parsing=True)
    out = mapper(record)
    assert out["image"].shape == (3, 2 * H + 5, 2 * W + 3)
    assert set(out["parsing"].unique().tolist()) <= set(np.unique(_mask()).tolist())


def test_erasing_changes_image_not_mask(tmp_path):
    record = _write_pair(tmp_path, _mask())
    kwargs = {"is_train": True, "size": (H, W), "image_format": "RGB", "padding": 2}
    plain = ReIDDatasetMapper(load_parsing=True, **kwargs)
    erasing = RandomErasing(prob=1.0, area_range=(0.2, 0.4), min_aspect=0.3, fill="random")
    erased = ReIDDatasetMapper(load_parsing=True, erasing=erasing, **kwargs)
    np.random.seed(1)
    a = plain(record)
    np.random.seed(1)
    b = erased(record)
    assert torch.equal(a["parsing"], b["parsing"])
    changed = (a["image"] != b["image"]).any(0).float().mean().item()
    assert 0.05 < changed <= 0.4


def test_erasing_fill_modes():
    image = np.zeros((20, 10, 3), dtype=np.uint8)
    image[:10] = 200
    np.random.seed(0)
    out = RandomErasing(prob=1.0, area_range=(0.3, 0.3), min_aspect=1.0, fill="image_mean")(image)
    assert (image == 0).any() and set(np.unique(out)) <= {0, 100, 200}
    assert (out == 100).sum() > 0 and image.max() == 200  # the input is not modified
    pm = RandomErasing(
        prob=1.0, area_range=(0.3, 0.3), min_aspect=1.0, fill="pixel_mean", pixel_mean=(7, 8, 9)
    )
    out = pm(np.zeros((20, 10, 3), dtype=np.uint8))
    side = round(np.sqrt(0.3 * 200))  # aspect 1: a square of the rounded side
    assert ((out == [7, 8, 9]).all(-1)).sum() == side * side
    never = RandomErasing(prob=0.0, area_range=(0.3, 0.3), min_aspect=1.0, fill="random")
    assert never(image) is image
    with pytest.raises(ValueError, match="FILL"):
        RandomErasing(prob=1.0, area_range=(0.1, 0.2), min_aspect=0.3, fill="zeros")


def test_group_parsing():
    parsing = np.array([[0, 13, 2], [5, 9, 18]])
    groups = ((1, 2, 4, 13), (5,), (9,), (18, 19))
    parts = group_parsing(parsing, groups)
    assert parts.shape == (5, 2, 3) and parts.dtype == np.float32
    np.testing.assert_array_equal(parts[0], [[0, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(parts[1], [[0, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(parts[4], [[0, 0, 0], [0, 0, 1]])


# A 4-part grouping of LIP classes for the config tests (the library's default is no groups).
_GROUPS = ((1, 2, 4, 13), (3, 5, 6, 7, 10, 11, 14, 15), (8, 9, 12, 16, 17), (18, 19))


def test_from_config_part_masks_and_errors(tmp_path):
    cfg = get_cfg()
    cfg.INPUT.REID.SIZE_TRAIN = (H, W)
    cfg.INPUT.REID.LOAD_PARSING = True
    record = _write_pair(tmp_path, _mask())
    # the library's default: no part groups, so "parsing" only
    out = ReIDDatasetMapper(cfg, is_train=True)(record)
    assert out["parsing"].shape == (H, W) and "part_masks" not in out
    cfg.INPUT.REID.PARSING_PART_NAMES = ("head", "upper", "lower", "shoes")
    cfg.INPUT.REID.PARSING_GROUPS = _GROUPS
    out = ReIDDatasetMapper(cfg, is_train=True)(record)
    assert out["image"].shape == (3, H, W)
    assert out["part_masks"].shape == (1 + len(cfg.INPUT.REID.PARSING_GROUPS), H, W)
    np.testing.assert_array_equal(
        out["part_masks"].numpy(),
        group_parsing(out["parsing"].numpy(), cfg.INPUT.REID.PARSING_GROUPS),
    )
    test_out = ReIDDatasetMapper(cfg, is_train=False)(record)
    assert test_out["image"].shape == (3, *cfg.INPUT.REID.SIZE_TEST)
    assert test_out["parsing"].shape == tuple(cfg.INPUT.REID.SIZE_TEST)

    no_mask = {k: v for k, v in record.items() if k != "parsing_file"}
    with pytest.raises(FileNotFoundError, match=f"image {record['file_name']} has no parsing"):
        ReIDDatasetMapper(cfg, is_train=False)(no_mask)
    missing = dict(record, parsing_file=str(tmp_path / "nope.png"))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        ReIDDatasetMapper(cfg, is_train=False)(missing)
    cfg.INPUT.REID.LOAD_PARSING = False
    plain = ReIDDatasetMapper(cfg, is_train=False)(no_mask)
    assert "parsing" not in plain and "part_masks" not in plain
    cfg.INPUT.REID.PARSING_PART_NAMES = ("head",)
    with pytest.raises(ValueError, match="PARSING_GROUPS"):
        ReIDDatasetMapper(cfg, is_train=True)


def test_parsing_map_of_another_size_is_resized_nearest(tmp_path):
    # A parser may write maps at its own resolution: the map is resized to its image (nearest
    # neighbour, so only its classes appear) before the shared transforms.
    small = np.array([[0, 13], [5, 9], [9, 18]], dtype=np.uint8)  # 3 x 2 blocks
    record = _write_pair(tmp_path, np.kron(small, np.ones((8, 6), dtype=np.uint8)))
    Image.fromarray(small).save(tmp_path / "small.png")
    mapper = ReIDDatasetMapper(is_train=False, size=(H, W), load_parsing=True)
    out = mapper(dict(record, parsing_file=str(tmp_path / "small.png")))
    np.testing.assert_array_equal(out["parsing"].numpy(), np.kron(small, np.ones((8, 6))))
    # and the image itself still encodes the same classes pixel by pixel
    assert torch.equal(out["image"][0].long(), out["parsing"] * 10)


def test_images_without_maps_allowed_by_config(tmp_path):
    cfg = get_cfg()
    cfg.INPUT.REID.SIZE_TRAIN = (H, W)
    cfg.INPUT.REID.LOAD_PARSING = True
    cfg.INPUT.REID.PARSING_PART_NAMES = ("head", "upper", "lower", "shoes")
    cfg.INPUT.REID.PARSING_GROUPS = _GROUPS
    record = _write_pair(tmp_path, _mask())
    no_map = dict(record, parsing_file=str(tmp_path / "absent.png"))
    with pytest.raises(FileNotFoundError, match="absent.png"):
        check_parsing_files([record, no_map], allow_missing=False)
    assert check_parsing_files([record, record], allow_missing=False) == 0
    cfg.INPUT.REID.ALLOW_MISSING_PARSING = True
    assert check_parsing_files([record, no_map], allow_missing=True) == 1
    mapper = ReIDDatasetMapper(cfg, is_train=True)
    out = mapper(no_map)
    assert out["parsing"].shape == (H, W) and out["part_masks"].shape == (5, H, W)
    assert (out["parsing"] == MISSING_PARSING).all() and (out["part_masks"] == -1).all()
    # an image with its map is mapped as before
    with_map = mapper(record)
    assert (with_map["parsing"] >= 0).all() and set(with_map["part_masks"].unique().tolist()) == {
        0.0,
        1.0,
    }


def test_test_mapping_can_skip_maps(tmp_path):
    cfg = get_cfg()
    cfg.INPUT.REID.LOAD_PARSING = True
    cfg.INPUT.REID.LOAD_PARSING_AT_TEST = False
    cfg.INPUT.REID.SIZE_TEST = (H, W)
    record = _write_pair(tmp_path, _mask())
    no_map = {k: v for k, v in record.items() if k != "parsing_file"}
    out = ReIDDatasetMapper(cfg, is_train=False)(no_map)
    assert "parsing" not in out and out["image"].shape == (3, H, W)
    with pytest.raises(FileNotFoundError, match="no parsing map"):
        ReIDDatasetMapper(cfg, is_train=True)(no_map)


def test_parsing_groups_are_validated(tmp_path):
    assert check_parsing_groups([[1, 2], [5]]) == ((1, 2), (5,))
    with pytest.raises(ValueError, match="class 5 is in groups 0 and 1"):
        check_parsing_groups([[1, 5], [5]])
    with pytest.raises(ValueError, match="group 1 is empty"):
        check_parsing_groups([[1], []])
    with pytest.raises(ValueError, match="300"):
        check_parsing_groups([[300]])
    cfg = get_cfg()
    cfg.INPUT.REID.LOAD_PARSING = True
    cfg.INPUT.REID.PARSING_PART_NAMES = ("top", "bottom")
    cfg.INPUT.REID.PARSING_GROUPS = ((1, 2), (2, 3))
    with pytest.raises(ValueError, match="class 2"):
        ReIDDatasetMapper(cfg, is_train=True)
    # a custom grouping (e.g. another parser's label set) is used as given
    cfg.INPUT.REID.PARSING_GROUPS = ((1, 2, 13), (3,))
    cfg.INPUT.REID.SIZE_TEST = (H, W)
    mask = _mask()
    out = ReIDDatasetMapper(cfg, is_train=False)(_write_pair(tmp_path, mask))
    np.testing.assert_array_equal(out["part_masks"][1].numpy(), np.isin(mask, (1, 2, 13)))
    np.testing.assert_array_equal(out["part_masks"][2].numpy(), mask == 3)
    np.testing.assert_array_equal(out["part_masks"][0].numpy(), np.isin(mask, (1, 2, 3, 13)))


def test_parsing_mask_values_out_of_range(tmp_path):
    record = _write_pair(tmp_path, _mask())
    Image.fromarray(np.full((H, W), 1000, dtype=np.uint16)).save(tmp_path / "wide.png")
    mapper = ReIDDatasetMapper(is_train=False, size=(H, W), load_parsing=True)
    with pytest.raises(ValueError, match="wide.png.*outside"):
        mapper(dict(record, parsing_file=str(tmp_path / "wide.png")))
