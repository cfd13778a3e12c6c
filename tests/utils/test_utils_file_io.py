"""atomic_write: the target is either the old file or the complete new one, never partial;
write_png builds on it."""

import os

import numpy as np
import pytest
from PIL import Image

from person_search.utils.file_io import atomic_write, write_png


def test_writes_text_and_bytes_creating_folders(tmp_path):
    text_path = tmp_path / "a" / "b" / "report.md"
    atomic_write(str(text_path), lambda f: f.write("hello"), mode="w")
    assert text_path.read_text() == "hello"
    binary_path = tmp_path / "blob.bin"
    atomic_write(str(binary_path), lambda f: f.write(b"\x00\x01"), mode="wb")
    assert binary_path.read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path)) == ["a", "blob.bin"]  # no temporary file left


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")

    def half_then_fail(f):
        f.write("new, but only half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(str(path), half_then_fail, mode="w")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]


def test_relative_path_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atomic_write("plain.txt", lambda f: f.write("x"), mode="w")
    assert (tmp_path / "plain.txt").read_text() == "x"


def test_write_png_round_trips_rgb(tmp_path):
    image = np.zeros((3, 4, 3), dtype=np.uint8)
    image[0, 0] = (255, 0, 0)  # red stays red (RGB in, PNG out)
    image[2, 3] = (0, 0, 255)
    path = tmp_path / "sub" / "x.png"
    write_png(str(path), image)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), image)
    assert os.listdir(path.parent) == ["x.png"]  # no temporary left
