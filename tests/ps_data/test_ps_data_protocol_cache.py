"""The protocol cache: hits equal a fresh parse, edits and corrupt entries are rebuilt with a
warning, concurrent fills leave one valid entry; the CUHK-SYSU loader uses it."""

from __future__ import annotations

import dataclasses
import glob
import logging
import multiprocessing
import os

import numpy as np
import pytest
from test_ps_data_matv5 import _protocol, _same

from person_search.data.datasets import cuhk_protocol as cuhk_protocol_module
from person_search.data.datasets import data_options, load_cuhk_sysu_test, set_data_options
from person_search.data.datasets.array_cache import ArrayCache
from person_search.data.datasets.cuhk_protocol import (
    ProtocolFile,
    parse_protocol_file,
    read_protocol_file,
)
from person_search.data.toy.protocol_writer import write_protocol_file


@pytest.fixture(autouse=True)
def _restore_options():
    saved = data_options()
    yield
    set_data_options(**dataclasses.asdict(saved))


@pytest.fixture
def protocol_file(tmp_path) -> tuple[str, ProtocolFile]:
    pf = _protocol(seed=20, queries=30, size=40, names=200)
    path = str(tmp_path / "data" / "TestG40.mat")
    os.makedirs(os.path.dirname(path))
    write_protocol_file(pf, path)
    return path, pf


def _no_parse(monkeypatch):
    def fail(*args):
        raise AssertionError("parsed although the cache holds the file")

    monkeypatch.setattr(cuhk_protocol_module, "parse_protocol_file", fail)


def test_hit_equals_fresh_parse(protocol_file, tmp_path, monkeypatch, caplog):
    path, pf = protocol_file
    cache = ArrayCache(str(tmp_path / "cache"))
    first = read_protocol_file(path, "TestG40", cache)
    entries = glob.glob(str(tmp_path / "cache" / "*.npz"))
    assert len(entries) == 1
    with monkeypatch.context() as m, caplog.at_level(logging.WARNING):
        _no_parse(m)
        hit = read_protocol_file(path, "TestG40", cache)
    assert not caplog.records
    fresh = parse_protocol_file(path, "TestG40")
    for got in (first, hit):
        _same(fresh, got)
        assert got.path == path and got.variable == "TestG40"
        for name, value in fresh.to_arrays().items():
            np.testing.assert_array_equal(getattr(got, name), value)
    _same(pf, hit)


def test_edited_file_is_parsed_again(protocol_file, tmp_path, caplog):
    """An edit is caught even when it keeps the size and the mtime (the content hash)."""
    path, pf = protocol_file
    write_protocol_file(pf, path, level=0)  # stored, not compressed: an edit keeps the size
    cache = ArrayCache(str(tmp_path / "cache"))
    read_protocol_file(path, "TestG40", cache)
    st = os.stat(path)
    boxes = pf.gallery_boxes.copy()
    boxes[0, 0] += 1
    edited = dataclasses.replace(pf, gallery_boxes=boxes)
    write_protocol_file(edited, path, level=0)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    with caplog.at_level(logging.WARNING):
        got = read_protocol_file(path, "TestG40", cache)
    assert [r.getMessage() for r in caplog.records if "is stale" in r.getMessage()]
    assert "source sha256 changed" in caplog.records[0].getMessage()
    _same(edited, got)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _same(edited, read_protocol_file(path, "TestG40", cache))  # the rewritten entry
    assert not caplog.records


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_entry_is_rebuilt_with_a_warning(damage, protocol_file, tmp_path, caplog):
    path, pf = protocol_file
    cache = ArrayCache(str(tmp_path / "cache"))
    read_protocol_file(path, "TestG40", cache)
    (entry,) = glob.glob(str(tmp_path / "cache" / "*.npz"))
    with open(entry, "rb") as f:
        data = f.read()
    with open(entry, "wb") as f:
        f.write({"truncate": data[: len(data) // 2], "garbage": b"x" * 100, "empty": b""}[damage])
    with caplog.at_level(logging.WARNING):
        got = read_protocol_file(path, "TestG40", cache)
    assert any("is unreadable" in r.getMessage() for r in caplog.records)
    _same(pf, got)
    _same(
        pf, ProtocolFile.from_arrays(path, "TestG40", ArrayCache._read(entry, _key(cache, path))[0])
    )


def _key(cache: ArrayCache, path: str) -> dict:
    return cache.source_key(path, f"{cuhk_protocol_module.PROTOCOL_FORMAT}-TestG40")


def _fill(path: str, cache_dir: str, barrier, queue) -> None:
    barrier.wait()
    pf = read_protocol_file(path, "TestG40", ArrayCache(cache_dir))
    queue.put(pf.to_arrays())


def test_two_processes_filling_at_once_leave_one_valid_entry(tmp_path):
    pf = _protocol(seed=21, queries=300, size=100, names=500)
    path = str(tmp_path / "TestG40.mat")
    write_protocol_file(dataclasses.replace(pf, variable="TestG40"), path)
    cache_dir = str(tmp_path / "cache")
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_fill, args=(path, cache_dir, barrier, queue)) for _ in "ab"]
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    assert sorted(os.listdir(cache_dir)) == [
        os.path.basename(
            ArrayCache(cache_dir).entry_path(
                path, f"{cuhk_protocol_module.PROTOCOL_FORMAT}-TestG40"
            )
        )
    ]  # one entry, no temporary file left
    fresh = parse_protocol_file(path, "TestG40")
    for arrays in results:
        _same(fresh, ProtocolFile.from_arrays(path, "TestG40", arrays))
    stored, problem = ArrayCache._read(
        os.path.join(cache_dir, os.listdir(cache_dir)[0]), _key(ArrayCache(cache_dir), path)
    )
    assert problem == "" and stored is not None
    _same(fresh, ProtocolFile.from_arrays(path, "TestG40", stored))


def test_unwritable_cache_warns_and_still_reads(protocol_file, tmp_path, caplog):
    path, pf = protocol_file
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        got = read_protocol_file(path, "TestG40", ArrayCache(str(blocker / "cache")))
    assert any("cannot write" in r.getMessage() for r in caplog.records)
    _same(pf, got)


def test_loader_reads_every_protocol_file_from_the_cache(toy_cuhk, tmp_path, monkeypatch):
    """The test split's protocol files go through the cache: a second load parses nothing and
    gives the same split; with the cache off nothing is written."""
    root, summary = toy_cuhk
    cache_dir = tmp_path / "cache"
    set_data_options(cache_dir=str(cache_dir), cache_min_bytes=0)
    first = load_cuhk_sysu_test(root)
    kinds = sorted(os.path.basename(p).rsplit("-", 1)[0] for p in glob.glob(str(cache_dir / "*")))
    expected = [f"cuhk_protocol_v1-TestG{n}" for n in summary["gallery_sizes"]]
    assert kinds == sorted(expected + ["cuhk_protocol_v1-Occlusion1", "cuhk_protocol_v1-Test_Size"])
    with monkeypatch.context() as m:
        _no_parse(m)
        second = load_cuhk_sysu_test(root)
        for name in second.protocol.variant_loaders:
            first_v, second_v = first.protocol.variant(name), second.protocol.variant(name)
            np.testing.assert_array_equal(first_v.query_indices, second_v.query_indices)
            for a, b in zip(first_v.positives, second_v.positives):
                np.testing.assert_array_equal(a[0], b[0])
                np.testing.assert_array_equal(a[1], b[1])
    assert second.dicts == first.dicts and second.summary == first.summary
    off = tmp_path / "off"
    set_data_options(protocol_cache=False, cache_dir=str(off))
    load_cuhk_sysu_test(root)
    assert not off.exists()


def test_small_files_are_not_cached(toy_cuhk, tmp_path):
    root, _ = toy_cuhk
    set_data_options(cache_dir=str(tmp_path / "cache"))  # default minimum size: 256 KiB
    load_cuhk_sysu_test(root)
    assert not (tmp_path / "cache").exists()
