"""Registration of the builtin person-search datasets (CUHK-SYSU, PRW and their toy versions).

Importing this module registers, in Detectron2's ``DatasetCatalog`` / ``MetadataCatalog``:

======================  =================================================  ============
name                    root (under ``$DETECTRON2_DATASETS``, default      strict sizes
                        ``datasets``)
======================  =================================================  ============
``cuhk_sysu_train``     ``cuhk_sysu``                                      yes
``cuhk_sysu_test``      ``cuhk_sysu``                                      yes
``prw_train``           ``prw``                                            yes
``prw_test``            ``prw``                                            yes
``toy_cuhk_sysu_train`` ``toy_cuhk_sysu`` (``tools/make_toy_dataset.py``)  no
``toy_cuhk_sysu_test``  ``toy_cuhk_sysu``                                  no
``toy_prw_train``       ``toy_prw``                                        no
``toy_prw_test``        ``toy_prw``                                        no
======================  =================================================  ============

The root is resolved when a dataset is loaded, so ``DETECTRON2_DATASETS`` may be set after
import. Metadata set at registration: ``thing_classes=["person"]``,
``evaluator_type="person_search"``, ``dataset_format`` (``"cuhk_sysu"`` / ``"prw"``), and for the
strict real train splits ``num_person_ids`` (the published count, so that building an OIM model
for ``--eval-only`` does not need the training files; a load asserts it). Nothing is set when a
dataset is loaded: ``num_person_ids`` (train), ``search_protocol`` (test) and ``load_summary``
come from the cached functions of the name in :mod:`.facts` (``get_num_person_ids``,
``get_search_protocol``, ``get_load_summary``), which the metadata also answers.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from detectron2.data import MetadataCatalog

from .cuhk_sysu import CUHK_SYSU_SIZES, load_cuhk_sysu_test, load_cuhk_sysu_train
from .facts import LoadedSplit, register_split
from .prw import PRW_SIZES, load_prw_test, load_prw_train

__all__ = ["datasets_root", "register_person_search_dataset"]

# Labelled training identities of the real datasets (what a strict load asserts).
_PUBLISHED_TRAIN_IDS = {"cuhk_sysu": CUHK_SYSU_SIZES["train_ids"], "prw": PRW_SIZES["train_ids"]}
# Format name -> (train loader, test loader).
_LOADERS: dict[str, tuple[Callable, Callable]] = {
    "cuhk_sysu": (load_cuhk_sysu_train, load_cuhk_sysu_test),
    "prw": (load_prw_train, load_prw_test),
}
# (registered prefix, dataset format, root directory name, strict_sizes)
_BUILTIN = (
    ("cuhk_sysu", "cuhk_sysu", "cuhk_sysu", True),
    ("prw", "prw", "prw", True),
    ("toy_cuhk_sysu", "cuhk_sysu", "toy_cuhk_sysu", False),
    ("toy_prw", "prw", "toy_prw", False),
)


def datasets_root() -> str:
    """``$DETECTRON2_DATASETS``, or ``datasets`` (Detectron2's convention)."""
    return os.environ.get("DETECTRON2_DATASETS", "datasets")


def register_person_search_dataset(
    name: str, dataset_format: str, split: str, root: str | Callable[[], str], *, strict_sizes: bool
) -> None:
    """Register one split of a CUHK-SYSU- or PRW-format dataset under ``name``.

    Args:
        dataset_format: ``"cuhk_sysu"`` or ``"prw"`` (the file layout).
        split: ``"train"`` or ``"test"``.
        root: dataset directory, or a zero-argument callable returning it at load time.
        strict_sizes: assert the real dataset's sizes (False for toy / custom data).
    """
    if dataset_format not in _LOADERS:
        raise ValueError(
            f"unknown person-search format {dataset_format!r} (known: {list(_LOADERS)})"
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    train_loader, test_loader = _LOADERS[dataset_format]

    def resolve_root() -> str:
        return root() if callable(root) else root

    def load() -> LoadedSplit:
        if split == "train":
            dicts, num_ids, summary = train_loader(resolve_root(), strict_sizes=strict_sizes)
            return LoadedSplit(dicts, summary, num_person_ids=num_ids)
        dicts, protocol, summary = test_loader(
            resolve_root(), strict_sizes=strict_sizes, protocol_name=name
        )
        return LoadedSplit(dicts, summary, search_protocol=protocol)

    facts = ("num_person_ids" if split == "train" else "search_protocol", "load_summary")
    register_split(name, load, key=lambda: os.path.abspath(resolve_root()), facts=facts)
    MetadataCatalog.get(name).set(
        thing_classes=["person"],
        evaluator_type="person_search",
        dataset_format=dataset_format,
    )
    if split == "train" and strict_sizes:
        MetadataCatalog.get(name).set(num_person_ids=_PUBLISHED_TRAIN_IDS[dataset_format])


def _register_builtin() -> None:
    for prefix, dataset_format, dir_name, strict in _BUILTIN:
        for split in ("train", "test"):

            def root(dir_name: str = dir_name) -> str:
                return os.path.join(datasets_root(), dir_name)

            register_person_search_dataset(
                f"{prefix}_{split}", dataset_format, split, root, strict_sizes=strict
            )


_register_builtin()
