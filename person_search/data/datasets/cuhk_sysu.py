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

Boxes are stored x, y, w, h and converted once here to ``XYXY_ABS`` with x2 = x + w. Bad boxes
follow the policy of :mod:`.load_checks` (zero-area ``Images.mat`` boxes dropped and counted,
negative or non-finite ones an error naming file, record and values). Train ``person_id`` =
index of the identity in ``Train`` (0..N-1), -1 for every other box (matched by exact
coordinates). Test ``person_id`` = the number in the query's ``idname`` (``p10581`` -> 10581) for
the boxes the gallery lists name, -1 otherwise. Every protocol file present is read and checked
when the test split is loaded (through the protocol cache, see :mod:`.cuhk_protocol`); a variant's
galleries are built when it is first asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from detectron2.structures import BoxMode

from ..search_protocol import QueryGalleries, SearchProtocol, SearchQuery
from .array_cache import ArrayCache
from .cuhk_protocol import ProtocolFile, pool_indices, query_galleries, read_protocol_file
from .load_checks import (
    DROP_NEGATIVE,
    DROP_ZERO_AREA,
    NAMED_EXAMPLES,
    LoadSummary,
    PersonSearchTestSplit,
    PersonSearchTrainSplit,
    check_annotation_boxes,
)
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
from .options import cache_directory, data_options

__all__ = [
    "CUHK_SYSU_GALLERY_SIZES",
    "CUHK_SYSU_SIZES",
    "load_cuhk_sysu_test",
    "load_cuhk_sysu_train",
    "protocol_cache",
]

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


def protocol_cache() -> ArrayCache | None:
    """The protocol cache the current options (:mod:`.options`) ask for, or None."""
    options = data_options()
    return ArrayCache(cache_directory(options)) if options.protocol_cache else None


def _read_protocol(path: str, variable: str) -> ProtocolFile:
    """A protocol file, through the cache when it is on and the file is large enough."""
    cache = protocol_cache()
    small = os.path.isfile(path) and os.path.getsize(path) < data_options().cache_min_bytes
    return read_protocol_file(path, variable, None if small else cache)


def _check_size(strict: bool, what: str, got: int) -> None:
    if strict and got != CUHK_SYSU_SIZES[what]:
        raise AnnotationError(
            f"CUHK-SYSU: expected {CUHK_SYSU_SIZES[what]} {what}, found {got} "
            "(incomplete or modified dataset; the toy dataset loads with strict_sizes=False)"
        )


@dataclass
class _Images:
    """Images.mat: per image the kept x, y, w, h boxes, and the dropped ones."""

    boxes: dict[str, np.ndarray]  # image name -> (N, 4) kept boxes, in file order
    dropped: dict[str, list[tuple[np.ndarray, str]]]  # image name -> [(box, reason)]


def _read_images(paths: _Paths, drop_negative: bool) -> _Images:
    """Read Images.mat and apply the bad-box policy to every box (an error anywhere in the
    file stops the load; the drops are counted per split, see :func:`_finish_summary`)."""
    path = paths.images_mat
    img = load_mat(path, ["Img"])["Img"]
    names, per_image = [], []
    for i, rec in enumerate(records(img, f"{path}: Img")):
        where = f"{path}: Img[{i}]"
        names.append(to_str(field(rec, "imname", where), f"{where}.imname"))
        box_recs = records(field(rec, "box", where), f"{where}.box")
        per_image.append(
            [
                to_box(field(b, "idlocate", f"{where}.box"), f"{where}.box.idlocate")
                for b in box_recs
            ]
        )
    rows = [(i, j, b) for i, boxes in enumerate(per_image) for j, b in enumerate(boxes) if b.size]
    xywh = np.asarray([b for _, _, b in rows], dtype=np.float64).reshape(-1, 4)

    def where(k: int) -> str:
        i, j, _ = rows[k]
        return f"{path}: Img[{i}] ({names[i]}).box[{j}].idlocate"

    scratch = LoadSummary(path)  # drops are counted for the split's images only
    keep = check_annotation_boxes(xywh, where, scratch, drop_negative=drop_negative)
    negative = (xywh[:, 2] < 0) | (xywh[:, 3] < 0)
    reasons = [DROP_NEGATIVE if n else DROP_ZERO_AREA for n in negative.tolist()]
    out = _Images({}, {})
    image_of = np.asarray([i for i, _, _ in rows], dtype=np.int64)  # ascending
    bounds = np.searchsorted(image_of, np.arange(len(names) + 1))
    for i, name in enumerate(names):
        if name in out.boxes:
            raise AnnotationError(f"{path}: image {name!r} listed twice in Img")
        mine = slice(bounds[i], bounds[i + 1])
        out.boxes[name] = xywh[mine][keep[mine]]
        dropped = bounds[i] + np.flatnonzero(~keep[mine])
        out.dropped[name] = [(xywh[k], reasons[k]) for k in dropped.tolist()]
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


def _why(images: _Images, name: str, box: np.ndarray) -> str:
    """The text ``" (dropped: <reason>)"`` when ``box`` of image ``name`` was dropped, else
    an empty string."""
    for dropped, reason in images.dropped.get(name, ()):
        if np.array_equal(dropped, box):
            return f" (dropped: {reason})"
    return ""


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


def _finish_summary(summary: LoadSummary, dicts: list[dict], images: _Images) -> None:
    """Counts of the split's images, kept boxes, identities and dropped boxes."""
    for record in dicts:
        for _, reason in images.dropped[record["image_id"]]:
            summary.drop(reason, 1)
    annotations = [a for d in dicts for a in d.get("annotations", ())]
    summary.images = len(dicts)
    summary.boxes = len(annotations)
    summary.identities = len({a["person_id"] for a in annotations if a["person_id"] >= 0})


def load_cuhk_sysu_train(
    root: str, *, strict_sizes: bool = False, drop_negative_boxes: bool | None = None
) -> PersonSearchTrainSplit:
    """Load the CUHK-SYSU training split.

    Args:
        drop_negative_boxes: see :mod:`.load_checks` (None: the process option, :mod:`.options`).

    Returns:
        dataset dicts of the training images (all images minus the pool), the number of
        training identities N (``person_id`` in 0..N-1, -1 = unlabelled), the load summary.
    """
    if drop_negative_boxes is None:
        drop_negative_boxes = data_options().drop_negative_boxes
    paths = _Paths(root)
    summary = LoadSummary(f"CUHK-SYSU train split at {root}")
    images = _read_images(paths, drop_negative_boxes)
    pool = set(_read_pool(paths))
    _check_size(strict_sizes, "images", len(images.boxes))
    _check_size(strict_sizes, "test_images", len(pool))
    missing = pool.difference(images.boxes)
    if missing:
        raise AnnotationError(
            f"{paths.pool_mat}: {len(missing)} pool images are not in {paths.images_mat} "
            f"(e.g. {sorted(missing)[:3]})"
        )
    train_names = [name for name in images.boxes if name not in pool]
    _check_size(strict_sizes, "train_images", len(train_names))
    pids = {name: np.full(len(images.boxes[name]), -1, dtype=np.int64) for name in train_names}

    path = paths.train_mat
    identities = records(load_mat(path, ["Train"])["Train"], f"{path}: Train")
    _check_size(strict_sizes, "train_ids", len(identities))
    unmatched = []
    for pid, rec in enumerate(identities):
        where = f"{path}: Train[{pid}]"
        for scene in records(field(rec, "scene", where), f"{where}.scene"):
            name = to_str(field(scene, "imname", f"{where}.scene"), f"{where}.scene.imname")
            box = to_box(field(scene, "idlocate", f"{where}.scene"), f"{where}.scene.idlocate")
            if name not in pids:
                raise AnnotationError(f"{where}: image {name!r} is not a training image")
            row = _match_box(images.boxes[name], box) if box.size else -1
            if row < 0:
                unmatched.append((pid, name, box))
                continue
            pids[name][row] = pid
    if unmatched:
        examples = ", ".join(
            f"identity {pid} in {name} {box.tolist()}{_why(images, name, box)}"
            for pid, name, box in unmatched[:NAMED_EXAMPLES]
        )
        summary.note(
            f"{len(unmatched)} boxes of {path} match no kept box of {paths.images_mat}; they stay "
            f"unlabelled (e.g. {examples})"
        )
    dicts = []
    for name in train_names:
        record = _image_dict(paths, name)
        record["annotations"] = _annotations(images.boxes[name], pids[name])
        dicts.append(record)
    _finish_summary(summary, dicts, images)
    if summary.identities != len(identities):
        labelled = {int(p) for p in np.concatenate([*pids.values(), np.zeros(0, np.int64)])}
        unused = [pid for pid in range(len(identities)) if pid not in labelled]
        summary.note(
            f"{len(unused)} of the {len(identities)} identities of {path} label no box (e.g. "
            f"Train{unused[:NAMED_EXAMPLES]}); the identity table keeps their rows"
        )
    return PersonSearchTrainSplit(dicts, len(identities), summary)


def _check_same_queries(reference: ProtocolFile, other: ProtocolFile) -> None:
    same = (
        np.array_equal(reference.query_names, other.query_names)
        and np.array_equal(reference.query_boxes, other.query_boxes)
        and np.array_equal(reference.query_person_ids, other.query_person_ids)
    )
    if not same:
        raise AnnotationError(
            f"{other.path}: its queries differ from those of {reference.path} (the protocol "
            "needs the same queries, in the same order, in every TestG<N>.mat)"
        )


def _subset_queries(subset: ProtocolFile, reference: ProtocolFile) -> np.ndarray:
    """(Q_subset,) index of each subset query among the reference's queries (by image and
    box); a query not among them is an error naming the file and the record."""
    key_to_index = {
        (image_id, tuple(box)): i
        for i, (image_id, box) in enumerate(
            zip(reference.query_names.tolist(), reference.query_boxes.tolist())
        )
    }
    indices = []
    for q, (image_id, box) in enumerate(
        zip(subset.query_names.tolist(), subset.query_boxes.tolist())
    ):
        index = key_to_index.get((image_id, tuple(box)))
        if index is None:
            raise AnnotationError(
                f"{subset.where(q)}: query ({image_id}, box {box}) is not one of the main "
                "protocol's queries"
            )
        indices.append(index)
    return np.asarray(indices, dtype=np.int64)


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


def _label_gallery(
    reference: ProtocolFile,
    images: _Images,
    pool: list[str],
    summary: LoadSummary,
) -> dict[str, np.ndarray]:
    """Per pool image, the identity of each kept box (from the reference protocol file)."""
    pids = {name: np.full(len(images.boxes[name]), -1, dtype=np.int64) for name in pool}
    ref = reference
    box_index = np.cumsum(ref.gallery_has_box) - 1
    lost = []
    for q in range(ref.num_queries):
        pid = int(ref.query_person_ids[q])
        entries = range(ref.gallery_offsets[q], ref.gallery_offsets[q + 1])
        located = [(str(ref.query_names[q]), ref.query_boxes[q])]
        located += [
            (str(ref.names[ref.gallery_names[e]]), ref.gallery_boxes[box_index[e]])
            for e in entries
            if ref.gallery_has_box[e]
        ]
        for name, box in located:
            if name not in pids:
                raise AnnotationError(f"{ref.where(q)}: image {name!r} is not in pool.mat")
            row = _match_box(images.boxes[name], box)
            if row < 0:
                lost.append((q, pid, name, box))
            else:
                pids[name][row] = pid
    if lost:
        examples = "; ".join(
            f"query {q} (person {pid}) in {name} {box.tolist()}{_why(images, name, box)}"
            for q, pid, name, box in lost[:NAMED_EXAMPLES]
        )
        summary.note(
            f"{len(lost)} boxes {reference.path} locates a query's person at match no kept box of "
            f"Images.mat: not labelled, so no positive of the 'all' variant nor a detection "
            f"ground truth ({examples})"
        )
    return pids


def _note_zero_area_positives(pf: ProtocolFile, summary: LoadSummary) -> None:
    zero = (pf.gallery_boxes[:, 2] == 0) | (pf.gallery_boxes[:, 3] == 0)
    if zero.any():
        entries = np.flatnonzero(pf.gallery_has_box)[zero]
        where = ", ".join(pf.where(*pf.entry_location(int(e))) for e in entries[:NAMED_EXAMPLES])
        summary.note(
            f"{len(entries)} gallery boxes of {pf.path} have no area; kept as listed (positives "
            f"no detection can match): {where}"
        )


def load_cuhk_sysu_test(
    root: str,
    *,
    strict_sizes: bool = False,
    protocol_name: str = "cuhk_sysu",
    drop_negative_boxes: bool | None = None,
) -> PersonSearchTestSplit:
    """Load the CUHK-SYSU test split and its search protocol.

    Every protocol file present is read once and checked here (names, boxes, identity names,
    the same queries in every ``TestG<N>.mat``, gallery images in the pool, subset queries among
    the main ones), through the protocol cache; its compact arrays are kept and the variants'
    galleries built from them when first asked for.

    Returns:
        dataset dicts: the pool's gallery images (with annotations, original identity ids) then
        one query dict per query (``query_index`` into ``protocol.queries``); the
        :class:`SearchProtocol` with variants ``gallery_<N>`` for every TestG<N>.mat present,
        ``occlusion`` / ``resolution`` when their files exist, and ``all``
        (``default_variant``: ``gallery_100``, or the largest size present when TestG100.mat is
        absent, as in the small toy dataset); the load summary.
    """
    if drop_negative_boxes is None:
        drop_negative_boxes = data_options().drop_negative_boxes
    paths = _Paths(root)
    summary = LoadSummary(f"CUHK-SYSU test split at {root}")
    images = _read_images(paths, drop_negative_boxes)
    pool = _read_pool(paths)
    _check_size(strict_sizes, "images", len(images.boxes))
    _check_size(strict_sizes, "test_images", len(pool))
    sizes = [n for n in CUHK_SYSU_GALLERY_SIZES if os.path.isfile(paths.test_mat(n))]
    if strict_sizes and len(sizes) != len(CUHK_SYSU_GALLERY_SIZES):
        missing = [paths.test_mat(n) for n in CUHK_SYSU_GALLERY_SIZES if n not in sizes]
        raise FileNotFoundError(f"CUHK-SYSU protocol files not found: {missing}")
    if not sizes:
        looked = [paths.test_mat(n) for n in CUHK_SYSU_GALLERY_SIZES]
        raise FileNotFoundError(f"no CUHK-SYSU protocol file found: none of {looked} exists")
    for name in pool:
        if name not in images.boxes:
            raise AnnotationError(f"{paths.pool_mat}: pool image {name!r} is not in Images.mat")
    # The reference query list: TestG100 (the headline protocol) when present.
    ref_size = _DEFAULT_GALLERY_SIZE if _DEFAULT_GALLERY_SIZE in sizes else max(sizes)
    reference = _read_protocol(paths.test_mat(ref_size), f"TestG{ref_size}")
    _check_size(strict_sizes, "queries", reference.num_queries)
    gallery_index = {name: i for i, name in enumerate(pool)}

    # Read and check every protocol file now (before any inference). Their compact arrays are
    # kept (the six real files: ~110 MB), so that a variant never reads its file again.
    loaders: dict[str, Callable[[], QueryGalleries]] = {}
    all_queries = np.arange(reference.num_queries, dtype=np.int64)
    for n in sizes:
        pf = reference if n == ref_size else _read_protocol(paths.test_mat(n), f"TestG{n}")
        _check_same_queries(reference, pf)
        pool_indices(pf, gallery_index)
        _note_zero_area_positives(pf, summary)
        loaders[f"gallery_{n}"] = _bind(
            query_galleries, f"gallery_{n}", pf, all_queries, gallery_index
        )
    for name, (file_name, variable) in _SUBSETS.items():
        path = paths.subset_mat(file_name)
        if not os.path.isfile(path):
            if strict_sizes:
                raise FileNotFoundError(f"CUHK-SYSU query subset file not found: {path}")
            continue
        subset = _read_protocol(path, variable)
        _check_size(strict_sizes, name, subset.num_queries)
        indices = _subset_queries(subset, reference)
        pool_indices(subset, gallery_index)
        _note_repeated_queries(subset, summary)
        loaders[name] = _bind(query_galleries, name, subset, indices, gallery_index)

    # Label the gallery boxes with the identities the protocol locates in them. Every gallery
    # list holds all images of its query person (they come first), so one file is enough.
    pids = _label_gallery(reference, images, pool, summary)
    gallery_dicts = []
    for name in pool:
        record = _image_dict(paths, name)
        record["annotations"] = _annotations(images.boxes[name], pids[name])
        gallery_dicts.append(record)

    queries = [
        SearchQuery(image_id=str(name), box=xywh_to_xyxy(box)[0], person_id=int(pid), camera_id=-1)
        for name, box, pid in zip(
            reference.query_names, reference.query_boxes, reference.query_person_ids
        )
    ]
    query_dicts = []
    size_cache: dict[str, tuple[int, int]] = {}
    for index, query in enumerate(queries):
        if query.image_id not in images.boxes:
            raise AnnotationError(
                f"{reference.where(index)}: query image {query.image_id!r} not in Images.mat"
            )
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
    all_variant = _all_variant(reference.query_person_ids, pool, gallery_dicts, queries)
    loaders["all"] = lambda: all_variant
    protocol = SearchProtocol(
        name=protocol_name,
        gallery_image_ids=list(pool),
        gallery_camera_ids=np.full(len(pool), -1, dtype=np.int64),
        queries=queries,
        variant_loaders=loaders,
        default_variant=f"gallery_{ref_size}",
    )
    _note_repeated_queries(reference, summary)
    _finish_summary(summary, gallery_dicts, images)
    summary.queries = len(queries)
    summary.variants = list(loaders)
    return PersonSearchTestSplit(gallery_dicts + query_dicts, protocol, summary)


def _note_repeated_queries(reference: ProtocolFile, summary: LoadSummary) -> None:
    first: dict[tuple, int] = {}
    for q, key in enumerate(
        zip(
            reference.query_names.tolist(),
            map(tuple, reference.query_boxes.tolist()),
            reference.query_person_ids.tolist(),
        )
    ):
        if key in first:
            summary.note(
                f"{reference.where(q)} repeats query {first[key]}: evaluated twice, as listed"
            )
        first.setdefault(key, q)


def _bind(fn: Callable[..., QueryGalleries], *args) -> Callable[[], QueryGalleries]:
    """A zero-argument loader calling ``fn(*args)`` (avoids late binding in loops)."""

    def load() -> QueryGalleries:
        return fn(*args)

    return load
