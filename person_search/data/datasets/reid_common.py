"""Shared pieces of the re-id dataset loaders: folder lookup, name parsing, masks, relabelling.

Every loader returns Detectron2 dataset dicts of the form (``datasets/README.md``, re-id)::

    {"file_name": abs path, "image_id": file name, "person_id": int, "camera_id": int,
     "split": "train" | "query" | "gallery", optional "parsing_file": abs path}

Parsing masks are optional. For an image ``<dataset dir>/<rel dir>/<stem>.<ext>`` the mask is
``<dataset dir>/parsing/<rel dir>/<stem>.png`` (one PNG of raw parser class indices). Every image
of a split folder with a parsing counterpart (e.g. ``parsing/query/``) gets that path as
``"parsing_file"``, whether the file exists or not: whether a missing one is an error depends on
the config (``INPUT.REID.ALLOW_MISSING_PARSING``) and is checked by the re-id train loader and the
mapper (:mod:`person_search.data.reid_mapper`); a split without one gets no ``"parsing_file"``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .matfile import note_read

__all__ = [
    "IMAGE_EXTENSIONS",
    "PARSING_DIR",
    "ExpectedSizes",
    "attach_parsing_files",
    "check_sizes",
    "dataset_root",
    "find_dataset_dir",
    "list_images",
    "parse_market_name",
    "relabel_train",
    "require_dir",
]

logger = logging.getLogger(__name__)

# File extensions read as images (Occluded-REID ships .tif, the others .jpg).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Sibling folder, inside a dataset's folder, holding the parsing masks.
PARSING_DIR = "parsing"
# Market-1501 / DukeMTMC-reID names: "0001_c1s1_001051_00.jpg", "-1_c3s2_...",
# "0001_c2_f0046182.jpg".
_MARKET_NAME = re.compile(r"^(-1|\d+)_c(\d+)")


def dataset_root() -> str:
    """Root of all datasets: ``$DETECTRON2_DATASETS`` or ``./datasets``."""
    return os.environ.get("DETECTRON2_DATASETS", "datasets")


def find_dataset_dir(root: str, candidates: Sequence[str], dataset: str) -> str:
    """First existing ``root/<candidate>`` folder; a clear error listing all tried otherwise."""
    for name in candidates:
        path = os.path.join(root, name)
        if os.path.isdir(path):
            return os.path.abspath(path)
    tried = ", ".join(os.path.join(root, name) for name in candidates)
    raise FileNotFoundError(
        f"{dataset}: dataset folder not found; tried {tried}. "
        "Set $DETECTRON2_DATASETS or see datasets/README.md."
    )


def require_dir(path: str, dataset: str) -> str:
    """``path`` if it is a folder, else a clear error."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{dataset}: expected folder {path} is missing")
    return path


def list_images(folder: str, *, recursive: bool = False) -> list[str]:
    """Sorted absolute paths of the image files in ``folder`` (and its sub-folders if asked).
    The folders listed are reported to :func:`.matfile.track_reads`."""
    found = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder):
            note_read(dirpath)
            dirnames.sort()
            found.extend(
                os.path.join(dirpath, f) for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS)
            )
    else:
        note_read(folder)
        found = [
            os.path.join(folder, f)
            for f in os.listdir(folder)
            if f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return sorted(os.path.abspath(p) for p in found)


def parse_market_name(path: str) -> tuple[int, int]:
    """(person id, camera id) from a Market-1501 / DukeMTMC-reID file name.

    Raises:
        ValueError: naming the file when it does not start with ``<pid>_c<camera>``.
    """
    match = _MARKET_NAME.match(os.path.basename(path))
    if match is None:
        raise ValueError(
            f"cannot parse person id and camera from {path!r}: expected a name like "
            "'0001_c1s1_001051_00.jpg' or '0001_c2_f0046182.jpg'"
        )
    return int(match.group(1)), int(match.group(2))


def attach_parsing_files(
    dicts: list[dict], dataset_dir: str, split_dirs: Iterable[str], dataset: str
) -> None:
    """Add ``"parsing_file"`` (the mirrored mask path) to the dicts of every split folder that
    has a parsing counterpart; whether each file exists is checked where the config is known
    (:func:`person_search.data.reid_mapper.check_parsing_files`).

    Args:
        dicts: dataset dicts whose ``file_name`` lies under ``dataset_dir``; changed in place.
        dataset_dir: the dataset's folder.
        split_dirs: the image folders (relative to ``dataset_dir``) the dicts come from.
        dataset: name used in the log line counting missing masks.
    """
    with_masks = {
        os.path.normpath(d)
        for d in split_dirs
        if os.path.isdir(os.path.join(dataset_dir, PARSING_DIR, d))
    }
    if not with_masks:
        return
    missing = 0
    for record in dicts:
        rel = os.path.relpath(record["file_name"], dataset_dir)
        split_dir = next((d for d in with_masks if rel.startswith(d + os.sep)), None)
        if split_dir is None:
            continue
        mask = os.path.join(dataset_dir, PARSING_DIR, os.path.splitext(rel)[0] + ".png")
        missing += not os.path.isfile(mask)
        record["parsing_file"] = mask
    if missing:
        logger.warning("%s: %d images have no parsing mask in %s", dataset, missing, PARSING_DIR)


def relabel_train(dicts: list[dict]) -> int:
    """Relabel ``person_id`` of training dicts to 0..N-1 by sorted original id (in place).

    The original id is kept under ``"original_person_id"``. Returns N.
    """
    original = sorted({d["person_id"] for d in dicts})
    mapping = {pid: label for label, pid in enumerate(original)}
    for d in dicts:
        d["original_person_id"] = d["person_id"]
        d["person_id"] = mapping[d["person_id"]]
    return len(original)


@dataclass(frozen=True)
class ExpectedSizes:
    """Image counts of a real release after junk removal (``None``: split absent/unchecked)."""

    train: int | None
    query: int
    gallery: int
    train_ids: int | None = None


def check_sizes(dicts: list[dict], expected: ExpectedSizes, dataset: str) -> None:
    """Raise if the loaded split sizes differ from those of the official release."""
    found = {
        split: sum(1 for d in dicts if d["split"] == split)
        for split in ("train", "query", "gallery")
    }
    wanted = {"train": expected.train, "query": expected.query, "gallery": expected.gallery}
    bad = {k: (found[k], v) for k, v in wanted.items() if v is not None and found[k] != v}
    if expected.train_ids is not None:
        n_ids = len({d["person_id"] for d in dicts if d["split"] == "train"})
        if n_ids != expected.train_ids:
            bad["train ids"] = (n_ids, expected.train_ids)
    if bad:
        detail = ", ".join(f"{k}: found {f}, expected {e}" for k, (f, e) in bad.items())
        raise RuntimeError(
            f"{dataset}: split sizes differ from the official release ({detail}); the copy is "
            "incomplete or not the release this loader knows (see datasets/README.md)"
        )
