"""Loaders and registration of the re-id datasets, each read in its release's own layout.

Registered names (root ``$DETECTRON2_DATASETS``, read when a dataset is loaded), with the
official sizes after junk removal, asserted on load (train images and ids; query; gallery):

* ``market1501_train/test``: Market-1501 (Zheng et al., "Scalable Person Re-identification: A
  Benchmark", ICCV 2015; http://www.liangzheng.com.cn/Project/project_reid.html).
  12,936 (751 ids); 3,368; 15,913 (2,798 distractors of id 0 included).
* ``dukemtmc_train/test``: DukeMTMC-reID (Ristani et al., ECCVW 2016; Zheng et al., ICCV 2017;
  https://github.com/layumi/DukeMTMC-reID_evaluation). 16,522 (702 ids); 2,228; 17,661.
* ``occluded_dukemtmc_train/test``: Occluded-DukeMTMC (Miao et al., "Pose-Guided Feature
  Alignment for Occluded Person Re-Identification", ICCV 2019;
  https://github.com/lightas/Occluded-DukeMTMC-Dataset). 15,618 (702 ids); 2,210; 17,661.
* ``p_dukemtmc_train/test``: P-DukeMTMC-reID (Zhuo et al., "Occluded Person
  Re-identification", ICME 2018). 12,927 (665 ids); 2,163 occluded; 9,053 whole-body.
* ``occluded_reid_test``: Occluded-REID (Zhuo et al., ICME 2018), test only: 1,000 occluded;
  1,000 whole-body (200 ids x 5 + 5).
* ``partial_reid_test``: Partial-REID (Zheng et al., "Partial Person Re-identification", ICCV
  2015), test only: 300 partial; 300 whole-body (60 ids x 5 + 5).
* ``toy_market1501_train/test``: the synthetic toy set (Market-1501 layout; sizes not checked).

``*_train`` holds the training dicts (``person_id`` relabelled 0..N-1 by sorted original id),
``*_test`` the query dicts followed by the gallery dicts (original ids, ``"split"`` tells them
apart). Junk images (id -1) are dropped and counted in the load summary; Market-1501's
distractors (id 0) stay in the gallery. Every split's metadata has ``evaluator_type="reid"``;
``num_person_ids`` of a train split comes from :func:`.facts.get_num_person_ids` (static for the
real releases, set at registration from their official size). Re-id crops have no boxes: the
bad-box policy of :mod:`.load_checks` does not apply. Folder names, naming rules and our
assumptions are listed in ``datasets/README.md``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from detectron2.data import MetadataCatalog

from .facts import LoadedSplit, register_split
from .load_checks import LoadSummary
from .reid_common import (
    ExpectedSizes,
    attach_parsing_files,
    check_sizes,
    dataset_root,
    find_dataset_dir,
    list_images,
    parse_market_name,
    relabel_train,
    require_dir,
)

__all__ = [
    "REID_DATASETS",
    "ReIDDatasetSpec",
    "load_grouped_reid",
    "load_market_style",
    "load_p_dukemtmc",
    "register_reid_dataset",
]

# Camera ids given to the two halves of the datasets without cameras (Occluded-REID, Partial-REID,
# P-DukeMTMC-reID): occluded/partial images and whole-body images never share a camera, so the
# same-id-same-camera removal of the evaluation drops nothing (as in the published loaders).
OCCLUDED_CAMERA_ID = 0
WHOLE_CAMERA_ID = 1
# Leading identity number of a file name in the grouped datasets ("001_01.tif", "0005_c2_f..jpg").
_LEADING_ID = re.compile(r"^(\d+)(?=[_.\-])")


# Reason junk crops are left out, as counted in the load summary.
DROP_JUNK = "junk crops (id -1): neither a match nor a distractor"


def _market_split(
    folder: str, split: str, dataset: str, summary: LoadSummary | None = None
) -> list[dict]:
    paths = list_images(folder)
    if not paths:
        raise FileNotFoundError(f"{dataset}: no images found in {folder}")
    records = []
    for path in paths:
        pid, camid = parse_market_name(path)
        if pid == -1:  # junk: neither a match nor a distractor, removed from the protocol
            if summary is not None:
                summary.drop(DROP_JUNK, 1)
            continue
        records.append(
            {
                "file_name": path,
                "image_id": os.path.basename(path),
                "person_id": pid,
                "camera_id": camid,
                "split": split,
            }
        )
    return records


def load_market_style(
    dataset_dir: str,
    split: str,
    dataset: str,
    *,
    expected: ExpectedSizes | None = None,
    summary: LoadSummary | None = None,
) -> list[dict]:
    """Load a Market-1501-layout dataset (Market-1501, DukeMTMC-reID, Occluded-DukeMTMC, toy).

    Args:
        dataset_dir: folder holding ``bounding_box_train/``, ``query/``, ``bounding_box_test/``.
        split: "train" (``bounding_box_train``) or "test" (``query`` then ``bounding_box_test``).
        dataset: name used in messages.
        expected: official sizes to assert, or None (toy data, subsets).
        summary: counts the junk crops left out.
    """
    folders = {"train": ("bounding_box_train",), "test": ("query", "bounding_box_test")}
    if split not in folders:
        raise ValueError(f"{dataset}: split must be 'train' or 'test', got {split!r}")
    dicts: list[dict] = []
    for folder, name in zip(
        folders[split], ("train",) if split == "train" else ("query", "gallery")
    ):
        folder_path = require_dir(os.path.join(dataset_dir, folder), dataset)
        dicts.extend(_market_split(folder_path, name, dataset, summary))
    if split == "train":
        relabel_train(dicts)
    attach_parsing_files(dicts, dataset_dir, folders[split], dataset)
    if expected is not None:
        _check_split(dicts, expected, split, dataset)
    return dicts


def _grouped_id(path: str, base: str) -> int:
    """Identity of an image in an identity-grouped folder (sub-folder name, else name prefix)."""
    rel = os.path.relpath(path, base)
    parts = rel.split(os.sep)
    name_match = _LEADING_ID.match(parts[-1])
    if len(parts) >= 2:
        if not parts[-2].isdigit():
            raise ValueError(
                f"cannot parse the person id of {path!r}: folder {parts[-2]!r} is not a number"
            )
        pid = int(parts[-2])
        if name_match is not None and int(name_match.group(1)) != pid:
            raise ValueError(f"{path!r}: file name id {name_match.group(1)} != folder id {pid}")
        return pid
    if name_match is None:
        raise ValueError(
            f"cannot parse the person id of {path!r}: expected a per-identity folder or a name "
            "starting with the id (e.g. '001_01.jpg')"
        )
    return int(name_match.group(1))


def _grouped_split(folder: str, split: str, camera_id: int, dataset: str) -> list[dict]:
    require_dir(folder, dataset)
    records = []
    for path in list_images(folder, recursive=True):
        records.append(
            {
                "file_name": path,
                "image_id": os.path.basename(path),
                "person_id": _grouped_id(path, folder),
                "camera_id": camera_id,
                "split": split,
            }
        )
    if not records:
        raise FileNotFoundError(f"{dataset}: no images found under {folder}")
    return records


def load_grouped_reid(
    dataset_dir: str,
    query_folder: str,
    dataset: str,
    *,
    gallery_folder: str = "whole_body_images",
    expected: ExpectedSizes | None = None,
) -> list[dict]:
    """Load a test-only dataset: occluded/partial queries vs whole-body gallery.

    Images are either in per-identity sub-folders (``<folder>/<pid>/<name>``, Occluded-REID) or
    flat with the id as name prefix (``<folder>/<pid>_<n>.jpg``, Partial-REID). Queries get camera
    ``OCCLUDED_CAMERA_ID``, gallery images ``WHOLE_CAMERA_ID``.
    """
    dicts = _grouped_split(
        os.path.join(dataset_dir, query_folder), "query", OCCLUDED_CAMERA_ID, dataset
    )
    dicts += _grouped_split(
        os.path.join(dataset_dir, gallery_folder), "gallery", WHOLE_CAMERA_ID, dataset
    )
    attach_parsing_files(dicts, dataset_dir, (query_folder, gallery_folder), dataset)
    if expected is not None:
        _check_split(dicts, expected, "test", dataset)
    return dicts


def load_p_dukemtmc(
    dataset_dir: str, split: str, dataset: str, *, expected: ExpectedSizes | None = None
) -> list[dict]:
    """Load P-DukeMTMC-reID: ``{train,test}/{whole_body_images,occluded_body_images}/<pid>/*``.

    Train holds both halves (ids relabelled jointly); test queries are the occluded images,
    the gallery the whole-body ones.
    """
    occluded, whole = "occluded_body_images", "whole_body_images"
    if split == "train":
        folders = (os.path.join("train", whole), os.path.join("train", occluded))
        dicts = _grouped_split(
            os.path.join(dataset_dir, folders[0]), "train", WHOLE_CAMERA_ID, dataset
        )
        dicts += _grouped_split(
            os.path.join(dataset_dir, folders[1]), "train", OCCLUDED_CAMERA_ID, dataset
        )
        relabel_train(dicts)
    elif split == "test":
        folders = (os.path.join("test", occluded), os.path.join("test", whole))
        dicts = _grouped_split(
            os.path.join(dataset_dir, folders[0]), "query", OCCLUDED_CAMERA_ID, dataset
        )
        dicts += _grouped_split(
            os.path.join(dataset_dir, folders[1]), "gallery", WHOLE_CAMERA_ID, dataset
        )
    else:
        raise ValueError(f"{dataset}: split must be 'train' or 'test', got {split!r}")
    attach_parsing_files(dicts, dataset_dir, folders, dataset)
    if expected is not None:
        _check_split(dicts, expected, split, dataset)
    return dicts


def _check_split(dicts: list[dict], expected: ExpectedSizes, split: str, dataset: str) -> None:
    if split == "train":
        wanted = ExpectedSizes(
            train=expected.train, query=None, gallery=None, train_ids=expected.train_ids
        )
    else:
        wanted = ExpectedSizes(train=None, query=expected.query, gallery=expected.gallery)
    check_sizes(dicts, wanted, dataset)


@dataclass(frozen=True)
class ReIDDatasetSpec:
    """How to find and read one re-id dataset.

    Attributes:
        name: registered name prefix (``<name>_train``, ``<name>_test``).
        folders: candidate folder names under the root, first existing wins.
        kind: "market" (Market-1501 layout), "p_duke" or "grouped" (test only).
        expected: official sizes (None: not checked, e.g. toy data).
        query_folder: query folder of a "grouped" dataset.
    """

    name: str
    folders: tuple[str, ...]
    kind: str
    expected: ExpectedSizes | None
    query_folder: str = "occluded_body_images"

    @property
    def splits(self) -> tuple[str, ...]:
        return ("test",) if self.kind == "grouped" else ("train", "test")

    def load(
        self, split: str, root: str | None = None, summary: LoadSummary | None = None
    ) -> list[dict]:
        """Dataset dicts of ``split`` ("train"/"test"), reading from ``root`` (default env);
        ``summary`` counts what is left out."""
        dataset = f"{self.name}_{split}"
        path = find_dataset_dir(root if root is not None else dataset_root(), self.folders, dataset)
        if self.kind == "market":
            return load_market_style(path, split, dataset, expected=self.expected, summary=summary)
        if self.kind == "p_duke":
            return load_p_dukemtmc(path, split, dataset, expected=self.expected)
        if self.kind == "grouped":
            if split != "test":
                raise ValueError(f"{self.name} has only a test split, asked for {split!r}")
            return load_grouped_reid(path, self.query_folder, dataset, expected=self.expected)
        raise ValueError(f"{self.name}: unknown dataset kind {self.kind!r}")


REID_DATASETS: tuple[ReIDDatasetSpec, ...] = (
    ReIDDatasetSpec(
        "market1501",
        ("market1501/Market-1501-v15.09.15", "Market-1501-v15.09.15", "market1501", "Market-1501"),
        "market",
        ExpectedSizes(train=12936, query=3368, gallery=15913, train_ids=751),
    ),
    ReIDDatasetSpec(
        "dukemtmc",
        ("dukemtmc-reid/DukeMTMC-reID", "DukeMTMC-reID", "dukemtmc-reid", "dukemtmc"),
        "market",
        ExpectedSizes(train=16522, query=2228, gallery=17661, train_ids=702),
    ),
    ReIDDatasetSpec(
        "occluded_dukemtmc",
        ("Occluded_Duke", "occluded_dukemtmc", "Occluded-DukeMTMC"),
        "market",
        ExpectedSizes(train=15618, query=2210, gallery=17661, train_ids=702),
    ),
    ReIDDatasetSpec(
        "p_dukemtmc",
        ("P-DukeMTMC-reid", "P-DukeMTMC-reID", "p_dukemtmc"),
        "p_duke",
        ExpectedSizes(train=12927, query=2163, gallery=9053, train_ids=665),
    ),
    ReIDDatasetSpec(
        "occluded_reid",
        ("Occluded_REID", "OccludedREID", "Occluded-REID", "occluded_reid"),
        "grouped",
        ExpectedSizes(train=None, query=1000, gallery=1000),
    ),
    ReIDDatasetSpec(
        "partial_reid",
        ("Partial_REID", "Partial-REID_Dataset", "Partial-REID", "PartialREID", "partial_reid"),
        "grouped",
        ExpectedSizes(train=None, query=300, gallery=300),
        query_folder="partial_body_images",
    ),
    ReIDDatasetSpec("toy_market1501", ("toy_market1501",), "market", None),
)


def _loader(spec: ReIDDatasetSpec, split: str, root: str | None) -> Callable[[], LoadedSplit]:
    def load() -> LoadedSplit:
        where = root if root is not None else dataset_root()
        summary = LoadSummary(f"{spec.name}_{split} under {where}")
        dicts = spec.load(split, root, summary)
        ids = {d["person_id"] for d in dicts}
        summary.images = summary.boxes = len(dicts)
        summary.identities = len({i for i in ids if i >= 0})
        if split != "train":
            summary.queries = sum(d["split"] == "query" for d in dicts)
        return LoadedSplit(dicts, summary, num_person_ids=len(ids) if split == "train" else None)

    return load


def register_reid_dataset(spec: ReIDDatasetSpec, root: str | None = None) -> Sequence[str]:
    """Register ``spec``'s splits (root None: ``$DETECTRON2_DATASETS`` at load time).

    A train split's ``num_person_ids`` is static for real releases (their official size, set
    here) and otherwise counted when first asked for (:func:`.facts.get_num_person_ids`); every
    split's metadata has ``evaluator_type="reid"``.
    """
    names = []
    for split in spec.splits:
        name = f"{spec.name}_{split}"
        facts = ("num_person_ids", "load_summary") if split == "train" else ("load_summary",)

        def key(root: str | None = root) -> str:
            return os.path.abspath(root if root is not None else dataset_root())

        register_split(name, _loader(spec, split, root), key=key, facts=facts)
        meta = MetadataCatalog.get(name)
        meta.set(evaluator_type="reid", reid_split=split)
        if split == "train" and spec.expected is not None and spec.expected.train_ids is not None:
            meta.set(num_person_ids=spec.expected.train_ids)
        names.append(name)
    return names


for _spec in REID_DATASETS:
    register_reid_dataset(_spec)
