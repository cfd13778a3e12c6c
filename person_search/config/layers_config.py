"""Config keys for the layers part of the library (see add_layers_config)."""

from detectron2.config import CfgNode as CN


def add_layers_config(cfg: CN) -> None:
    """Add the layers keys to ``cfg`` in place.

    One comment per key: what it is, its unit, the paper\'s value.
    """
