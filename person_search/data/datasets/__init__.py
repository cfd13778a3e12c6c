"""Dataset loaders; importing this package registers the builtin datasets.

Dataset facts are cached functions of the dataset name (:mod:`.facts`): ``get_search_protocol``,
``get_num_person_ids``, ``get_load_summary``. Loader options (protocol cache, bad boxes) are
process-wide (:mod:`.options`).
"""

# builtin registers cuhk_sysu_*, prw_*, toy_cuhk_sysu_*, toy_prw_*; reid the re-id datasets.
from . import builtin, reid
from .builtin import datasets_root, register_person_search_dataset
from .cuhk_sysu import load_cuhk_sysu_test, load_cuhk_sysu_train
from .facts import (
    clear_dataset_cache,
    get_load_summary,
    get_num_person_ids,
    get_search_protocol,
)
from .load_checks import LoadSummary
from .options import DataOptions, apply_data_config, data_options, set_data_options
from .prw import load_prw_test, load_prw_train

__all__ = [
    "DataOptions",
    "LoadSummary",
    "apply_data_config",
    "builtin",
    "clear_dataset_cache",
    "data_options",
    "datasets_root",
    "get_load_summary",
    "get_num_person_ids",
    "get_search_protocol",
    "load_cuhk_sysu_test",
    "load_cuhk_sysu_train",
    "load_prw_test",
    "load_prw_train",
    "register_person_search_dataset",
    "reid",
    "set_data_options",
]
