"""Retrieval back-ends (person_search.footage.retrieval) against a numpy brute force."""

from __future__ import annotations

import numpy as np
import pytest

from person_search.footage.retrieval import (
    RETRIEVAL_REGISTRY,
    build_retrieval,
    resolve_retrieval_name,
)

NUM, DIM, K = 3000, 32, 10


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    embeddings = _unit(rng.standard_normal((NUM, DIM))).astype(np.float16)
    # Queries near stored entries, so that the top-k has clear leaders.
    queries = _unit(
        embeddings[[5, 700, 2999]].astype(np.float32) + 0.3 * rng.standard_normal((3, DIM))
    ).astype(np.float32)
    return embeddings, queries


def _reference(embeddings, queries, k, allowed=None):
    sims = queries @ embeddings.astype(np.float32).T
    if allowed is not None:
        sims[:, ~allowed] = -np.inf
    ids = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, ids, 1), ids


def _build(name, embeddings, tmp_path, **options):
    cls = RETRIEVAL_REGISTRY.get(name)
    params = cls.prepare(embeddings, str(tmp_path), options)
    return build_retrieval(name, embeddings, str(tmp_path), params), params


@pytest.mark.parametrize("name", ["TorchExact", "FaissExact"])
def test_exact_backends_give_the_brute_force_top_k(name, data, tmp_path):
    embeddings, queries = data
    backend, params = _build(name, embeddings, tmp_path)
    assert params == {}
    sims, ids = backend.search(queries, K)
    ref_sims, ref_ids = _reference(embeddings, queries, K)
    assert ids.shape == sims.shape == (3, K) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 0).all()


@pytest.mark.parametrize("name", ["TorchExact", "FaissExact", "FaissIVF"])
def test_allowed_mask_filters_exactly(name, data, tmp_path):
    embeddings, queries = data
    # All cells probed: IVF is then exact too.
    backend, _ = _build(name, embeddings, tmp_path, nlist=8, nprobe=8)
    allowed = np.zeros(NUM, dtype=bool)
    allowed[::3] = True
    sims, ids = backend.search(queries, K, allowed)
    ref_sims, ref_ids = _reference(embeddings, queries, K, allowed)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)
    # Fewer allowed entries than k: only those.
    few = np.zeros(NUM, dtype=bool)
    few[[3, 9, 2001]] = True
    sims, ids = backend.search(queries, K, few)
    assert ids.shape == (3, 3) and set(ids[0]) == {3, 9, 2001}
    sims, ids = backend.search(queries, K, np.zeros(NUM, dtype=bool))
    assert ids.shape == (3, 0)
    with pytest.raises(ValueError, match="top-k must be >= 1"):
        backend.search(queries, 0)


def test_ivf_records_its_file_and_finds_the_near_duplicates(data, tmp_path):
    embeddings, queries = data
    backend, params = _build("FaissIVF", embeddings, tmp_path, nlist=0, nprobe=4)
    assert params == {"nlist": round(4 * np.sqrt(NUM)), "nprobe": 4, "file": "ivf.faiss"}
    assert (tmp_path / "ivf.faiss").is_file()
    rng = np.random.default_rng(1)
    near = embeddings[[5, 700, 2999]].astype(np.float32) + 0.02 * rng.standard_normal((3, DIM))
    _, ids = backend.search(_unit(near).astype(np.float32), 1)
    assert ids[:, 0].tolist() == [5, 700, 2999]
    with pytest.raises(ValueError, match="holds 3000 vectors of size 32, the index 10"):
        build_retrieval("FaissIVF", embeddings[:10], str(tmp_path), params)
    with pytest.raises(ValueError, match="IVF_NPROBE must be >= 1"):
        _build("FaissIVF", embeddings, tmp_path, nprobe=0)
    with pytest.raises(ValueError, match="without detections"):
        _build("FaissIVF", embeddings[:0], tmp_path)


def test_names_resolve_and_unknown_names_are_errors():
    assert resolve_retrieval_name("auto", 99, 100) == "TorchExact"
    assert resolve_retrieval_name("auto", 100, 100) == "FaissExact"
    assert resolve_retrieval_name("FaissIVF", 5, 100) == "FaissIVF"
    with pytest.raises(KeyError, match="'Annoy' is not 'auto' or one of"):
        resolve_retrieval_name("Annoy", 5, 100)
    with pytest.raises(KeyError, match="back-end 'Annoy' is not registered"):
        build_retrieval("Annoy", np.zeros((1, 4), np.float16), ".", {})
