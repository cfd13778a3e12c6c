"""Config keys for the model part of the library (see add_model_config)."""

from detectron2.config import CfgNode as CN


def add_model_config(cfg: CN) -> None:
    """Add the model keys to ``cfg`` in place.

    One comment per key: what it is, its unit, the paper\'s value.
    """
