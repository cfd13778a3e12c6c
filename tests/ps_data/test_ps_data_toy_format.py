"""The toy files have the MATLAB structure datasets/README.md writes down for the real files.

The description is parsed from the README's ``mat-structure`` block, so the two cannot drift:
every variable, field (names and order), class and dimension of every element, including the
1x0 empty boxes, is checked on the toy CUHK-SYSU and PRW trees; and PRW's query_info.txt lines.
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import pytest
import scipy.io
from ps_data_helpers import REPO_ROOT

README = os.path.join(REPO_ROOT, "datasets", "README.md")
_BEGIN, _END = "<!-- mat-structure:begin -->", "<!-- mat-structure:end -->"


def _description() -> list[tuple[str, str, list[tuple[str, str, str, tuple[str, ...]]]]]:
    """[(format, relative path, [(value path, class, dims, fields)])] from the README block."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    block = text[text.index(_BEGIN) + len(_BEGIN) : text.index(_END)]
    files = []
    for line in block.splitlines():
        if not line.strip() or line.startswith("```"):
            continue
        tokens = line.split()
        if tokens[0] == "file":
            files.append((tokens[1], tokens[2], []))
        else:
            files[-1][2].append((tokens[0], tokens[1], tokens[2], tuple(tokens[3:])))
    return files


def _class(value: np.ndarray) -> str:
    if value.dtype.names is not None:
        return "struct"
    if value.dtype == object:
        return "cell"
    if value.dtype.kind == "U":
        return "char"
    return {np.dtype(np.float64): "double"}.get(value.dtype, str(value.dtype))


def _dims_match(shape: tuple[int, ...], spec: str, bound: dict[str, int]) -> str | None:
    """The alternative of ``spec`` that ``shape`` matches, or None."""
    for alt in spec.split("|"):
        if alt == "vec":
            ok = len(shape) == 2 and 1 in shape
        else:
            want = alt.split("x")
            ok = len(shape) == len(want) and all(
                w == "*" or (int(bound[w]) if w in bound else int(w)) == s
                for w, s in zip(want, shape)
            )
        if ok:
            return alt
    return None


def _values(top: np.ndarray, steps: list[str]) -> list[np.ndarray]:
    """All values reached from ``top`` by the steps (".field" or "{}"), elements in MATLAB's
    linear order."""
    values = [top]
    for step in steps:
        nxt = []
        for value in values:
            for element in value.reshape(-1, order="F"):
                nxt.append(element[step] if step != "{}" else element)
        values = [np.asarray(v) for v in nxt]
    return values


def _check_file(path: str, specs, bound: dict[str, int]) -> None:
    data = {k: v for k, v in scipy.io.loadmat(path, chars_as_strings=False).items() if k[0] != "_"}
    top_names = specs[0][0].split(".")[0].split("{")[0]
    allowed = {name.replace("<N>", str(bound.get("N", ""))) for name in top_names.split("|")}
    assert len(data) == 1 and set(data) <= allowed, f"{path}: variables {sorted(data)}"
    ((variable, top),) = data.items()
    for value_path, cls, dims, fields in specs:
        steps = re.findall(r"\.\w+|\{\}", value_path[len(value_path.split(".")[0].split("{")[0]) :])
        values = _values(top, [s.lstrip(".") if s != "{}" else s for s in steps])
        assert values, f"{path}: nothing at {value_path}"
        seen = set()
        for value in values:
            where = f"{path}: {value_path}"
            assert _class(value) == cls, f"{where}: class {_class(value)}, described {cls}"
            alt = _dims_match(value.shape, dims, bound)
            assert alt is not None, f"{where}: dimensions {value.shape}, described {dims}"
            seen.add(alt)
            if cls == "struct":
                assert value.dtype.names == fields, f"{where}: fields {value.dtype.names}"
        assert seen == set(dims.split("|")), f"{path}: {value_path}: only {seen} of {dims} seen"


@pytest.mark.parametrize("dataset_format", ["cuhk_sysu", "prw"])
def test_toy_files_have_the_described_structure(dataset_format, toy_cuhk, toy_prw):
    root = {"cuhk_sysu": toy_cuhk, "prw": toy_prw}[dataset_format][0]
    described = [f for f in _description() if f[0] == dataset_format]
    assert len(described) == {"cuhk_sysu": 6, "prw": 3}[dataset_format]
    for _, rel_path, specs in described:
        pattern = os.path.join(root, rel_path.replace("<N>", "*").replace("<frame>", "*"))
        paths = sorted(glob.glob(pattern))
        assert paths, f"no toy file {rel_path}"
        for path in paths:
            size = re.search(r"TestG(\d+)\.mat$", path)
            _check_file(path, specs, {"N": int(size.group(1))} if size else {})


def test_description_would_catch_a_0x0_empty_box(toy_cuhk, tmp_path):
    """The check is not vacuous: a TestG file with 0x0 empty boxes (what the toy generator used
    to write) fails it."""
    root, summary = toy_cuhk
    n = summary["gallery_sizes"][0]
    path = os.path.join(root, "annotation", "test", "train_test", f"TestG{n}.mat")
    protoc = scipy.io.loadmat(path)[f"TestG{n}"]
    for record in protoc.reshape(-1):
        for entry in record["Gallery"].reshape(-1):
            if entry["idlocate"].size == 0:
                entry["idlocate"] = np.zeros((0, 0))
    bad = str(tmp_path / f"TestG{n}.mat")
    scipy.io.savemat(bad, {f"TestG{n}": protoc})
    specs = next(s for f, rel, s in _description() if rel.endswith("TestG<N>.mat"))
    with pytest.raises(AssertionError, match=r"Gallery.idlocate: dimensions \(0, 0\)"):
        _check_file(bad, specs, {"N": n})


def test_public_evaluation_indexing_reads_the_toy_files(toy_cuhk):
    """SeqNet-style indexing of the real files works on the toy files: the query's image name
    and box, and each gallery entry's ``item[1][0]`` (4 numbers or none)."""
    root, summary = toy_cuhk
    for n in summary["gallery_sizes"]:
        path = os.path.join(root, "annotation", "test", "train_test", f"TestG{n}.mat")
        protoc = scipy.io.loadmat(path)[f"TestG{n}"].squeeze()
        for i in range(len(protoc)):
            assert str(protoc["Query"][i]["imname"][0, 0][0]).endswith(".jpg")
            assert protoc["Query"][i]["idlocate"][0, 0][0].shape == (4,)
            sizes = [item[1][0].size for item in protoc["Gallery"][i].squeeze()]
            assert len(sizes) == n and set(sizes) == {0, 4}


def test_toy_prw_query_info_lines(toy_prw):
    """One query per line, six fields separated by single spaces, every line ending in CRLF."""
    root, summary = toy_prw
    with open(os.path.join(root, "query_info.txt"), "rb") as f:
        raw = f.read()
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    lines = raw.split(b"\r\n")[:-1]
    assert len(lines) == summary["queries"]
    for line in lines:
        tokens = line.split(b" ")
        assert len(tokens) == 6 and all(tokens), line
        assert int(tokens[0]) >= 0 and not tokens[5].endswith(b".jpg")
