"""Facts about registered datasets as cached functions of the dataset name.

:func:`get_search_protocol`, :func:`get_num_person_ids`, :func:`get_load_summary` and the
dicts ``DatasetCatalog.get(name)`` returns all come from one load of the split per process
(:func:`load_split`), kept until one of the files it read changes (size or mtime), the dataset
root changes (``DETECTRON2_DATASETS``) or an option it depends on changes. Nothing is written
into the metadata when a dataset is loaded: static facts are set at registration (e.g. the
published identity count of a real training set), and the metadata of a split registered here
answers ``search_protocol``, ``num_person_ids`` and ``load_summary`` by calling these functions
(:class:`DatasetMetadata`).

A split is registered with :func:`register_split` (the builtin person-search and re-id
datasets are). For other datasets the functions read static metadata (``search_protocol``,
``num_person_ids`` set at registration), and :func:`get_num_person_ids` counts the identities of
``DatasetCatalog.get(name)`` when the metadata has none.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

from ..search_protocol import SearchProtocol
from .load_checks import LoadSummary
from .matfile import track_reads
from .options import data_options

__all__ = [
    "DatasetMetadata",
    "LoadedSplit",
    "clear_dataset_cache",
    "get_load_summary",
    "get_num_person_ids",
    "get_search_protocol",
    "load_split",
    "register_split",
]

logger = logging.getLogger(__name__)

_FACTS = ("search_protocol", "num_person_ids", "load_summary")


@dataclass
class LoadedSplit:
    """One load of a registered split.

    Attributes:
        dicts: the Detectron2 dataset dicts.
        summary: what the load read, kept and dropped (None if the loader gives none).
        search_protocol: the protocol of a person-search test split, else None.
        num_person_ids: the labelled identities of a training split, else None.
    """

    dicts: list[dict]
    summary: LoadSummary | None = None
    search_protocol: SearchProtocol | None = None
    num_person_ids: int | None = None


@dataclass(frozen=True)
class _Registration:
    load: Callable[[], LoadedSplit]
    key: Callable[[], Hashable]  # what the result depends on besides the files read
    facts: tuple[str, ...]  # the facts the split has


@dataclass
class _Entry:
    key: Hashable
    files: tuple[tuple[str, int, int], ...]  # (path, size, mtime_ns) of every file read
    split: LoadedSplit


_REGISTERED: dict[str, _Registration] = {}
_CACHE: dict[str, _Entry] = {}
_LOCK = threading.RLock()


def _stat(path: str) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return path, -1, -1
    return path, st.st_size, st.st_mtime_ns


def _copy_dicts(dicts: list[dict]) -> list[dict]:
    """A copy a caller may modify: the records, their lists (``query_box``), their annotation
    dicts and boxes."""
    out = []
    for record in dicts:
        record = {k: list(v) if isinstance(v, list) else v for k, v in record.items()}
        if "annotations" in record:
            record["annotations"] = [
                dict(a, bbox=list(a["bbox"])) if "bbox" in a else dict(a)
                for a in record["annotations"]
            ]
        out.append(record)
    return out


class DatasetMetadata(Metadata):
    """Metadata of a split registered with :func:`register_split`: ``search_protocol``,
    ``num_person_ids`` and ``load_summary`` are answered by the cached functions of the name
    (computed when first read, never stored), unless set statically at registration."""

    def __getattr__(self, key):
        if key in _FACTS and key not in self.__dict__:
            registration = _REGISTERED.get(self.__dict__.get("name", ""))
            if registration is not None and key in registration.facts:
                return _GETTERS[key](self.name)
        return super().__getattr__(key)

    def __setattr__(self, key, val):
        if key in _FACTS and key not in self.__dict__:
            object.__setattr__(self, key, val)  # a static fact: no load to compare with
        else:
            super().__setattr__(key, val)


def register_split(
    name: str,
    load: Callable[[], LoadedSplit],
    *,
    key: Callable[[], Hashable],
    facts: Sequence[str],
) -> None:
    """Register a split in ``DatasetCatalog`` (returning copies of the cached dicts) and give
    it a :class:`DatasetMetadata`.

    Args:
        load: loads the split (reading files through :mod:`.matfile`, which reports them).
        key: returns what the load depends on besides the files it reads (e.g. the root);
            the cached load is reused while it returns an equal value.
        facts: which of "search_protocol", "num_person_ids", "load_summary" the split has.
    """
    unknown = set(facts) - set(_FACTS)
    if unknown:
        raise ValueError(f"unknown dataset facts {sorted(unknown)} (known: {list(_FACTS)})")
    DatasetCatalog.register(name, lambda: _copy_dicts(load_split(name).dicts))
    _REGISTERED[name] = _Registration(load, key, tuple(facts))
    old = MetadataCatalog.get(name)
    if not isinstance(old, DatasetMetadata):
        MetadataCatalog[name] = DatasetMetadata(**old.__dict__)


def clear_dataset_cache(name: str | None = None) -> None:
    """Forget the cached load of ``name`` (of every split when None)."""
    with _LOCK:
        if name is None:
            _CACHE.clear()
        else:
            _CACHE.pop(name, None)


def load_split(name: str) -> LoadedSplit:
    """The cached load of a split registered with :func:`register_split` (loaded, and its
    summary logged, when absent or out of date)."""
    registration = _REGISTERED.get(name)
    if registration is None:
        raise KeyError(f"dataset {name!r} is not registered with register_split")
    key = (registration.key(), data_options().drop_negative_boxes)
    with _LOCK:
        entry = _CACHE.get(name)
        if entry is not None and entry.key == key and all(_stat(f[0]) == f for f in entry.files):
            return entry.split
        with track_reads() as reads:
            split = registration.load()
        files = tuple(_stat(path) for path in dict.fromkeys(reads))
        _CACHE[name] = _Entry(key, files, split)
    if split.summary is not None:  # printed once per load; at WARNING when it has notes
        level = logging.WARNING if split.summary.notes else logging.INFO
        logger.log(level, "%s: %s", name, split.summary)
    return split


def get_search_protocol(name: str, variants: Sequence[str] | None = None) -> SearchProtocol:
    """The search protocol of a person-search test set; with ``variants``, restricted to them
    (``KeyError`` naming an unknown one). Read once per process (variants are built when
    first asked for, then kept).

    Raises:
        ValueError: the dataset has no search protocol (not a person-search test set).
    """
    static = MetadataCatalog.get(name).__dict__.get("search_protocol")
    registration = _REGISTERED.get(name)
    if isinstance(static, SearchProtocol):
        protocol = static
    elif registration is not None and "search_protocol" in registration.facts:
        protocol = load_split(name).search_protocol
    else:
        protocol = None
    if not isinstance(protocol, SearchProtocol):
        raise ValueError(f"dataset {name!r} has no search protocol (not a person-search test set?)")
    return protocol if variants is None else protocol.restricted(list(variants))


def get_num_person_ids(name: str) -> int:
    """The number of labelled identities of a training set (its ``person_id`` values are
    0..N-1): the static metadata value when set at registration, else from the cached load,
    else counted in ``DatasetCatalog.get(name)`` (distinct ``person_id`` >= 0 of the dicts or
    of their annotations).

    Raises:
        ValueError: the dataset is not registered or has no positive count.
    """
    static = MetadataCatalog.get(name).__dict__.get("num_person_ids")
    registration = _REGISTERED.get(name)
    if static is not None:
        count = static
    elif registration is not None:
        has_count = "num_person_ids" in registration.facts
        count = load_split(name).num_person_ids if has_count else None
    elif name in DatasetCatalog.list():
        count = _count_identities(DatasetCatalog.get(name))
    else:
        raise ValueError(f"dataset {name!r} is not registered")
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        raise ValueError(
            f"dataset {name!r} has no positive identity count (got {count!r}): it is not a "
            "training set with labelled persons"
        )
    return count


def _count_identities(dicts: list[dict]) -> int:
    ids = set()
    for record in dicts:
        if "person_id" in record:
            ids.add(record["person_id"])
        for anno in record.get("annotations", ()):
            ids.add(anno.get("person_id", -1))
    return len({int(i) for i in ids if i is not None and int(i) >= 0})


def get_load_summary(name: str) -> LoadSummary | None:
    """What loading the split read, kept and dropped (None for datasets not registered with
    :func:`register_split`, or whose loader gives no summary)."""
    if name not in _REGISTERED:
        return None
    return load_split(name).summary


_GETTERS: dict[str, Callable[[str], object]] = {
    "search_protocol": get_search_protocol,
    "num_person_ids": get_num_person_ids,
    "load_summary": get_load_summary,
}
