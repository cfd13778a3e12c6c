"""PRW (Person Re-identification in the Wild), read from its original annotation files.

Zheng, Zhang, Sun, Chandraker, Yang, Tian: "Person Re-identification in the Wild", CVPR 2017.
https://github.com/liangzheng06/PRW-baseline

Layout under ``root``::

    frames/c<cam>s<seq>_<frame>.jpg           11,816 frames from 6 cameras
    annotations/<frame>.jpg.mat               rows [id, x, y, w, h] in variable ``box_new``
                                              (some files: ``anno_file`` / ``anno_previous``);
                                              id -2 = unlabelled person
    frame_train.mat    img_index_train        5,704 frame names (no extension)
    frame_test.mat     img_index_test         6,112 frame names
    query_info.txt                            2,057 lines "pid x y w h frame_name" (CRLF or LF)

Sizes asserted with ``strict_sizes`` (the real dataset): train 5,704 frames / 18,048 boxes /
483 identities, test 6,112 frames / 25,062 boxes, 2,057 queries.

Boxes are x, y, w, h: checked with the bad-box policy of :mod:`.load_checks` (zero width or
height: dropped and counted; negative size or non-finite: an error naming file, row and values),
converted once to ``XYXY_ABS`` with x2 = x + w, then negative coordinates (a few in the real
files) are clipped to 0; boxes left without area are dropped and counted. A dropped box holding a
query's identity is named in the load summary (that frame is one positive less). Train
``person_id``: the original ids sorted and relabelled to 0..N-1 (N from the data: 483 real ids,
1..478, 480..483 and 932); unlabelled -1. Test ``person_id``: the original id (-1 unlabelled).
Camera id: the number after ``c`` in the frame name.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import numpy as np
from detectron2.structures import BoxMode

from ..search_protocol import QueryGalleries, SearchProtocol, SearchQuery
from .load_checks import (
    DROP_NEGATIVE,
    DROP_OUTSIDE,
    DROP_ZERO_AREA,
    NAMED_EXAMPLES,
    LoadSummary,
    PersonSearchTestSplit,
    PersonSearchTrainSplit,
    check_annotation_boxes,
)
from .matfile import AnnotationError, image_size, load_mat, note_read, to_strings, xywh_to_xyxy
from .options import data_options

__all__ = [
    "PRW_BOX_VARIABLES",
    "PRW_SIZES",
    "load_prw_test",
    "load_prw_train",
    "prw_camera_id",
    "read_prw_boxes",
]

# Sizes of the real dataset, asserted when strict_sizes=True.
PRW_SIZES = {
    "train_frames": 5704,
    "train_boxes": 18048,
    "train_ids": 483,
    "test_frames": 6112,
    "test_boxes": 25062,
    "queries": 2057,
}
# Names the per-frame box matrix goes by, in the order they are tried.
PRW_BOX_VARIABLES: tuple[str, ...] = ("box_new", "anno_file", "anno_previous")
# PRW's id for a person without identity label; mapped to our -1.
_PRW_UNLABELLED = -2
_UNLABELLED = -1
_FRAME_NAME = re.compile(r"^c(\d+)s\d+_\d+$")
_BOX_COLUMNS = 5  # id, x, y, w, h
_QUERY_FIELDS = 6  # pid, x, y, w, h, frame name
_SPLITS = {
    "train": ("frame_train.mat", "img_index_train"),
    "test": ("frame_test.mat", "img_index_test"),
}


class _Dropped(NamedTuple):
    """An annotation row the loader dropped."""

    image_id: str
    row: int  # 1-based row of the annotation matrix
    person_id: int  # original id, -1 unlabelled
    reason: str


def prw_camera_id(frame_name: str) -> int:
    """Camera of a PRW frame: ``"c3s2_012345"`` (with or without ``.jpg``) -> 3."""
    stem = frame_name[: -len(".jpg")] if frame_name.endswith(".jpg") else frame_name
    match = _FRAME_NAME.match(stem)
    if match is None:
        raise AnnotationError(f"PRW frame name {frame_name!r} is not of the form c<cam>s<seq>_<n>")
    return int(match.group(1))


def _check_size(strict: bool, what: str, got: int) -> None:
    if strict and got != PRW_SIZES[what]:
        raise AnnotationError(
            f"PRW: expected {PRW_SIZES[what]} {what}, found {got} "
            "(incomplete or modified dataset; the toy dataset loads with strict_sizes=False)"
        )


def _read_frame_list(root: str, split: str) -> list[str]:
    """Frame image ids (``c1s1_000151.jpg``) of a split, in file order."""
    file_name, variable = _SPLITS[split]
    path = os.path.join(root, file_name)
    names = to_strings(load_mat(path, [variable])[variable], f"{path}: {variable}")
    image_ids = [name if name.endswith(".jpg") else name + ".jpg" for name in names]
    if len(set(image_ids)) != len(image_ids):
        raise AnnotationError(f"{path}: {variable} lists a frame twice")
    for image_id in image_ids:
        try:
            prw_camera_id(image_id)
        except AnnotationError as e:
            raise AnnotationError(f"{path}: {variable}: {e}") from e
    return image_ids


def _read_rows(path: str) -> tuple[str, np.ndarray, np.ndarray]:
    """(variable, (N,) int64 original ids with -1 for unlabelled, (N, 4) x, y, w, h) of one
    ``annotations/<frame>.jpg.mat``."""
    data = load_mat(path, PRW_BOX_VARIABLES, any_of=True)
    variable = next(name for name in PRW_BOX_VARIABLES if name in data)
    rows = np.asarray(data[variable])
    if rows.size == 0:
        return variable, np.zeros((0,), dtype=np.int64), np.zeros((0, 4), dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != _BOX_COLUMNS or rows.dtype.kind not in "iuf":
        raise AnnotationError(
            f"{path}: {variable} must be an (N, 5) numeric matrix [id, x, y, w, h], "
            f"got shape {rows.shape} dtype {rows.dtype}"
        )
    rows = rows.astype(np.float64)
    ids = np.nan_to_num(rows[:, 0], nan=-3.0).astype(np.int64)
    if not np.array_equal(ids, rows[:, 0]) or np.any((ids < 0) & (ids != _PRW_UNLABELLED)):
        raise AnnotationError(
            f"{path}: {variable} ids must be integers >= 0 or {_PRW_UNLABELLED}, "
            f"got {sorted(set(rows[:, 0].tolist()))}"
        )
    ids[ids == _PRW_UNLABELLED] = _UNLABELLED
    return variable, ids, rows[:, 1:]


def _boxes_with_policy(
    path: str, summary: LoadSummary, drop_negative: bool
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, str]]]:
    """Read one annotation file and apply the bad-box policy: (ids, XYXY_ABS boxes, dropped
    rows as (1-based row, original id, reason))."""
    variable, ids, xywh = _read_rows(path)
    keep = check_annotation_boxes(
        xywh, lambda i: f"{path}: {variable} row {i + 1}", summary, drop_negative=drop_negative
    )
    reasons = np.where((xywh[:, 2] < 0) | (xywh[:, 3] < 0), DROP_NEGATIVE, DROP_ZERO_AREA)
    unclipped = xywh_to_xyxy(xywh)
    boxes = np.clip(unclipped, 0.0, None)
    outside = keep & ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
    summary.drop(DROP_OUTSIDE, int(outside.sum()))
    reasons = np.where(outside, DROP_OUTSIDE, reasons)
    keep &= ~outside
    summary.clipped += int((keep & (boxes != unclipped).any(axis=1)).sum())
    dropped = [(int(i) + 1, int(ids[i]), str(reasons[i])) for i in np.flatnonzero(~keep)]
    return ids[keep], boxes[keep], dropped


def read_prw_boxes(
    path: str, *, summary: LoadSummary | None = None, drop_negative: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Read one ``annotations/<frame>.jpg.mat``.

    Args:
        summary: counts the dropped boxes (a throwaway one when None).
        drop_negative: drop boxes of negative width or height instead of raising.

    Returns:
        ids: (N,) int64 original ids, -1 for unlabelled (PRW's -2).
        boxes: (N, 4) float64 ``XYXY_ABS``, negatives clipped to 0, bad boxes dropped as the
        policy of :mod:`.load_checks` says.
    """
    summary = summary if summary is not None else LoadSummary(path)
    ids, boxes, _ = _boxes_with_policy(path, summary, drop_negative)
    return ids, boxes


def _load_frames(
    root: str, split: str, summary: LoadSummary, drop_negative: bool
) -> tuple[list[dict], list[np.ndarray], list[_Dropped]]:
    """Dataset dicts, original ids per frame, and the dropped annotation rows."""
    dicts, ids_per_frame, dropped = [], [], []
    for image_id in _read_frame_list(root, split):
        file_name = os.path.join(root, "frames", image_id)
        path = os.path.join(root, "annotations", image_id + ".mat")
        ids, boxes, lost = _boxes_with_policy(path, summary, drop_negative)
        dropped += [_Dropped(image_id, *row) for row in lost]
        height, width = image_size(file_name)
        dicts.append(
            {
                "file_name": file_name,
                "image_id": image_id,
                "height": height,
                "width": width,
                "camera_id": prw_camera_id(image_id),
                "annotations": [
                    {
                        "bbox": [float(v) for v in box],
                        "bbox_mode": BoxMode.XYXY_ABS,
                        "category_id": 0,
                        "person_id": int(pid),
                    }
                    for pid, box in zip(ids, boxes)
                ],
            }
        )
        ids_per_frame.append(ids)
    return dicts, ids_per_frame, dropped


def _summarize(summary: LoadSummary, dicts: list[dict]) -> LoadSummary:
    annotations = [a for d in dicts for a in d["annotations"]]
    summary.images = len(dicts)
    summary.boxes = len(annotations)
    summary.identities = len({a["person_id"] for a in annotations if a["person_id"] >= 0})
    return summary


def load_prw_train(
    root: str, *, strict_sizes: bool = False, drop_negative_boxes: bool | None = None
) -> PersonSearchTrainSplit:
    """Load the PRW training frames.

    Args:
        drop_negative_boxes: see :mod:`.load_checks` (None: the process option, :mod:`.options`).

    Returns:
        dataset dicts (``person_id`` relabelled to 0..N-1 in sorted order of the original ids,
        -1 unlabelled; ``original_person_id`` keeps PRW's id, -1 unlabelled), N, the number
        of labelled training identities, and the load summary.
    """
    if drop_negative_boxes is None:
        drop_negative_boxes = data_options().drop_negative_boxes
    summary = LoadSummary(f"PRW train split at {root}")
    dicts, ids_per_frame, _ = _load_frames(root, "train", summary, drop_negative_boxes)
    all_ids = np.concatenate(ids_per_frame) if ids_per_frame else np.zeros(0, np.int64)
    labelled = np.unique(all_ids[all_ids >= 0])
    _check_size(strict_sizes, "train_frames", len(dicts))
    _check_size(strict_sizes, "train_boxes", len(all_ids))
    _check_size(strict_sizes, "train_ids", len(labelled))
    relabel = {int(orig): new for new, orig in enumerate(labelled.tolist())}
    for record in dicts:
        for anno in record["annotations"]:
            anno["original_person_id"] = anno["person_id"]
            if anno["person_id"] >= 0:
                anno["person_id"] = relabel[anno["person_id"]]
    return PersonSearchTrainSplit(dicts, len(labelled), _summarize(summary, dicts))


def _read_queries(
    root: str, frame_index: dict[str, int], summary: LoadSummary
) -> list[SearchQuery]:
    path = os.path.join(root, "query_info.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PRW query file not found: {path}")
    note_read(path)
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    queries = []
    first_seen: dict[tuple[str, ...], int] = {}
    for line_no, raw in enumerate(raw_lines, start=1):
        where = f"{path}:{line_no}"
        try:
            tokens = raw.decode("utf-8").split()  # split() also strips the CR of CRLF ends
        except UnicodeDecodeError as e:
            raise AnnotationError(f"{where}: not valid UTF-8 text ({e})") from e
        if not tokens:
            continue
        if tuple(tokens) in first_seen:
            summary.note(
                f"{where} repeats line {first_seen[tuple(tokens)]}: the query is evaluated "
                "twice, as listed"
            )
        first_seen.setdefault(tuple(tokens), line_no)
        queries.append(_query(tokens, where, frame_index))
    return queries


def _query(tokens: list[str], where: str, frame_index: dict[str, int]) -> SearchQuery:
    """One line of query_info.txt: ``pid x y w h frame_name``."""
    line = " ".join(tokens)
    if len(tokens) != _QUERY_FIELDS:
        raise AnnotationError(f"{where}: expected 'pid x y w h frame_name', got {line!r}")
    try:
        pid = float(tokens[0])
        xywh = np.asarray([float(t) for t in tokens[1:5]], dtype=np.float64)
    except ValueError as e:
        raise AnnotationError(f"{where}: malformed number in {line!r}") from e
    if not (pid >= 0 and pid == int(pid)):
        raise AnnotationError(f"{where}: the person id must be an integer >= 0, got {line!r}")
    image_id = tokens[5] if tokens[5].endswith(".jpg") else tokens[5] + ".jpg"
    if image_id not in frame_index:
        raise AnnotationError(f"{where}: query frame {image_id!r} is not a test frame")
    if not np.isfinite(xywh).all() or (xywh[2:] < 0).any():
        raise AnnotationError(
            f"{where}: query box x, y, w, h = {xywh.tolist()} is not finite or has a negative "
            "width or height"
        )
    box = np.clip(xywh_to_xyxy(xywh)[0], 0.0, None)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise AnnotationError(f"{where}: query box has no area: {xywh.tolist()}")
    return SearchQuery(
        image_id=image_id, box=box, person_id=int(pid), camera_id=prw_camera_id(image_id)
    )


def _positives(
    queries: list[SearchQuery],
    gallery_dicts: list[dict],
    camera_ids: np.ndarray,
    frame_index: dict[str, int],
    cross_camera: bool,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: every test frame holding its identity, except its own frame (and, with
    ``cross_camera``, except frames of its camera). A frame counts once, with the first box of
    the identity in it (count_gt counts frames holding the person)."""
    by_pid: dict[int, tuple[list[int], list[list[float]]]] = {}
    for index, record in enumerate(gallery_dicts):
        for anno in record["annotations"]:
            if anno["person_id"] >= 0:
                entry = by_pid.setdefault(anno["person_id"], ([], []))
                if entry[0] and entry[0][-1] == index:
                    continue  # the identity twice in one frame (an annotation error)
                entry[0].append(index)
                entry[1].append(anno["bbox"])
    out = []
    for query in queries:
        images, boxes = by_pid.get(query.person_id, ([], []))
        images = np.asarray(images, dtype=np.int64)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        keep = images != frame_index[query.image_id]
        if cross_camera:
            keep &= camera_ids[images] != query.camera_id
        out.append((images[keep], boxes[keep]))
    return out


def load_prw_test(
    root: str,
    *,
    strict_sizes: bool = False,
    protocol_name: str = "prw",
    drop_negative_boxes: bool | None = None,
) -> PersonSearchTestSplit:
    """Load the PRW test frames, its queries and search protocol.

    Returns:
        dataset dicts: the test frames (original ids) then one query dict per line of
        ``query_info.txt`` (a repeated line is kept, and noted in the summary); the
        :class:`SearchProtocol` with variants ``all`` (every test frame but the query's) and
        ``cross_camera`` (also without the query camera's frames); the load summary.
    """
    if drop_negative_boxes is None:
        drop_negative_boxes = data_options().drop_negative_boxes
    summary = LoadSummary(f"PRW test split at {root}")
    gallery_dicts, ids_per_frame, dropped = _load_frames(root, "test", summary, drop_negative_boxes)
    _check_size(strict_sizes, "test_frames", len(gallery_dicts))
    _check_size(strict_sizes, "test_boxes", int(sum(len(ids) for ids in ids_per_frame)))
    frame_index = {record["image_id"]: i for i, record in enumerate(gallery_dicts)}
    camera_ids = np.asarray([r["camera_id"] for r in gallery_dicts], dtype=np.int64)
    queries = _read_queries(root, frame_index, summary)
    _check_size(strict_sizes, "queries", len(queries))
    query_ids = {q.person_id for q in queries}
    lost = [d for d in dropped if d.person_id in query_ids]
    if lost:
        named = "; ".join(
            f"{d.image_id}.mat row {d.row} (person {d.person_id}): {d.reason}"
            for d in lost[:NAMED_EXAMPLES]
        )
        summary.note(
            f"{len(lost)} dropped boxes held a query's person (one positive less each): {named}"
        )

    query_dicts = []
    for index, query in enumerate(queries):
        frame = gallery_dicts[frame_index[query.image_id]]
        query_dicts.append(
            {
                "file_name": frame["file_name"],
                "image_id": query.image_id,
                "height": frame["height"],
                "width": frame["width"],
                "camera_id": query.camera_id,
                "query_index": index,
                "query_box": [float(v) for v in query.box],
                "person_id": query.person_id,
            }
        )
    all_indices = np.arange(len(queries), dtype=np.int64)
    variants = {
        name: QueryGalleries(
            name=name,
            query_indices=all_indices,
            galleries=None,
            positives=_positives(queries, gallery_dicts, camera_ids, frame_index, cross),
            cross_camera=cross,
        )
        for name, cross in (("all", False), ("cross_camera", True))
    }
    protocol = SearchProtocol(
        name=protocol_name,
        gallery_image_ids=[r["image_id"] for r in gallery_dicts],
        gallery_camera_ids=camera_ids,
        queries=queries,
        variant_loaders={name: _constant(v) for name, v in variants.items()},
        default_variant="all",
    )
    _summarize(summary, gallery_dicts).queries = len(queries)
    summary.variants = list(variants)
    return PersonSearchTestSplit(gallery_dicts + query_dicts, protocol, summary)


def _constant(value: QueryGalleries):
    def load() -> QueryGalleries:
        return value

    return load
