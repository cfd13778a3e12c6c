"""Constants shared by the tools tests (a uniquely named module: every test folder has its own
conftest.py, so ``from conftest import ...`` would be ambiguous in a whole-suite run)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The smallest toy CUHK-SYSU with a gallery-50 protocol (needs >= 51 test images).
TINY_CUHK_SIZES = {
    "num_train_ids": 4,
    "num_test_ids": 3,
    "num_train_images": 6,
    "num_test_images": 52,
    "num_unlabelled_ids": 3,
}
