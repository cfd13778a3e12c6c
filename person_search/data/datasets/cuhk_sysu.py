"""CUHK-SYSU person search dataset, read from its original MATLAB annotation files.

Xiao, Li, Wang, Lin, Wang: "Joint Detection and Identification Feature Learning for Person
Search", CVPR 2017. http://www.ee.cuhk.edu.hk/~xgwang/PS/dataset.html

Layout under ``root`` (fields as ``scipy.io.loadmat`` returns them)::

    Image/SSM/<name>.jpg                            18,184 scene images
    annotation/Images.mat            Img            per image: imname, nAppear,
                                                    box(idlocate, ishard)
    annotation/pool.mat              pool           6,978 test (gallery) image names
    annotation/test/train_test/Train.mat   Train    5,532 identities: idname, nAppear,
                                                    scene(imname, idlocate, ishard)
    annotation/test/train_test/TestG<N>.mat TestG<N> 2,900 x (Query(imname, idlocate, ishard,
                                                    idname), Gallery 1xN (imname, idlocate, ishard))
    annotation/test/subset/Occlusion.mat   Occlusion1   187 queries, same layout
    annotation/test/subset/Resolution.mat  Test_Size    290 queries, same layout

Sizes asserted with ``strict_sizes`` (the real dataset): 18,184 images, 6,978 test images,
11,206 training images, 5,532 training identities, 2,900 queries, 187 occlusion and 290
low-resolution queries, all six gallery sizes present.

Boxes are stored x, y, w, h and converted once here to ``XYXY_ABS`` with x2 = x + w; boxes with
w <= 0 or h <= 0 are dropped. Train ``person_id`` = index of the identity in ``Train`` (0..N-1),
-1 for every other box (matched by exact coordinates). Test ``person_id`` = the number in the
query's ``idname`` (``p10581`` -> 10581) for the boxes the gallery lists name, -1 otherwise.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from detectron2.structures import BoxMode

from ..search_protocol import QueryGalleries, SearchProtocol, SearchQuery
from .matfile import (
    AnnotationError,
    field,
    image_size,
    load_mat,
    records,
    to_box,
    to_str,
    to_strings,
    xywh_to_xyxy,
)

__all__ = [
    "CUHK_SYSU_GALLERY_SIZES",
    "CUHK_SYSU_SIZES",
    "load_cuhk_sysu_test",
    "load_cuhk_sysu_train",
]

logger = logging.getLogger(__name__)

# Gallery sizes of the official protocol files TestG<N>.mat.
CUHK_SYSU_GALLERY_SIZES: tuple[int, ...] = (50, 100, 500, 1000, 2000, 4000)
# The headline gallery size of every published table.
_DEFAULT_GALLERY_SIZE = 100
# Sizes of the real dataset, asserted when strict_sizes=True.
CUHK_SYSU_SIZES = {
    "images": 18184,
    "test_images": 6978,
    "train_images": 11206,
    "train_ids": 5532,
    "queries": 2900,
    "occlusion": 187,
    "resolution": 290,
}
# Query subsets: variant name -> (file under annotation/test/subset, variable name).
_SUBSETS = {
    "occlusion": ("Occlusion.mat", "Occlusion1"),
    "resolution": ("Resolution.mat", "Test_Size"),
}
_IDNAME = re.compile(r"^p(\d+)$")


@dataclass(frozen=True)
class _Paths:
    root: str

    @property
    def image_dir(self) -> str:
        return os.path.join(self.root, "Image", "SSM")

    @property
    def images_mat(self) -> str:
        return os.path.join(self.root, "annotation", "Images.mat")

    @property
    def pool_mat(self) -> str:
        return os.path.join(self.root, "annotation", "pool.mat")

    @property
    def train_mat(self) -> str:
        return os.path.join(self.root, "annotation", "test", "train_test", "Train.mat")

    def test_mat(self, gallery_size: int) -> str:
        return os.path.join(
            self.root, "annotation", "test", "train_test", f"TestG{gallery_size}.mat"
        )

    def subset_mat(self, file_name: str) -> str:
        return os.path.join(self.root, "annotation", "test", "subset", file_name)


def _check_size(strict: bool, what: str, got: int) -> None:
    if strict and got != CUHK_SYSU_SIZES[what]:
        raise AnnotationError(
            f"CUHK-SYSU: expected {CUHK_SYSU_SIZES[what]} {what}, found {got} "
            "(incomplete or modified dataset; the toy dataset loads with strict_sizes=False)"
        )


def _read_images(paths: _Paths) -> dict[str, np.ndarray]:
    """Images.mat -> {image name: (N, 4) float64 valid x, y, w, h boxes}, in file order."""
    path = paths.images_mat
    img = load_mat(path, ["Img"])["Img"]
    out: dict[str, np.ndarray] = {}
    dropped = 0
    for i, rec in enumerate(records(img, f"{path}: Img")):
        where = f"{path}: Img[{i}]"
        name = to_str(field(rec, "imname", where), f"{where}.imname")
        box_recs = records(field(rec, "box", where), f"{where}.box")
        boxes = [
            to_box(field(b, "idlocate", f"{where}.box"), f"{where}.box.idlocate") for b in box_recs
        ]
        boxes = np.stack([b for b in boxes if b.size]) if any(b.size for b in boxes) else None
        if boxes is None:
            boxes = np.zeros((0, 4), dtype=np.float64)
        valid = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        dropped += int((~valid).sum())
        if name in out:
            raise AnnotationError(f"{path}: image {name!r} listed twice in Img")
        out[name] = boxes[valid]
    if dropped:
        logger.info("CUHK-SYSU: dropped %d boxes with w <= 0 or h <= 0 from %s", dropped, path)
    return out


def _read_pool(paths: _Paths) -> list[str]:
    path = paths.pool_mat
    names = to_strings(load_mat(path, ["pool"])["pool"], f"{path}: pool")
    if len(set(names)) != len(names):
        raise AnnotationError(f"{path}: pool lists an image twice")
    return names


def _match_box(boxes: np.ndarray, box: np.ndarray) -> int:
    """Index of the row of ``boxes`` (N, 4) equal to ``box`` (4,), or -1."""
    hits = np.flatnonzero(np.all(boxes == box[None, :], axis=1))
    return int(hits[0]) if hits.size else -1


def _image_dict(paths: _Paths, name: str, camera_id: int = -1) -> dict:
    file_name = os.path.join(paths.image_dir, name)
    height, width = image_size(file_name)
    return {
        "file_name": file_name,
        "image_id": name,
        "height": height,
        "width": width,
        "camera_id": camera_id,
    }


def _annotations(boxes_xywh: np.ndarray, pids: np.ndarray) -> list[dict]:
    return [
        {
            "bbox": [float(v) for v in box],
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": 0,
            "person_id": int(pid),
        }
        for box, pid in zip(xywh_to_xyxy(boxes_xywh), pids)
    ]


def load_cuhk_sysu_train(root: str, *, strict_sizes: bool = False) -> tuple[list[dict], int]:
    """Load the CUHK-SYSU training split.

    Returns:
        dataset dicts of the training images (all images minus the pool), and the number of
        training identities N (``person_id`` in 0..N-1, -1 = unlabelled).
    """
    paths = _Paths(root)
    images = _read_images(paths)
    pool = set(_read_pool(paths))
    _check_size(strict_sizes, "images", len(images))
    _check_size(strict_sizes, "test_images", len(pool))
    missing = pool.difference(images)
    if missing:
        raise AnnotationError(
            f"{paths.pool_mat}: {len(missing)} pool images are not in {paths.images_mat} "
            f"(e.g. {sorted(missing)[:3]})"
        )
    train_names = [name for name in images if name not in pool]
    _check_size(strict_sizes, "train_images", len(train_names))
    pids = {name: np.full(len(images[name]), -1, dtype=np.int64) for name in train_names}

    path = paths.train_mat
    identities = records(load_mat(path, ["Train"])["Train"], f"{path}: Train")
    _check_size(strict_sizes, "train_ids", len(identities))
    unmatched = 0
    for pid, rec in enumerate(identities):
        where = f"{path}: Train[{pid}]"
        for scene in records(field(rec, "scene", where), f"{where}.scene"):
            name = to_str(field(scene, "imname", f"{where}.scene"), f"{where}.scene.imname")
            box = to_box(field(scene, "idlocate", f"{where}.scene"), f"{where}.scene.idlocate")
            if name not in pids:
                raise AnnotationError(f"{where}: image {name!r} is not a training image")
            row = _match_box(images[name], box) if box.size else -1
            if row < 0:
                unmatched += 1
                continue
            pids[name][row] = pid
    if unmatched:
        logger.warning(
            "CUHK-SYSU: %d boxes of %s match no valid box of %s; they stay unlabelled",
            unmatched,
            path,
            paths.images_mat,
        )
    dicts = []
    for name in train_names:
        record = _image_dict(paths, name)
        record["annotations"] = _annotations(images[name], pids[name])
        dicts.append(record)
    return dicts, len(identities)


@dataclass
class _QueryList:
    """The queries and galleries of one TestG / subset file, as read."""

    image_ids: list[str]
    boxes: np.ndarray  # (Q, 4) x, y, w, h
    person_ids: np.ndarray  # (Q,) int64
    gallery_names: list[list[str]]  # per query, in file order (duplicates kept)
    gallery_boxes: list[list[np.ndarray]]  # per query, (4,) x, y, w, h or (0,) when absent


def _parse_idname(value, where: str) -> int:
    text = to_str(value, where)
    match = _IDNAME.match(text)
    if match is None:
        raise AnnotationError(f"{where}: identity name {text!r} is not of the form 'p<number>'")
    return int(match.group(1))


def _read_query_file(path: str, variable: str, *, with_galleries: bool = True) -> _QueryList:
    """Read a TestG<N> / Occlusion / Resolution file."""
    items = records(load_mat(path, [variable])[variable], f"{path}: {variable}")
    out = _QueryList([], np.zeros((len(items), 4)), np.zeros(len(items), np.int64), [], [])
    for i, item in enumerate(items):
        where = f"{path}: {variable}[{i}]"
        query = records(field(item, "Query", where), f"{where}.Query")
        if len(query) != 1:
            raise AnnotationError(f"{where}.Query: expected one record, got {len(query)}")
        q = query[0]
        out.image_ids.append(to_str(field(q, "imname", f"{where}.Query"), f"{where}.Query.imname"))
        box = to_box(field(q, "idlocate", f"{where}.Query"), f"{where}.Query.idlocate")
        if box.size != 4:
            raise AnnotationError(f"{where}.Query.idlocate: the query box is empty")
        out.boxes[i] = box
        out.person_ids[i] = _parse_idname(
            field(q, "idname", f"{where}.Query"), f"{where}.Query.idname"
        )
        if not with_galleries:
            continue
        names, boxes = [], []
        for g in records(field(item, "Gallery", where), f"{where}.Gallery"):
            names.append(to_str(field(g, "imname", f"{where}.Gallery"), f"{where}.Gallery.imname"))
            boxes.append(
                to_box(field(g, "idlocate", f"{where}.Gallery"), f"{where}.Gallery.idlocate")
            )
        out.gallery_names.append(names)
        out.gallery_boxes.append(boxes)
    return out


def _galleries_variant(
    name: str,
    queries: _QueryList,
    query_indices: np.ndarray,
    gallery_index: dict[str, int],
    path: str,
) -> QueryGalleries:
    galleries, positives = [], []
    for names, boxes in zip(queries.gallery_names, queries.gallery_boxes):
        try:
            indices = np.asarray([gallery_index[n] for n in names], dtype=np.int64)
        except KeyError as e:
            raise AnnotationError(f"{path}: gallery image {e.args[0]!r} is not in pool.mat") from e
        has_box = np.asarray([b.size == 4 for b in boxes], dtype=bool)
        pos_boxes = (
            xywh_to_xyxy(np.stack([b for b in boxes if b.size == 4]))
            if has_box.any()
            else np.zeros((0, 4), dtype=np.float64)
        )
        galleries.append(indices)
        positives.append((indices[has_box], pos_boxes))
    return QueryGalleries(
        name=name, query_indices=query_indices, galleries=galleries, positives=positives
    )


def _check_same_queries(reference: _QueryList, other: _QueryList, path: str) -> None:
    same = (
        reference.image_ids == other.image_ids
        and np.array_equal(reference.boxes, other.boxes)
        and np.array_equal(reference.person_ids, other.person_ids)
    )
    if not same:
        raise AnnotationError(
            f"{path}: its queries differ from those of the reference TestG file (the protocol "
            "needs the same queries, in the same order, in every TestG<N>.mat)"
        )


def _load_gallery_variant(
    path: str, gallery_size: int, reference: _QueryList, gallery_index: dict[str, int]
) -> QueryGalleries:
    queries = _read_query_file(path, f"TestG{gallery_size}")
    _check_same_queries(reference, queries, path)
    return _galleries_variant(
        f"gallery_{gallery_size}",
        queries,
        np.arange(len(reference.image_ids), dtype=np.int64),
        gallery_index,
        path,
    )


def _load_subset_variant(
    name: str,
    path: str,
    variable: str,
    reference: _QueryList,
    gallery_index: dict[str, int],
    strict_sizes: bool,
) -> QueryGalleries:
    subset = _read_query_file(path, variable)
    _check_size(strict_sizes, name, len(subset.image_ids))
    key_to_index = {
        (image_id, tuple(box)): i
        for i, (image_id, box) in enumerate(zip(reference.image_ids, reference.boxes.tolist()))
    }
    indices = []
    for image_id, box in zip(subset.image_ids, subset.boxes.tolist()):
        index = key_to_index.get((image_id, tuple(box)))
        if index is None:
            raise AnnotationError(
                f"{path}: query ({image_id}, box {box}) is not one of the main protocol's queries"
            )
        indices.append(index)
    return _galleries_variant(
        name, subset, np.asarray(indices, dtype=np.int64), gallery_index, path
    )


def _all_variant(
    query_person_ids: np.ndarray, gallery_ids: list[str], gallery_dicts: list[dict], queries
) -> QueryGalleries:
    """Every test image is a gallery image (except the query's own); positives by identity, one
    per image (the first box of the identity in it)."""
    by_pid: dict[int, tuple[list[int], list[list[float]]]] = {}
    for index, record in enumerate(gallery_dicts):
        for anno in record["annotations"]:
            if anno["person_id"] >= 0:
                entry = by_pid.setdefault(anno["person_id"], ([], []))
                if entry[0] and entry[0][-1] == index:
                    continue  # a second box of the person in one image (a real-file quirk)
                entry[0].append(index)
                entry[1].append(anno["bbox"])
    own_index = {image_id: i for i, image_id in enumerate(gallery_ids)}
    positives = []
    for pid, query in zip(query_person_ids.tolist(), queries):
        images, boxes = by_pid.get(pid, ([], []))
        images = np.asarray(images, dtype=np.int64)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        keep = images != own_index.get(query.image_id, -1)
        positives.append((images[keep], boxes[keep]))
    return QueryGalleries(
        name="all",
        query_indices=np.arange(len(queries), dtype=np.int64),
        galleries=None,
        positives=positives,
    )


def load_cuhk_sysu_test(
    root: str, *, strict_sizes: bool = False, protocol_name: str = "cuhk_sysu"
) -> tuple[list[dict], SearchProtocol]:
    """Load the CUHK-SYSU test split and its search protocol.

    Returns:
        dataset dicts: the pool's gallery images (with annotations, original identity ids) then
        one query dict per query (``query_index`` into ``protocol.queries``); and the
        :class:`SearchProtocol` with variants ``gallery_<N>`` for every TestG<N>.mat present
        (read lazily), ``occlusion`` / ``resolution`` when their files exist, and ``all``.
        ``default_variant`` is ``gallery_100``, or the largest present size when TestG100.mat
        is absent (the toy dataset may be too small for it).
    """
    paths = _Paths(root)
    images = _read_images(paths)
    pool = _read_pool(paths)
    _check_size(strict_sizes, "images", len(images))
    _check_size(strict_sizes, "test_images", len(pool))
    sizes = [n for n in CUHK_SYSU_GALLERY_SIZES if os.path.isfile(paths.test_mat(n))]
    if strict_sizes and len(sizes) != len(CUHK_SYSU_GALLERY_SIZES):
        missing = [paths.test_mat(n) for n in CUHK_SYSU_GALLERY_SIZES if n not in sizes]
        raise FileNotFoundError(f"CUHK-SYSU protocol files not found: {missing}")
    if not sizes:
        raise FileNotFoundError(
            f"no CUHK-SYSU protocol file found (looked for {paths.test_mat(_DEFAULT_GALLERY_SIZE)} "
            f"and the other sizes {CUHK_SYSU_GALLERY_SIZES})"
        )
    # The reference query list: TestG100 (the headline protocol) when present.
    ref_size = _DEFAULT_GALLERY_SIZE if _DEFAULT_GALLERY_SIZE in sizes else max(sizes)
    ref_path = paths.test_mat(ref_size)
    reference = _read_query_file(ref_path, f"TestG{ref_size}")
    _check_size(strict_sizes, "queries", len(reference.image_ids))

    # Label the gallery boxes with the identities the protocol locates in them. Every gallery
    # list holds all images of its query person (they come first), so one file is enough.
    pids = {name: np.full(len(images.get(name, ())), -1, dtype=np.int64) for name in pool}
    for name in pool:
        if name not in images:
            raise AnnotationError(f"{paths.pool_mat}: pool image {name!r} is not in Images.mat")
    unmatched = 0
    for pid, q_name, q_box, g_names, g_boxes in zip(
        reference.person_ids,
        reference.image_ids,
        reference.boxes,
        reference.gallery_names,
        reference.gallery_boxes,
    ):
        for name, box in zip([q_name, *g_names], [q_box, *g_boxes]):
            if box.size != 4:
                continue
            if name not in pids:
                raise AnnotationError(f"{ref_path}: image {name!r} is not in pool.mat")
            row = _match_box(images[name], box)
            if row < 0:
                unmatched += 1
            else:
                pids[name][row] = pid
    if unmatched:
        logger.warning(
            "CUHK-SYSU: %d boxes of %s match no valid box of %s; not labelled",
            unmatched,
            ref_path,
            paths.images_mat,
        )

    gallery_dicts = []
    for name in pool:
        record = _image_dict(paths, name)
        record["annotations"] = _annotations(images[name], pids[name])
        gallery_dicts.append(record)
    gallery_index = {name: i for i, name in enumerate(pool)}

    queries = [
        SearchQuery(image_id=name, box=xywh_to_xyxy(box)[0], person_id=int(pid), camera_id=-1)
        for name, box, pid in zip(reference.image_ids, reference.boxes, reference.person_ids)
    ]
    query_dicts = []
    size_cache: dict[str, tuple[int, int]] = {}
    for index, query in enumerate(queries):
        if query.image_id not in images:
            raise AnnotationError(f"{ref_path}: query image {query.image_id!r} not in Images.mat")
        if query.image_id not in size_cache:
            size_cache[query.image_id] = image_size(os.path.join(paths.image_dir, query.image_id))
        height, width = size_cache[query.image_id]
        query_dicts.append(
            {
                "file_name": os.path.join(paths.image_dir, query.image_id),
                "image_id": query.image_id,
                "height": height,
                "width": width,
                "camera_id": -1,
                "query_index": index,
                "query_box": [float(v) for v in query.box],
                "person_id": query.person_id,
            }
        )

    loaders: dict[str, Callable[[], QueryGalleries]] = {}
    for n in sizes:
        if n == ref_size:  # already parsed
            loaders[f"gallery_{n}"] = _bind(
                _galleries_variant,
                f"gallery_{n}",
                reference,
                np.arange(len(queries), dtype=np.int64),
                gallery_index,
                ref_path,
            )
        else:
            loaders[f"gallery_{n}"] = _bind(
                _load_gallery_variant, paths.test_mat(n), n, reference, gallery_index
            )
    for name, (file_name, variable) in _SUBSETS.items():
        path = paths.subset_mat(file_name)
        if os.path.isfile(path):
            loaders[name] = _bind(
                _load_subset_variant, name, path, variable, reference, gallery_index, strict_sizes
            )
        elif strict_sizes:
            raise FileNotFoundError(f"CUHK-SYSU query subset file not found: {path}")
    all_variant = _all_variant(reference.person_ids, pool, gallery_dicts, queries)
    loaders["all"] = lambda: all_variant
    protocol = SearchProtocol(
        name=protocol_name,
        gallery_image_ids=list(pool),
        gallery_camera_ids=np.full(len(pool), -1, dtype=np.int64),
        queries=queries,
        variant_loaders=loaders,
        default_variant=f"gallery_{ref_size}",
    )
    return gallery_dicts + query_dicts, protocol


def _bind(fn: Callable[..., QueryGalleries], *args) -> Callable[[], QueryGalleries]:
    """A zero-argument loader calling ``fn(*args)`` (avoids late binding in loops)."""

    def load() -> QueryGalleries:
        return fn(*args)

    return load
