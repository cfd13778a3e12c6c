"""Mask pictures: signed overlay colours, the grid layout, one PNG per image."""

import os

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from pan_testutils import tiny_pan_cfg
from PIL import Image

from pan.visualization import (
    GAP,
    MAX_ALPHA,
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    draw_masks,
    overlay_mask,
    write_mask_pictures,
)


def test_overlay_is_red_for_positive_blue_for_negative_and_scaled():
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    mask = np.array([[2.0, -2.0], [1.0, 0.0]])
    out = overlay_mask(image, mask).astype(np.float64)
    full = 100 * (1 - MAX_ALPHA) + np.array(POSITIVE_COLOR) * MAX_ALPHA
    np.testing.assert_allclose(out[0, 0], np.rint(full))
    np.testing.assert_allclose(
        out[0, 1], np.rint(100 * (1 - MAX_ALPHA) + np.array(NEGATIVE_COLOR) * MAX_ALPHA)
    )
    half = MAX_ALPHA / 2
    np.testing.assert_allclose(
        out[1, 0], np.rint(100 * (1 - half) + np.array(POSITIVE_COLOR) * half)
    )
    assert out[1, 1].tolist() == [100, 100, 100]  # zero: untouched
    assert np.array_equal(overlay_mask(image, np.zeros((2, 2))), image)
    with pytest.raises(ValueError, match="differ in size"):
        overlay_mask(image, np.zeros((3, 2)))


def test_grid_holds_the_image_the_fusion_and_every_mask():
    image = np.zeros((64, 32, 3), dtype=np.uint8)
    masks = torch.zeros(5, 4, 2)
    masks[2, :2] = 1.0  # mask 3: top half positive
    grid = draw_masks(image, masks, panel_height=64, columns=4)
    # 2 + 5 panels of 64x32 in rows of 4: 2 rows
    assert grid.shape == (2 * 64 + GAP, 4 * 32 + 3 * GAP, 3)
    # mask 3 is the 5th panel: row 1, column 0; its top half reddish, bottom half untouched
    panel = grid[64 + GAP :, :32].astype(int)
    assert panel[20, 16, 0] > 100 and panel[20, 16, 2] < 50
    assert panel[60, 16].tolist() == [0, 0, 0]


def test_one_png_per_image(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_pan_cfg(num_masks=3)
    model = build_model(cfg)
    rng = np.random.default_rng(0)
    dicts = []
    for i in range(2):
        path = tmp_path / f"000{i}_c1s1_000001_00.jpg"
        Image.fromarray(rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(path)
        dicts.append({"file_name": str(path)})

    def mapper(d):
        return {"image": torch.from_numpy(np.array(Image.open(d["file_name"]))).permute(2, 0, 1)}

    paths = write_mask_pictures(model, mapper, dicts, str(tmp_path / "vis"), panel_height=64)
    assert [os.path.basename(p) for p in paths] == [
        "0000_c1s1_000001_00.png",
        "0001_c1s1_000001_00.png",
    ]
    picture = np.asarray(Image.open(paths[0]))
    assert picture.shape == (64, 5 * 32 + 4 * GAP, 3)  # image, fusion, 3 masks in one row
    assert not model.training
    model.head = torch.nn.Identity()
    with pytest.raises(ValueError, match="PANHead"):
        write_mask_pictures(model, mapper, dicts, str(tmp_path / "vis2"))
