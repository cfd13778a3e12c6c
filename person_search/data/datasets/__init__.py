"""Dataset loaders; importing this package registers the builtin datasets."""

# builtin registers cuhk_sysu_*, prw_*, toy_cuhk_sysu_*, toy_prw_*; reid the re-id datasets.
from . import builtin, reid
from .builtin import datasets_root, register_person_search_dataset
from .cuhk_sysu import load_cuhk_sysu_test, load_cuhk_sysu_train
from .prw import load_prw_test, load_prw_train

__all__ = [
    "builtin",
    "reid",
    "datasets_root",
    "load_cuhk_sysu_test",
    "load_cuhk_sysu_train",
    "load_prw_test",
    "load_prw_train",
    "register_person_search_dataset",
]
