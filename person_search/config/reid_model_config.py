"""Config keys for the reid model part of the library (see add_reid_model_config)."""

from detectron2.config import CfgNode as CN


def add_reid_model_config(cfg: CN) -> None:
    """Add the reid model keys to ``cfg`` in place.

    One comment per key: what it is, its unit, the paper\'s value.
    """
