"""Process-wide options of the dataset loaders, set from the config (``DATASETS.*``).

Datasets are loaded through Detectron2's ``DatasetCatalog.get(name)``, which takes no config,
so the options live here; :func:`apply_data_config` sets them from a config (the data loader
builders call it) and :func:`set_data_options` sets them directly.

Protocol cache directory: ``DATASETS.PROTOCOL_CACHE.DIR`` when set, else the environment
variable ``PERSON_SEARCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/person_search`` (by default
``~/.cache/person_search``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from detectron2.config import CfgNode

__all__ = [
    "CACHE_DIR_ENV",
    "DataOptions",
    "apply_data_config",
    "cache_directory",
    "data_options",
    "set_data_options",
]

# Environment variable naming the cache directory.
CACHE_DIR_ENV = "PERSON_SEARCH_CACHE_DIR"


@dataclass(frozen=True)
class DataOptions:
    """Options of the dataset loaders (see the config keys of the same names).

    Attributes:
        protocol_cache: keep parsed CUHK-SYSU protocol files in the cache directory.
        cache_dir: the cache directory; "" = the environment variable or the user cache dir.
        cache_min_bytes: protocol files smaller than this are parsed, not cached (parsing them
            costs about as much as reading a cache entry; keeps test trees out of the cache).
        drop_negative_boxes: drop (and count) annotation boxes with a negative width or height
            instead of raising an error.
    """

    protocol_cache: bool = True
    cache_dir: str = ""
    cache_min_bytes: int = 256 << 10
    drop_negative_boxes: bool = False


_OPTIONS = DataOptions()


def data_options() -> DataOptions:
    """The current options."""
    return _OPTIONS


def set_data_options(**changes) -> DataOptions:
    """Change some options (keyword = attribute of :class:`DataOptions`); returns the previous
    options (pass ``**dataclasses.asdict(previous)`` to restore them)."""
    global _OPTIONS
    previous = _OPTIONS
    _OPTIONS = dataclasses.replace(_OPTIONS, **changes)
    return previous


def apply_data_config(cfg: CfgNode) -> DataOptions:
    """Set the options from ``cfg.DATASETS``; returns the previous options."""
    return set_data_options(
        protocol_cache=bool(cfg.DATASETS.PROTOCOL_CACHE.ENABLED),
        cache_dir=str(cfg.DATASETS.PROTOCOL_CACHE.DIR),
        drop_negative_boxes=bool(cfg.DATASETS.DROP_NEGATIVE_BOXES),
    )


def cache_directory(options: DataOptions | None = None) -> str:
    """The cache directory the options name (see the module docstring)."""
    options = options or _OPTIONS
    if options.cache_dir:
        return os.path.expanduser(options.cache_dir)
    if os.environ.get(CACHE_DIR_ENV):
        return os.path.expanduser(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "person_search")
