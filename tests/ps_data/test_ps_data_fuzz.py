"""200 seeded corruptions of a toy CUHK-SYSU and a toy PRW tree.

Each corruption (a missing file, a truncated file, a renamed variable, a NaN or negative box,
a query cut short or repeated, a name that is not UTF-8) either makes the loader raise an error
naming the corrupted file (``ValueError`` / ``AnnotationError`` or ``FileNotFoundError``, no
other type), or the split loads; then, if anything it returns differs from the clean tree's
(dicts, identity count, protocol), its load summary differs too: no silent change.
"""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
import scipy.io

from person_search.data.datasets import (
    load_cuhk_sysu_test,
    load_cuhk_sysu_train,
    load_prw_test,
    load_prw_train,
)

CASES = 200
_OPS = ("missing", "truncate", "rename_variable", "nan_box", "negative_box", "cut_query")
_OPS += ("repeat_query", "non_utf8")
# Operations that apply to a kind of file.
_FILE_OPS = ("missing", "truncate")
_NAMES_OPS = (*_FILE_OPS, "rename_variable", "non_utf8")
_BOXES_OPS = (*_NAMES_OPS, "nan_box", "negative_box")
_CUHK_FILES = {  # file (relative) -> (splits that read it, operations)
    "annotation/Images.mat": (("train", "test"), _BOXES_OPS),
    "annotation/pool.mat": (("train", "test"), _NAMES_OPS),
    "annotation/test/train_test/Train.mat": (("train",), (*_BOXES_OPS, "repeat_query")),
    "annotation/test/train_test/TestG50.mat": (("test",), _OPS),
    "annotation/test/subset/Occlusion.mat": (("test",), _OPS),
    "annotation/test/subset/Resolution.mat": (("test",), _OPS),
}
_PRW_FILES = {
    "frame_train.mat": (("train",), _NAMES_OPS),
    "frame_test.mat": (("test",), _NAMES_OPS),
    "query_info.txt": (("test",), _OPS),
}
_NAME = {"cuhk_sysu": rb"s\d+\.jpg", "prw": rb"c\d+s\d+_\d+"}


def _replace(path: str, data: bytes) -> None:
    """Write a new file in place of ``path`` (the trees share their files as hard links)."""
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _resave(path: str, data: dict, compress: bool = True) -> None:
    tmp = path + ".new.mat"
    scipy.io.savemat(tmp, data, do_compression=compress)
    os.replace(tmp, path)


def _boxes(value, found: list) -> None:
    """Collect (record, "idlocate") for the 1x4 boxes under a loadmat value."""
    if isinstance(value, np.ndarray) and value.dtype.names:
        for element in value.reshape(-1):
            for name in value.dtype.names:
                box = element[name]
                if name == "idlocate" and box.shape == (1, 4):
                    found.append(element)
                elif name in ("box", "Query", "Gallery", "scene"):
                    _boxes(box, found)
    elif isinstance(value, np.ndarray) and value.dtype == object:
        for element in value.reshape(-1):
            _boxes(element, found)


def _corrupt(root: str, rel: str, op: str, rng: np.random.Generator, fmt: str) -> None:
    path = os.path.join(root, rel)
    if op == "missing":
        os.remove(path)
        return
    with open(path, "rb") as f:
        raw = f.read()
    if op == "truncate":
        _replace(path, raw[: int(rng.integers(0, len(raw)))])
        return
    if rel.endswith(".txt"):  # query_info.txt
        lines = raw.split(b"\r\n")[:-1]
        i = int(rng.integers(0, len(lines)))
        tokens = lines[i].split(b" ")
        if op == "cut_query":
            lines[i] = b" ".join(tokens[: int(rng.integers(0, len(tokens)))])
        elif op == "repeat_query":
            lines.insert(int(rng.integers(0, len(lines) + 1)), lines[i])
        elif op in ("nan_box", "negative_box"):
            k = int(rng.integers(1, 5))
            tokens[k] = b"nan" if op == "nan_box" else b"-" + tokens[min(k, 3) + (k < 3)]
            lines[i] = b" ".join(tokens)
        elif op == "non_utf8":
            lines[i] = lines[i][:-3] + b"\xff" + lines[i][-2:]
        else:  # rename_variable: not a MAT file; a header line instead
            lines.insert(0, b"pid x y w h frame")
        _replace(path, b"".join(line + b"\r\n" for line in lines))
        return
    data = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    (variable,) = data
    if op == "rename_variable":
        _resave(path, {variable + "_": data[variable]})
    elif op in ("nan_box", "negative_box", "cut_query"):
        rows = data[variable]
        if rows.dtype.kind == "f":  # a PRW annotation matrix [id, x, y, w, h]
            r = int(rng.integers(0, len(rows)))
            if op == "nan_box":
                rows[r, int(rng.integers(1, 5))] = np.nan
            elif op == "negative_box":
                rows[r, int(rng.integers(3, 5))] = -abs(rows[r, 3]) - 1
            else:  # cut short: rows of 4 numbers
                data[variable] = rows[:, :4]
        else:
            found: list = []
            _boxes(rows, found)
            if not found:
                return
            record = found[int(rng.integers(0, len(found)))]
            box = np.array(record["idlocate"], dtype=np.float64)
            if op == "nan_box":
                box[0, int(rng.integers(0, 4))] = np.nan
            elif op == "negative_box":
                box[0, int(rng.integers(2, 4))] = -3.0
            else:  # cut short: a box of 3 numbers in place of 4
                box = box[:, :3]
            record["idlocate"] = box
        _resave(path, data)
    elif op == "repeat_query":
        top = data[variable]
        flat = top.reshape(-1)
        i = int(rng.integers(0, len(flat)))
        _resave(path, {variable: np.concatenate([flat, flat[i : i + 1]]).reshape(1, -1)})
    elif op == "non_utf8":
        _resave(path, data, compress=False)
        with open(path, "rb") as f:
            raw = bytearray(f.read())
        matches = list(re.finditer(_NAME[fmt], raw))
        if not matches:
            return
        raw[matches[int(rng.integers(0, len(matches)))].start()] = 0xFF
        _replace(path, bytes(raw))


def _signature(protocol) -> list:
    out = [protocol.gallery_image_ids, protocol.gallery_camera_ids.tolist()]
    out += [(q.image_id, q.box.tolist(), q.person_id, q.camera_id) for q in protocol.queries]
    for name in sorted(protocol.variant_loaders):
        v = protocol.variant(name)
        out.append((name, v.query_indices.tolist(), v.cross_camera))
        out.append(None if v.galleries is None else [g.tolist() for g in v.galleries])
        out.append([(i.tolist(), b.tolist()) for i, b in v.positives])
    return out


def _load(fmt: str, root: str, split: str, drop: bool):
    loaders = {
        ("cuhk_sysu", "train"): load_cuhk_sysu_train,
        ("cuhk_sysu", "test"): load_cuhk_sysu_test,
        ("prw", "train"): load_prw_train,
        ("prw", "test"): load_prw_test,
    }
    dicts, fact, summary = loaders[fmt, split](root, drop_negative_boxes=drop)
    comparable = [
        {k: v for k, v in d.items() if k != "file_name"} for d in dicts
    ]  # file names hold the tree's root
    fact = fact if isinstance(fact, int) else _signature(fact)
    summary_fields = dict(summary.__dict__, dataset=None)
    summary_fields["notes"] = [n.replace(root, "<root>") for n in summary.notes]
    return (comparable, fact), summary_fields


@pytest.fixture(scope="module")
def clean(toy_cuhk, toy_prw):
    roots = {"cuhk_sysu": toy_cuhk[0], "prw": toy_prw[0]}
    return roots, {
        (fmt, split, drop): _load(fmt, roots[fmt], split, drop)
        for fmt in roots
        for split in ("train", "test")
        for drop in (False, True)
    }


def _case(seed: int, roots: dict) -> tuple[str, str, str, tuple[str, ...], bool]:
    rng = np.random.default_rng(seed)
    fmt = ("cuhk_sysu", "prw")[seed % 2]
    files = dict(_CUHK_FILES if fmt == "cuhk_sysu" else _PRW_FILES)
    root = roots[fmt]
    both = ("train", "test")
    if fmt == "prw":
        frames = sorted(os.listdir(os.path.join(root, "annotations")))
        frame = frames[int(rng.integers(0, len(frames)))]
        matrix_ops = (*_FILE_OPS, "rename_variable", "nan_box", "negative_box", "cut_query")
        files[f"annotations/{frame}"] = (both, matrix_ops)
        files[f"frames/{frame[: -len('.mat')]}"] = (both, _FILE_OPS)
    else:
        images = sorted(os.listdir(os.path.join(root, "Image", "SSM")))
        files[f"Image/SSM/{images[int(rng.integers(0, len(images)))]}"] = (both, _FILE_OPS)
    rel = sorted(files)[int(rng.integers(0, len(files)))]
    splits, ops = files[rel]
    return fmt, rel, ops[int(rng.integers(0, len(ops)))], splits, bool(rng.integers(0, 2))


@pytest.mark.parametrize("seed", range(CASES))
def test_corruption_is_reported_or_named(seed, clean, tmp_path):
    roots, reference = clean
    fmt, rel, op, splits, drop = _case(seed, roots)
    root = str(tmp_path / fmt)
    shutil.copytree(roots[fmt], root, copy_function=os.link)
    _corrupt(root, rel, op, np.random.default_rng(seed + 1000), fmt)
    for split in splits:
        try:
            result, summary = _load(fmt, root, split, drop)
        except (ValueError, FileNotFoundError) as e:
            assert os.path.basename(rel) in str(e), f"{op} of {rel}: error names another file: {e}"
            continue
        except Exception as e:  # noqa: BLE001  (the point: nothing else may escape)
            pytest.fail(f"{op} of {rel} ({split}): {type(e).__name__} escaped: {e}")
        clean_result, clean_summary = reference[fmt, split, drop]
        if result != clean_result:
            assert summary != clean_summary, f"{op} of {rel} ({split}): silent change"


def test_the_cases_cover_every_operation_and_file(clean):
    roots, _ = clean
    cases = [_case(seed, roots) for seed in range(CASES)]
    assert {op for _, _, op, _, _ in cases} == set(_OPS)
    assert set(_CUHK_FILES) | set(_PRW_FILES) <= {rel for _, rel, _, _, _ in cases}
    assert any(rel.startswith("annotations/") for _, rel, _, _, _ in cases)
    assert any(rel.endswith(".jpg") for _, rel, _, _, _ in cases)
    assert {fmt for fmt, *_ in cases} == {"cuhk_sysu", "prw"}
