"""Write a synthetic dataset in CUHK-SYSU's file format (see ``datasets/cuhk_sysu.py``).

Same directory layout, MAT variables and struct nesting as the real release, so the real loader
reads it unchanged (with ``strict_sizes=False``). Differences from the real data, by design:
the toy test set is small, so only the ``TestG<N>.mat`` files whose N fits are written
(N gallery entries need N <= number of test images - 1; the defaults fit 50 and 100); the query
subsets ``Occlusion.mat`` / ``Resolution.mat`` hold the quarter of the queries whose person is
most occluded / smallest (their occluded fractions are listed in ``toy_info.json``); the files
carry none of the real quirks (duplicate gallery entries). The MAT structure (variables, fields,
classes, dimensions, 1x0 empty boxes) is the one ``datasets/README.md`` describes for the real
files, checked by ``tests/ps_data/test_ps_data_toy_format.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from ..datasets.cuhk_sysu import CUHK_SYSU_GALLERY_SIZES
from .identities import make_identities
from .io import save_mat
from .person_masks import (
    MASK_SEED_TAG,
    ImagePersonMasks,
    owner_polygons,
    select_mask_images,
    write_coco_masks,
    write_labelme_masks,
)
from .scenes import (
    RenderedPerson,
    SceneSpec,
    assign_appearances,
    make_background_styles,
    render_scenes,
)

__all__ = ["write_cuhk_sysu"]

# Number of background styles ("places") the scenes are drawn from.
_NUM_STYLES = 8
# Image sizes (pixels): height and width drawn uniformly from these inclusive ranges.
_HEIGHT_RANGE = (240, 300)
_WIDTH_RANGE = (320, 400)
# Labelled identities appear in this many images (inclusive range) of their split.
_APPEARANCES = (2, 5)
# Unlabelled persons added per image (inclusive range).
_UNLABELLED_PER_IMAGE = (0, 2)
# Fraction of the queries in each of the two query subsets.
_SUBSET_FRACTION = 0.25
_HEADLINE_GALLERY_SIZE = 100


def _struct_array(rows: Sequence[dict]) -> np.ndarray:
    """A (1, n) MATLAB struct array from dicts with the same keys (object-typed fields)."""
    names = list(rows[0])
    arr = np.zeros((1, len(rows)), dtype=[(name, object) for name in names])
    for j, row in enumerate(rows):
        for name in names:
            arr[0, j][name] = row[name]
    return arr


def _cell_column(values: Sequence) -> np.ndarray:
    """An (n, 1) MATLAB cell array."""
    arr = np.empty((len(values), 1), dtype=object)
    for i, value in enumerate(values):
        arr[i, 0] = value
    return arr


def _box(box) -> np.ndarray:
    return np.asarray([box], dtype=np.float64)  # (1, 4) x, y, w, h like the real files


def _scalar(value: float) -> np.ndarray:
    return np.asarray([[value]], dtype=np.float64)


def _empty() -> np.ndarray:
    return np.zeros((1, 0), dtype=np.float64)  # 1x0, as the real files hold an absent person


def write_cuhk_sysu(
    out_dir: str,
    seed: int,
    *,
    num_train_ids: int = 24,
    num_test_ids: int = 16,
    num_train_images: int = 120,
    num_test_images: int = 110,
    num_unlabelled_ids: int = 20,
    mask_fraction: float = 0.0,
) -> dict:
    """Write a toy CUHK-SYSU dataset into the existing directory ``out_dir``.

    Args:
        mask_fraction: 0 = no person masks; else in (0, 1]: masks of the labelled persons
            (visible part) on about this fraction of the training images, selected as
            MaskGuidedPS selected its annotated images (portions of ``round(1 / fraction)``
            images, see :mod:`.person_masks`), written in the labelme and COCO layouts under
            ``out_dir/masks``. The images and annotation files are the same either way.

    Returns a summary (also written to ``toy_info.json``): sizes, the gallery sizes written
    and the masks written (``mask_fraction``, ``mask_images``, ``mask_persons``).
    """
    if num_test_ids < 1 or num_train_ids < 1 or num_unlabelled_ids < 1:
        raise ValueError("need at least one train, one test and one unlabelled identity")
    rng = np.random.default_rng(seed)
    identities = make_identities(num_train_ids + num_test_ids + num_unlabelled_ids, seed)
    train_ids = list(range(num_train_ids))
    test_ids = list(range(num_train_ids, num_train_ids + num_test_ids))
    unlabelled = np.arange(num_train_ids + num_test_ids, len(identities))
    num_labelled = num_train_ids + num_test_ids
    orig_ids = np.sort(rng.choice(np.arange(1, 20 * num_labelled + 1), num_labelled, replace=False))
    styles = make_background_styles(_NUM_STYLES, rng)

    per_image = _assign_split(rng, num_train_images, train_ids) + _assign_split(
        rng, num_test_images, test_ids
    )
    num_images = len(per_image)
    numbers = rng.permutation(num_images) + 1
    names = [f"s{int(n)}.jpg" for n in numbers]
    image_dir = os.path.join(out_dir, "Image", "SSM")
    os.makedirs(image_dir)
    specs = []
    for i, pids in enumerate(per_image):
        extra = int(rng.integers(_UNLABELLED_PER_IMAGE[0], _UNLABELLED_PER_IMAGE[1] + 1))
        if not pids and extra == 0:
            extra = 1  # every image shows someone
        pids = pids + [int(p) for p in rng.choice(unlabelled, size=extra, replace=False)]
        specs.append(
            SceneSpec(
                path=os.path.join(image_dir, names[i]),
                height=int(rng.integers(_HEIGHT_RANGE[0], _HEIGHT_RANGE[1] + 1)),
                width=int(rng.integers(_WIDTH_RANGE[0], _WIDTH_RANGE[1] + 1)),
                style=styles[int(rng.integers(0, _NUM_STYLES))],
                identities=tuple(identities[p] for p in rng.permutation(pids)),
                brightness=float(rng.uniform(0.65, 1.25)),
            )
        )
    train_images = list(range(num_train_images))
    masked = _select_masked(seed, mask_fraction, names, per_image, train_images)
    person_masks: dict[int, ImagePersonMasks] = {}

    def keep_masks(index: int, owner: np.ndarray) -> None:
        if index not in masked:
            return
        labelled = [k for k, ident in enumerate(specs[index].identities) if ident.pid in train_ids]
        persons = [owner_polygons(owner, k) for k in labelled]
        person_masks[index] = ImagePersonMasks(
            image_path=os.path.relpath(specs[index].path, out_dir),
            height=specs[index].height,
            width=specs[index].width,
            persons=tuple(tuple(p) for p in persons if p),
        )

    rendered = render_scenes(specs, rng, on_owner=keep_masks)
    with_masks = [person_masks[i] for i in sorted(masked, key=lambda i: int(names[i][1:-4]))]
    if with_masks:
        write_labelme_masks(out_dir, with_masks)
        write_coco_masks(out_dir, with_masks)
    test_images = list(range(num_train_images, num_images))

    annotation_dir = os.path.join(out_dir, "annotation")
    protocol_dir = os.path.join(annotation_dir, "test", "train_test")
    subset_dir = os.path.join(annotation_dir, "test", "subset")
    os.makedirs(protocol_dir)
    os.makedirs(subset_dir)
    _write_images_mat(annotation_dir, names, rendered, invalid_in=(0, num_train_images))
    save_mat(
        os.path.join(annotation_dir, "pool.mat"),
        {"pool": _cell_column([names[i] for i in test_images])},
    )
    _write_train_mat(protocol_dir, names, rendered, train_images, train_ids, orig_ids)
    sizes_written, subsets = _write_test_mats(
        protocol_dir, subset_dir, rng, names, rendered, test_images, test_ids, orig_ids
    )
    summary = {
        "format": "cuhk_sysu",
        "seed": seed,
        "images": num_images,
        "train_images": num_train_images,
        "test_images": num_test_images,
        "train_ids": num_train_ids,
        "test_ids": num_test_ids,
        "queries": num_test_ids,
        "gallery_sizes": sizes_written,
        "occlusion_queries": subsets["occlusion"],
        "occluded_fractions": subsets["occluded_fractions"],
        "resolution_queries": subsets["resolution"],
        "mask_fraction": float(mask_fraction),
        "mask_images": len(with_masks),
        "mask_persons": sum(len(m.persons) for m in with_masks),
    }
    with open(os.path.join(out_dir, "toy_info.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    return summary


def _select_masked(
    seed: int,
    fraction: float,
    names: list[str],
    per_image: list[list[int]],
    train_images: list[int],
) -> set[int]:
    """The training images that get person masks (none when ``fraction`` is 0): the paper's
    selection over the training images in dataset order (name number), from an RNG of its own."""
    if fraction == 0:
        return set()
    order = sorted(train_images, key=lambda i: int(names[i][1:-4]))
    has_labelled = [bool(pids) for pids in per_image]
    rng = np.random.default_rng([seed, MASK_SEED_TAG])
    return set(select_mask_images(order, has_labelled, fraction, rng))


def _assign_split(rng: np.random.Generator, num_images: int, ids: list[int]) -> list[list[int]]:
    """Per image of a split, the labelled identity indices it shows."""
    return assign_appearances(
        num_images, ids, rng, min_appearances=_APPEARANCES[0], max_appearances=_APPEARANCES[1]
    )


def _write_images_mat(
    annotation_dir: str,
    names: list[str],
    rendered: list[list[RenderedPerson]],
    invalid_in: Sequence[int],
) -> None:
    """Images.mat in name-number order; ``invalid_in`` images get an extra w=0 box (the real
    file has a few invalid boxes, which the loader drops)."""
    rows = []
    for i in sorted(range(len(names)), key=lambda i: int(names[i][1:-4])):
        boxes = [{"idlocate": _box(p.box), "ishard": _scalar(0)} for p in rendered[i]]
        if i in invalid_in:
            x, y, _, h = rendered[i][0].box
            boxes.append({"idlocate": _box((x, y, 0, h)), "ishard": _scalar(0)})
        rows.append(
            {"imname": names[i], "nAppear": _scalar(len(boxes)), "box": _struct_array(boxes)}
        )
    save_mat(os.path.join(annotation_dir, "Images.mat"), {"Img": _struct_array(rows)})


def _appearances(
    rendered: list[list[RenderedPerson]], images: list[int]
) -> dict[int, list[tuple[int, RenderedPerson]]]:
    out: dict[int, list[tuple[int, RenderedPerson]]] = {}
    for i in images:
        for person in rendered[i]:
            out.setdefault(person.pid, []).append((i, person))
    return out


def _write_train_mat(protocol_dir, names, rendered, train_images, train_ids, orig_ids) -> None:
    appear = _appearances(rendered, train_images)
    cells = []
    for pid in train_ids:
        scenes = [
            {"imname": names[i], "idlocate": _box(p.box), "ishard": _scalar(0)}
            for i, p in appear[pid]
        ]
        cells.append(
            {
                "idname": f"p{int(orig_ids[pid])}",
                "nAppear": _scalar(len(scenes)),
                "scene": _struct_array(scenes),
            }
        )
    save_mat(os.path.join(protocol_dir, "Train.mat"), {"Train": _cell_column(cells)})


def _write_test_mats(
    protocol_dir, subset_dir, rng, names, rendered, test_images, test_ids, orig_ids
) -> tuple[list[int], dict[str, int]]:
    appear = _appearances(rendered, test_images)
    queries = []  # (pid, query (image, person), positives [(image, person)], negatives order)
    for pid in test_ids:
        entries = appear[pid]
        q = int(rng.integers(0, len(entries)))
        holding = {i for i, _ in entries}
        negatives = [i for i in test_images if i not in holding]
        queries.append(
            (pid, entries[q], entries[:q] + entries[q + 1 :], list(rng.permutation(negatives)))
        )
    sizes = [
        n
        for n in CUHK_SYSU_GALLERY_SIZES
        if all(len(pos) <= n <= len(pos) + len(neg) for _, _, pos, neg in queries)
    ]
    if not sizes:
        raise ValueError(
            f"toy CUHK-SYSU: {len(test_images)} test images are too few for the smallest gallery "
            f"size {CUHK_SYSU_GALLERY_SIZES[0]}; use more test images"
        )
    records: dict[int, list[dict]] = {}
    for n in sizes:
        rows = []
        for pid, (qi, qp), positives, negatives in queries:
            gallery = [
                {"imname": names[i], "idlocate": _box(p.box), "ishard": _scalar(0)}
                for i, p in positives
            ] + [
                {"imname": names[int(i)], "idlocate": _empty(), "ishard": _scalar(0)}
                for i in negatives[: n - len(positives)]
            ]
            query = {
                "imname": names[qi],
                "idlocate": _box(qp.box),
                "ishard": _scalar(0),
                "idname": f"p{int(orig_ids[pid])}",
            }
            rows.append({"Query": query, "Gallery": _struct_array(gallery)})
        records[n] = rows
        save_mat(os.path.join(protocol_dir, f"TestG{n}.mat"), {f"TestG{n}": _struct_array(rows)})

    subset_source = records[
        _HEADLINE_GALLERY_SIZE if _HEADLINE_GALLERY_SIZE in sizes else sizes[-1]
    ]
    k = max(1, int(round(_SUBSET_FRACTION * len(queries))))
    visibility = np.asarray([qp.visibility for _, (_, qp), _, _ in queries])
    heights = np.asarray([qp.box[3] for _, (_, qp), _, _ in queries])
    occluded = np.sort(np.argsort(visibility, kind="stable")[:k])
    small = np.sort(np.argsort(heights, kind="stable")[:k])
    save_mat(
        os.path.join(subset_dir, "Occlusion.mat"),
        {"Occlusion1": _struct_array([subset_source[i] for i in occluded])},
    )
    save_mat(
        os.path.join(subset_dir, "Resolution.mat"),
        {"Test_Size": _struct_array([subset_source[i] for i in small])},
    )
    fractions = [round(float(1.0 - visibility[i]), 4) for i in occluded]
    return sizes, {"occlusion": int(k), "resolution": int(k), "occluded_fractions": fractions}
