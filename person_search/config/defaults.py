"""``get_cfg()``: Detectron2's defaults plus the keys of person_search, grouped by owner.

Each group is one commented ``add_*_config(cfg)`` in its own module (as Detectron2's
``defaults.py``): the person-search models (:mod:`.model_config`), the re-id models
(:mod:`.reid_model_config`), data (:mod:`.data_config`), the engine (:mod:`.engine_config`) and
the evaluators (:mod:`.eval_config`). A project adds its own keys with its
``add_<project>_config(cfg)``.
"""

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg

from .data_config import add_data_config
from .engine_config import add_engine_config
from .eval_config import add_eval_config
from .footage_config import add_footage_config
from .model_config import add_person_search_model_config
from .reid_model_config import add_reid_model_config

__all__ = ["add_person_search_config", "get_cfg"]


def add_person_search_config(cfg: CN) -> CN:
    """Add every key the person_search library reads to ``cfg`` (in place); returns ``cfg``.

    Calling it twice is harmless: a config that has the keys (``TASK``) is returned unchanged.
    """
    if "TASK" in cfg:
        return cfg
    add_engine_config(cfg)
    add_person_search_model_config(cfg)
    add_reid_model_config(cfg)
    add_data_config(cfg)
    add_eval_config(cfg)
    add_footage_config(cfg)
    return cfg


def get_cfg() -> CN:
    """Detectron2's default config with all person_search keys added."""
    return add_person_search_config(_d2_get_cfg())
