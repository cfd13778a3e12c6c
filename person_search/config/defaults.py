"""Library-wide config keys. Each part of the library adds its keys in its own module."""

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg

from .baselines_config import add_baselines_config
from .data_config import add_data_config
from .eval_config import add_eval_config
from .footage_config import add_footage_config
from .layers_config import add_layers_config
from .model_config import add_model_config
from .reid_data_config import add_reid_data_config
from .reid_model_config import add_reid_model_config


def add_person_search_config(cfg: CN) -> CN:
    """Add every key the person_search library reads to ``cfg`` (in place); returns ``cfg``.

    Calling it twice is harmless: keys already present keep their values.
    """
    if "TASK" in cfg:
        return cfg
    # Which task a config trains: "person_search" (scene images) or "reid" (person crops).
    cfg.TASK = "person_search"
    add_layers_config(cfg)
    add_data_config(cfg)
    add_eval_config(cfg)
    add_model_config(cfg)
    add_baselines_config(cfg)
    add_reid_data_config(cfg)
    add_reid_model_config(cfg)
    add_footage_config(cfg)
    return cfg


def get_cfg() -> CN:
    """Detectron2's default config with all person_search keys added."""
    return add_person_search_config(_d2_get_cfg())
