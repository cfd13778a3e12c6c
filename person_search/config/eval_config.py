"""Config keys for the eval part of the library (see add_eval_config)."""

from detectron2.config import CfgNode as CN


def add_eval_config(cfg: CN) -> None:
    """Add the eval keys to ``cfg`` in place.

    One comment per key: what it is, its unit, the paper\'s value.
    """
