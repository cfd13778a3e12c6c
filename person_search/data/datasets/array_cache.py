"""A cache of parsed files as ``.npz`` arrays, keyed by the source file's path, size, mtime and
content hash.

One entry per (source path, kind) in the cache directory, named from a hash of the absolute path;
it stores the arrays and the key they were built from. An entry is used only when its key equals
the source's current one (the content hash is recomputed at every lookup: about a second per
gigabyte); a stale entry (the source was edited) or an unreadable one (truncated, corrupt) is
rebuilt with a warning, never trusted. Entries are written to a temporary file and renamed into
place, so a reader never sees a partial entry and processes filling the same entry at once leave
one valid entry. A cache directory that cannot be written is warned about and the parsed arrays
are used without caching.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable

import numpy as np

from person_search.utils.file_io import atomic_write

__all__ = ["ArrayCache", "file_digest"]

logger = logging.getLogger(__name__)

_KEY = "__cache_key__"
_HASH_BLOCK = 4 << 20


def file_digest(path: str) -> str:
    """SHA-256 of a file's content (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class ArrayCache:
    """Parsed files as ``.npz`` entries in ``directory`` (see the module docstring)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def entry_path(self, source: str, kind: str) -> str:
        """The entry file of ``source`` parsed as ``kind``."""
        name = hashlib.sha256(os.path.abspath(source).encode()).hexdigest()[:24]
        return os.path.join(self.directory, f"{kind}-{name}.npz")

    @staticmethod
    def source_key(source: str, kind: str) -> dict:
        """The key of ``source``: absolute path, size, mtime (ns), content hash, kind."""
        st = os.stat(source)
        return {
            "path": os.path.abspath(source),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "sha256": file_digest(source),
            "kind": kind,
        }

    def load(
        self, source: str, kind: str, build: Callable[[], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """The arrays of ``source`` parsed as ``kind``: from the cache when its entry matches
        the source's key, else ``build()`` (then stored).

        Args:
            kind: names the parser and its output format (change it when either changes).
            build: parses the source; returns arrays ``np.savez`` stores without pickling.
        """
        key = self.source_key(source, kind)
        path = self.entry_path(source, kind)
        if os.path.exists(path):
            arrays, problem = self._read(path, key)
            if arrays is not None:
                return arrays
            logger.warning("cache entry %s %s; rebuilding it from %s", path, problem, source)
        arrays = build()
        self._write(path, key, arrays)
        return arrays

    @staticmethod
    def _read(path: str, key: dict) -> tuple[dict[str, np.ndarray] | None, str]:
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = json.loads(str(data[_KEY]))
                if stored != key:
                    changed = sorted(k for k in key if stored.get(k) != key[k])
                    return None, f"is stale (source {', '.join(changed)} changed)"
                return {name: data[name] for name in data.files if name != _KEY}, ""
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            return None, f"is unreadable ({type(e).__name__}: {e})"

    @staticmethod
    def _write(path: str, key: dict, arrays: dict[str, np.ndarray]) -> None:
        payload = dict(arrays)
        payload[_KEY] = np.asarray(json.dumps(key, sort_keys=True))
        try:
            atomic_write(path, lambda f: np.savez(f, **payload), mode="wb")
        except OSError as e:
            logger.warning("protocol cache: cannot write %s (%s); not cached", path, e)
