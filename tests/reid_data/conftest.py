"""Fixtures of the re-id data tests: tiny image files in each dataset's own layout."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

import person_search  # noqa: F401  (registers datasets, applies compat)


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 4, 3), 127, dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


_JPEG = _jpeg_bytes()


def touch_images(folder: str, names: list[str]) -> list[str]:
    """Write a tiny JPEG (content irrelevant, extension as named) under ``folder`` per name."""
    paths = []
    for name in names:
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(_JPEG)
        paths.append(path)
    return paths


@pytest.fixture
def make_images():
    return touch_images


@pytest.fixture
def market_tree(tmp_path):
    """A Market-1501-layout folder with junk, distractors and 3 train identities."""
    root = tmp_path / "Market-1501-v15.09.15"
    touch_images(
        str(root / "bounding_box_train"),
        [
            "0007_c1s1_000151_01.jpg",
            "0002_c1s1_000451_03.jpg",
            "0002_c2s1_000301_01.jpg",
            "0010_c6s4_002202_02.jpg",
            "-1_c1s1_000001_00.jpg",
        ],
    )
    touch_images(str(root / "query"), ["0003_c1s1_001051_00.jpg", "0005_c2s1_000976_00.jpg"])
    touch_images(
        str(root / "bounding_box_test"),
        [
            "0003_c2s1_001151_01.jpg",
            "0003_c1s1_001101_02.jpg",
            "0005_c3s1_001001_01.jpg",
            "0000_c1s1_000001_00.jpg",
            "0000_c4s2_000201_05.jpg",
            "-1_c1s1_000401_03.jpg",
            "-1_c5s1_000401_03.jpg",
        ],
    )
    return tmp_path
