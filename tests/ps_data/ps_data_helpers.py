"""Shared sizes and helpers of the person-search data tests."""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import numpy as np
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Small enough to generate in about a second each; the CUHK-SYSU test split needs >= 51 images
# for the smallest official gallery size (50).
TOY_CUHK_SIZES = {
    "num_train_ids": 5,
    "num_test_ids": 4,
    "num_train_images": 12,
    "num_test_images": 52,
    "num_unlabelled_ids": 6,
}
TOY_PRW_SIZES = {
    "num_train_ids": 5,
    "num_test_ids": 4,
    "num_train_frames": 14,
    "num_test_frames": 14,
    "num_cameras": 3,
    "num_unlabelled_ids": 6,
}


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` (tools/ is not a package)."""
    path = os.path.join(REPO_ROOT, "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"tools_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_jpeg(path: str, height: int, width: int, seed: int = 0) -> None:
    """A random RGB JPEG of the given size."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, format="JPEG")
