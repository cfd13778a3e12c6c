"""Configuration: Detectron2's ``CfgNode`` plus the keys of person_search.

``get_cfg()`` returns Detectron2's defaults extended with every key the library reads, added by
one commented ``add_*_config(cfg)`` per owner (person-search models, re-id models, data, engine,
evaluation); each project adds its own keys with its ``add_<project>_config(cfg)``.
"""

from .data_config import add_data_config
from .defaults import add_person_search_config, get_cfg
from .engine_config import add_engine_config
from .eval_config import add_eval_config
from .model_config import add_person_search_model_config
from .reid_model_config import add_reid_model_config

__all__ = [
    "add_data_config",
    "add_engine_config",
    "add_eval_config",
    "add_person_search_config",
    "add_person_search_model_config",
    "add_reid_model_config",
    "get_cfg",
]
