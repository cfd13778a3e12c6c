"""Configuration: Detectron2's ``CfgNode`` plus the keys of person_search.

``get_cfg()`` returns Detectron2's defaults extended with every key the library reads;
each project adds its own keys with its ``add_<project>_config(cfg)``.
"""

from .defaults import add_person_search_config, get_cfg

__all__ = ["add_person_search_config", "get_cfg"]
