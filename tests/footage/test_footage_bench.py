"""benchmarks/bench_search.py at a tiny size: every part runs and checks what it prints."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from footage_testutils import REPO


def _load_bench():
    spec = importlib.util.spec_from_file_location(
        "bench_search", REPO / "benchmarks" / "bench_search.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tie_tolerant_top_k_comparison():
    bench = _load_bench()
    sims = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.3 + 5e-6, 0.9, 0.3])  # by id
    ref_ids = np.array([6, 4, 3])  # top-3: 0.9, 0.5, 0.4

    def sims_of(ids):
        return sims[ids]

    assert bench.same_top_k(np.array([4, 6, 3]), ref_ids, sims[ref_ids], sims_of)  # order free
    assert not bench.same_top_k(np.array([6, 4, 2]), ref_ids, sims[ref_ids], sims_of)  # 0.3 < 0.4
    sims[3] = 0.25  # now the top-3 is 6, 4, 5 (0.300005), and 2 and 7 (0.3) tie with 5
    ref_ids = np.array([6, 4, 5])
    assert bench.same_top_k(np.array([6, 4, 2]), ref_ids, sims[ref_ids], sims_of)
    assert bench.same_top_k(np.array([6, 4, 7]), ref_ids, sims[ref_ids], sims_of)
    assert not bench.same_top_k(np.array([6, 5, 7]), ref_ids, sims[ref_ids], sims_of)  # 4 missing


def test_bench_search_tiny_run(capsys):
    bench = _load_bench()
    results = bench.main(
        ["--sizes", "3000", "--queries", "3", "--ivf", "--size-detections", "700"]
        + ["--index-images", "2", "--threads", "1"]
    )
    rows = {r["method"]: r for r in results["latency"]}
    assert set(rows) == {"numpy (reference)", "TorchExact", "FaissExact", "FaissIVF"}
    assert rows["TorchExact"]["check"] == rows["FaissExact"]["check"] == "same top-k"
    assert rows["FaissIVF"]["check"].startswith("recall@20 ")
    assert rows["numpy (reference)"]["x numpy"] == 1.0
    for row in rows.values():
        assert row["ms"] > 0 and row["x numpy"] == pytest.approx(
            rows["numpy (reference)"]["ms"] / row["ms"]
        )
    size = results["size"]
    assert size["detections"] == 700 and 512 < size["bytes_per_detection"] < 700
    speed = results["indexing"]
    assert speed["images"] == 2 and speed["index_ips"] > 0 and speed["reference_ips"] > 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("|"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "detections", "method", "ms/query", "x numpy", "top-k", "build s",
    ]  # fmt: skip
    assert "bytes per detection" in out and "images/s" in out
