"""Write a synthetic dataset in PRW's file format (see ``datasets/prw.py``).

Same layout as the real release (``frames/``, ``annotations/<frame>.jpg.mat``,
``frame_train.mat``, ``frame_test.mat``, ``query_info.txt`` with CRLF line ends, ``query_box/``),
so the real loader reads it unchanged (with ``strict_sizes=False``). Like the real files: a few
annotation files name their matrix ``anno_file`` or ``anno_previous`` instead of ``box_new``;
persons may stick out of the frame (negative x); unlabelled persons have id -2; original ids are
non-contiguous. Each camera has its own background and lighting; every labelled identity appears
under at least two cameras, and each test identity gets one query per camera it appears in (at
most ``queries_per_id``).
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from .identities import make_identities
from .io import save_jpeg, save_mat
from .scenes import (
    RenderedPerson,
    SceneSpec,
    assign_appearances,
    make_background_styles,
    render_scenes,
)

__all__ = ["write_prw"]

# PRW's id for persons without identity.
_UNLABELLED = -2
# Labelled identities appear in this many frames (inclusive range) of their split.
_APPEARANCES = (2, 6)
# Unlabelled persons added per frame (inclusive range).
_UNLABELLED_PER_FRAME = (0, 2)
# Every n-th annotation file uses one of the alternative variable names of the real data.
_ALT_VARIABLE_EVERY = 9
_ALT_VARIABLES = ("anno_file", "anno_previous")


def write_prw(
    out_dir: str,
    seed: int,
    *,
    num_train_ids: int = 20,
    num_test_ids: int = 12,
    num_train_frames: int = 100,
    num_test_frames: int = 80,
    num_cameras: int = 4,
    num_unlabelled_ids: int = 20,
    frame_height: int = 240,
    frame_width: int = 400,
    queries_per_id: int = 2,
) -> dict:
    """Write a toy PRW dataset into the existing directory ``out_dir``.

    Returns a summary (also written to ``toy_info.json``).
    """
    if num_cameras < 2:
        raise ValueError(f"toy PRW needs >= 2 cameras (cross-camera search), got {num_cameras}")
    if num_test_ids < 1 or num_train_ids < 1 or num_unlabelled_ids < 1:
        raise ValueError("need at least one train, one test and one unlabelled identity")
    rng = np.random.default_rng(seed)
    num_labelled = num_train_ids + num_test_ids
    identities = make_identities(num_labelled + num_unlabelled_ids, seed)
    unlabelled = np.arange(num_labelled, len(identities))
    # Non-contiguous original ids (the real ones run 1..483 with gaps and a 932).
    orig_ids = np.sort(rng.choice(np.arange(1, 3 * num_labelled + 1), num_labelled, replace=False))
    styles = make_background_styles(num_cameras, rng)
    camera_light = rng.uniform(0.75, 1.15, size=num_cameras)

    splits = {}
    for split, num_frames, ids in (
        ("train", num_train_frames, range(num_train_ids)),
        ("test", num_test_frames, range(num_train_ids, num_labelled)),
    ):
        cameras = np.sort(rng.integers(0, num_cameras, size=num_frames))
        cameras[:num_cameras] = np.arange(num_cameras)  # every camera has frames
        cameras = np.sort(cameras)
        per_frame = assign_appearances(
            num_frames,
            list(ids),
            rng,
            min_appearances=_APPEARANCES[0],
            max_appearances=_APPEARANCES[1],
            image_groups=cameras,
            min_groups=2,
        )
        splits[split] = (cameras, per_frame)

    # Frame names c<cam>s<seq>_<frame>: train and test frames interleave in each camera's
    # sequence, as in the real data.
    frame_dir = os.path.join(out_dir, "frames")
    anno_dir = os.path.join(out_dir, "annotations")
    os.makedirs(frame_dir)
    os.makedirs(anno_dir)
    counters = np.zeros(num_cameras, dtype=np.int64)
    names: dict[str, list[str]] = {}
    specs = []
    for split in ("train", "test"):
        cameras, per_frame = splits[split]
        names[split] = []
        for cam, pids in zip(cameras.tolist(), per_frame):
            counters[cam] += int(rng.integers(1, 40))
            name = f"c{cam + 1}s{1 + int(counters[cam]) // 5000}_{int(counters[cam]):06d}"
            names[split].append(name)
            extra = int(rng.integers(_UNLABELLED_PER_FRAME[0], _UNLABELLED_PER_FRAME[1] + 1))
            if not pids and extra == 0:
                extra = 1
            pids = pids + [int(p) for p in rng.choice(unlabelled, size=extra, replace=False)]
            specs.append(
                SceneSpec(
                    path=os.path.join(frame_dir, name + ".jpg"),
                    height=frame_height,
                    width=frame_width,
                    style=styles[cam],
                    identities=tuple(identities[p] for p in rng.permutation(pids)),
                    brightness=float(camera_light[cam] * rng.uniform(0.9, 1.1)),
                )
            )
    rendered = render_scenes(specs, rng, allow_outside=True)
    all_names = names["train"] + names["test"]

    def original_id(person: RenderedPerson) -> int:
        return int(orig_ids[person.pid]) if person.pid < num_labelled else _UNLABELLED

    for k, (name, persons) in enumerate(zip(all_names, rendered)):
        rows = np.asarray([[original_id(p), *p.box] for p in persons], dtype=np.float64).reshape(
            -1, 5
        )
        variable = (
            _ALT_VARIABLES[(k // _ALT_VARIABLE_EVERY) % len(_ALT_VARIABLES)]
            if k % _ALT_VARIABLE_EVERY == _ALT_VARIABLE_EVERY - 1
            else "box_new"
        )
        save_mat(os.path.join(anno_dir, name + ".jpg.mat"), {variable: rows})
    for split, variable in (("train", "img_index_train"), ("test", "img_index_test")):
        cell = np.empty((len(names[split]), 1), dtype=object)
        for i, name in enumerate(names[split]):
            cell[i, 0] = name
        save_mat(os.path.join(out_dir, f"frame_{split}.mat"), {variable: cell})

    num_queries = _write_queries(
        out_dir,
        rng,
        names["test"],
        rendered[len(names["train"]) :],
        splits["test"][0],
        orig_ids,
        num_labelled,
        queries_per_id,
    )
    summary = {
        "format": "prw",
        "seed": seed,
        "train_frames": num_train_frames,
        "test_frames": num_test_frames,
        "train_ids": num_train_ids,
        "test_ids": num_test_ids,
        "cameras": num_cameras,
        "queries": num_queries,
    }
    with open(os.path.join(out_dir, "toy_info.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    return summary


def _write_queries(
    out_dir, rng, test_names, test_rendered, test_cameras, orig_ids, num_labelled, per_id
) -> int:
    """query_info.txt (CRLF) and the query crops in query_box/; returns the number of queries."""
    by_pid: dict[int, list[tuple[int, RenderedPerson]]] = {}
    for i, persons in enumerate(test_rendered):
        for p in persons:
            if p.pid < num_labelled:
                by_pid.setdefault(p.pid, []).append((i, p))
    crop_dir = os.path.join(out_dir, "query_box")
    os.makedirs(crop_dir)
    frame_dir = os.path.join(out_dir, "frames")
    lines = []
    for pid in sorted(by_pid):
        seen_cameras: set[int] = set()
        # The most visible appearance of each camera makes the best query.
        for i, person in sorted(by_pid[pid], key=lambda e: -e[1].visibility):
            cam = int(test_cameras[i])
            if cam in seen_cameras or len(seen_cameras) >= per_id:
                continue
            seen_cameras.add(cam)
            x, y, w, h = person.box
            lines.append(f"{int(orig_ids[pid])} {x:.1f} {y:.1f} {w:.1f} {h:.1f} {test_names[i]}")
            frame = np.asarray(_read_rgb(os.path.join(frame_dir, test_names[i] + ".jpg")))
            crop = frame[max(y, 0) : y + h, max(x, 0) : x + w]
            save_jpeg(os.path.join(crop_dir, f"{int(orig_ids[pid])}_{test_names[i]}.jpg"), crop)
    with open(os.path.join(out_dir, "query_info.txt"), "w", newline="") as f:
        f.write("".join(line + "\r\n" for line in lines))
    return len(lines)


def _read_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
