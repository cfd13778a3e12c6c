"""Config keys for the data part of the library (see add_data_config)."""

from detectron2.config import CfgNode as CN


def add_data_config(cfg: CN) -> None:
    """Add the data keys to ``cfg`` in place.

    One comment per key: what it is, its unit, the paper\'s value.
    """
