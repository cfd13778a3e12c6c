"""Top-k retrieval by inner product over an index's unit embeddings.

``RETRIEVAL_REGISTRY`` holds the back-ends an index can record (``FOOTAGE.RETRIEVAL.NAME``):

* ``TorchExact``: one matrix product over all embeddings (float32), then ``topk``. No extra
  dependency; the choice for small indexes.
* ``FaissExact``: faiss's exhaustive inner-product search over the embeddings as stored
  (``IndexScalarQuantizer`` with float16 codes: exact for float16 vectors, half the memory of
  ``IndexFlatIP``, and faster for one query at a time: 38 ms at 1M on one CPU thread,
  ``benchmarks/bench_search.py``).
* ``FaissIVF``: faiss inverted file (k-means cells, float16 codes): approximate, for very large
  indexes; trained when the index is merged and saved in the index.

Every back-end is called as ``cls.prepare(embeddings, index_dir, options) -> params`` once when
the index is merged (returns the parameters to record; may write files into ``index_dir``), and
``cls(embeddings, index_dir, params)`` when the index is loaded. ``search(queries, k, allowed)``
returns the same top-k for the exact back-ends (up to the order of exact ties). faiss is
imported only by the faiss back-ends (package ``faiss-cpu``).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from detectron2.utils.registry import Registry

from person_search.utils.file_io import atomic_write

__all__ = [
    "RETRIEVAL_REGISTRY",
    "FaissExact",
    "FaissIVF",
    "Retrieval",
    "TorchExact",
    "build_retrieval",
    "resolve_retrieval_name",
]

RETRIEVAL_REGISTRY = Registry("FOOTAGE_RETRIEVAL")
RETRIEVAL_REGISTRY.__doc__ = """
Retrieval back-ends of footage indexes (subclasses of :class:`Retrieval`). The registered class
is called as ``cls.prepare(embeddings, index_dir, options)`` when an index is merged and
``cls(embeddings, index_dir, params)`` when it is loaded.
"""

# faiss returns this id where fewer than k entries are allowed.
_NO_ID = -1


def _import_faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError(
            "the faiss retrieval back-ends need the package faiss-cpu (pip install faiss-cpu); "
            "an index built with FOOTAGE.RETRIEVAL.NAME TorchExact does not"
        ) from e
    return faiss


class Retrieval:
    """Base class: top-k search of unit query vectors against N unit embeddings."""

    def __init__(self, embeddings: np.ndarray, index_dir: str, params: dict[str, Any]):
        """
        Args:
            embeddings: (N, D) float16/float32 unit vectors (may be memory-mapped).
            index_dir: the index folder (back-ends with a file read it from there).
            params: what :meth:`prepare` recorded.
        """
        self.num = len(embeddings)
        self.params = dict(params)

    @classmethod
    def prepare(cls, embeddings: np.ndarray, index_dir: str, options: dict) -> dict:
        """Merge-time work.

        Args:
            options: ``FOOTAGE.RETRIEVAL`` settings (``nlist``, ``nprobe``); each back-end
                takes what it uses.

        Returns:
            the parameters to record in the index (with ``file``: a file it wrote in
            ``index_dir``).
        """
        return {}

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product.

        Args:
            queries: (Q, D) float32 unit vectors.
            k: results per query (>= 1).
            allowed: (N,) bool, entries that may be returned (``None``: all).

        Returns:
            similarities (Q, k') float32 in decreasing order and ids (Q, k') int64, with
            ``k' = min(k, number allowed)``.
        """
        raise NotImplementedError


def _num_results(num: int, k: int, allowed: np.ndarray | None) -> int:
    if k < 1:
        raise ValueError(f"top-k must be >= 1, got {k}")
    return min(k, num if allowed is None else int(np.count_nonzero(allowed)))


@RETRIEVAL_REGISTRY.register()
class TorchExact(Retrieval):
    """Brute force: ``embeddings @ queries.T`` in float32, then ``topk``."""

    def __init__(self, embeddings, index_dir, params):
        super().__init__(embeddings, index_dir, params)
        self._emb = torch.from_numpy(np.asarray(embeddings, dtype=np.float32))

    def search(self, queries, k, allowed=None):
        n = _num_results(self.num, k, allowed)
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        sims = q @ self._emb.T  # (Q, N)
        if allowed is not None:
            sims[:, ~torch.from_numpy(np.asarray(allowed, dtype=bool))] = -math.inf
        top = torch.topk(sims, n, dim=1)
        return top.values.numpy(), top.indices.numpy().astype(np.int64)


class _FaissBackend(Retrieval):
    """faiss search with an optional bitmap of allowed ids."""

    _index: Any

    def _search_parameters(self, selector):
        faiss = _import_faiss()
        return faiss.SearchParameters(sel=selector)

    def search(self, queries, k, allowed=None):
        faiss = _import_faiss()
        n = _num_results(self.num, k, allowed)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if n == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        selector = None
        if allowed is not None:
            bits = np.packbits(np.asarray(allowed, dtype=bool), bitorder="little")
            selector = faiss.IDSelectorBitmap(self.num, faiss.swig_ptr(bits))
        sims, ids = self._index.search(q, n, params=self._search_parameters(selector))
        ids = ids.astype(np.int64)
        if (ids == _NO_ID).any():  # IVF: fewer allowed entries in the probed cells
            keep = min(int((row != _NO_ID).sum()) for row in ids)
            sims, ids = sims[:, :keep], ids[:, :keep]
        return sims.astype(np.float32), ids


def _fp16_codes_index(faiss, dim: int, quantizer=None, nlist: int = 0):
    fp16 = faiss.ScalarQuantizer.QT_fp16
    if quantizer is None:
        return faiss.IndexScalarQuantizer(dim, fp16, faiss.METRIC_INNER_PRODUCT)
    return faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, fp16, faiss.METRIC_INNER_PRODUCT)


def _add_in_blocks(index, embeddings: np.ndarray, block: int = 65536) -> None:
    for start in range(0, len(embeddings), block):
        index.add(np.ascontiguousarray(embeddings[start : start + block], dtype=np.float32))


@RETRIEVAL_REGISTRY.register()
class FaissExact(_FaissBackend):
    """faiss exhaustive inner-product search over the float16 embeddings (exact)."""

    def __init__(self, embeddings, index_dir, params):
        super().__init__(embeddings, index_dir, params)
        faiss = _import_faiss()
        self._index = _fp16_codes_index(faiss, embeddings.shape[1])
        _add_in_blocks(self._index, embeddings)


@RETRIEVAL_REGISTRY.register()
class FaissIVF(_FaissBackend):
    """faiss ``IndexIVFScalarQuantizer`` (float16 codes), trained at merge time, saved as
    ``INDEX_DIR/ivf.faiss``. Params: ``nlist`` (0: 4 sqrt(N)), ``nprobe``."""

    FILE = "ivf.faiss"

    @classmethod
    def prepare(cls, embeddings, index_dir, options):
        faiss = _import_faiss()
        num, dim = embeddings.shape
        if num == 0:
            raise ValueError("FaissIVF cannot be trained on an index without detections")
        nlist = int(options.get("nlist") or 0) or max(1, int(round(4 * math.sqrt(num))))
        nlist = min(nlist, num)
        nprobe = int(options.get("nprobe", 32))
        if nprobe < 1:
            raise ValueError(f"FOOTAGE.RETRIEVAL.IVF_NPROBE must be >= 1, got {nprobe}")
        index = _fp16_codes_index(faiss, dim, faiss.IndexFlatIP(dim), nlist)
        index.by_residual = False  # codes are the stored float16 vectors themselves
        # faiss trains on at most 256 points per cell; an evenly spaced sample is reproducible.
        sample = np.linspace(0, num - 1, min(num, 256 * nlist)).astype(np.int64)
        index.train(np.ascontiguousarray(embeddings[sample], dtype=np.float32))
        _add_in_blocks(index, embeddings)
        path = os.path.join(index_dir, cls.FILE)
        atomic_write(path, lambda f: f.write(faiss.serialize_index(index).tobytes()), "wb")
        return {"nlist": nlist, "nprobe": nprobe, "file": cls.FILE}

    def __init__(self, embeddings, index_dir, params):
        super().__init__(embeddings, index_dir, params)
        faiss = _import_faiss()
        path = os.path.join(index_dir, params["file"])
        with open(path, "rb") as f:
            self._index = faiss.deserialize_index(np.frombuffer(f.read(), dtype=np.uint8))
        if self._index.ntotal != self.num or self._index.d != embeddings.shape[1]:
            raise ValueError(
                f"{path} holds {self._index.ntotal} vectors of size {self._index.d}, the index "
                f"{self.num} of size {embeddings.shape[1]}: rebuild the index"
            )
        self._nprobe = int(params["nprobe"])

    def _search_parameters(self, selector):
        faiss = _import_faiss()
        return faiss.SearchParametersIVF(sel=selector, nprobe=self._nprobe)


def resolve_retrieval_name(name: str, num_detections: int, auto_faiss_min: int) -> str:
    """``FOOTAGE.RETRIEVAL.NAME`` -> a registered back-end ("auto": TorchExact below
    ``auto_faiss_min`` detections, FaissExact from it)."""
    if name == "auto":
        return "TorchExact" if num_detections < auto_faiss_min else "FaissExact"
    known = sorted(n for n, _ in RETRIEVAL_REGISTRY)
    if name not in known:
        raise KeyError(f"FOOTAGE.RETRIEVAL.NAME={name!r} is not 'auto' or one of {known}")
    return name


def build_retrieval(name: str, embeddings: np.ndarray, index_dir: str, params: dict) -> Retrieval:
    """The back-end ``name`` recorded in an index, over its embeddings."""
    try:
        cls = RETRIEVAL_REGISTRY.get(name)
    except KeyError as e:
        known = sorted(n for n, _ in RETRIEVAL_REGISTRY)
        raise KeyError(f"retrieval back-end {name!r} is not registered (known: {known})") from e
    return cls(embeddings, index_dir, params)
