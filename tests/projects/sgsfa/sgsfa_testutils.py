"""Helpers of the SGSFA project tests: its configs, built small for CPU (a uniquely named
module: every test folder has its own conftest.py, so ``from conftest import ...`` would be
ambiguous in a whole-suite run).

The project package ``sgsfa`` lives in ``projects/SGSFA/sgsfa`` and is installed with the
library by ``setup.py`` (``make install``).
"""

import os

from person_search.engine import load_config
from sgsfa import add_sgsfa_config

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CONFIG_DIR = os.path.join(REPO, "projects", "SGSFA", "configs")
TOY_CONFIG = os.path.join(CONFIG_DIR, "toy_market1501.yaml")
# Toy parsing maps: LIP face 13, upper clothes 5, pants 9, shoe 18 (person_search.data.toy).
HEAD, UPPER, LOWER, SHOES = 13, 5, 9, 18


def sgsfa_cfg(*opts: str, config: str = TOY_CONFIG):
    """An SGSFA config with ``add_sgsfa_config`` applied, then ``opts`` (KEY VALUE ...)."""
    return load_config(config, list(opts), add_sgsfa_config)


def tiny_sgsfa_cfg(*opts: str, num_classes: int = 4):
    """The toy config at 1/8 width and 64x32 input (res5 4x2), for unit tests."""
    return sgsfa_cfg(
        "MODEL.REID.RESNET.STEM_WIDTH",
        "8",
        "MODEL.SGSFA.EMBED_DIM",
        "16",
        "MODEL.REID.HEAD.NUM_CLASSES",
        str(num_classes),
        "INPUT.REID.SIZE_TRAIN",
        "(64, 32)",
        "INPUT.REID.SIZE_TEST",
        "(64, 32)",
        *opts,
    )
