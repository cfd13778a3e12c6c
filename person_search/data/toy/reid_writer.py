"""Toy re-id dataset in the Market-1501 layout, with parsing masks and occluded queries.

Layout written under ``out_dir`` (what :func:`person_search.data.datasets.reid.load_market_style`
reads, registered as ``toy_market1501_train/test`` at ``$DETECTRON2_DATASETS/toy_market1501``)::

    bounding_box_train/  bounding_box_test/  query/         person crops, JPEG
    parsing/{bounding_box_train,bounding_box_test,query}/<stem>.png   class indices (LIP labels)
    generation.json                                        the arguments used, the sizes
    toy_info.json                                          the sizes (like the other toy sets)

Names follow Market-1501: ``PPPP_cCsS_FFFFFF_NN.jpg`` (person id, camera, sequence, frame,
detection index). Person id = ``ToyIdentity.pid + 1`` of ``make_identities(num_ids, seed)``, the
same call (same seed, same ``num_ids``) that gives the person-search toy sets their identities, so
toy identity ``k`` is the same synthetic person in both. The first half of the identities is the
training set, the second half the test set (disjoint, as in Market-1501). Id ``0000`` marks
distractors (other people, badly cropped) and ``-1`` junk crops (mostly background), both in
``bounding_box_test`` only.

"Cameras" differ by background colour and texture, lighting (brightness) and person scale. A
fraction of the queries (and a smaller one of the gallery) is occluded by an object covering
part of the body, for an Occluded-DukeMTMC-like test; the parsing mask marks the occluder as
background. Masks follow the parsing-map layout of ``datasets/README.md``: one single-channel PNG
per image, the image's size, under ``parsing/`` mirroring the image folders, with LIP labels
(what a LIP/JPPNet parser would output), so a LIP grouping (``INPUT.REID.PARSING_GROUPS``, e.g.
SGSFA's) applies: head -> 13 (face), upper body -> 5 (upper clothes), lower body -> 9 (pants),
shoes -> 18 (shoe), hat -> 1 (hat), bag -> 0 (LIP has no bag class).
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from .identities import PARSING_CLASSES, ToyIdentity, make_identities, render_person
from .io import atomic_output_dir, save_jpeg

__all__ = ["TOY_TO_LIP", "write_market1501"]

# Toy parsing class (index into PARSING_CLASSES) -> LIP label; the accessory is resolved per
# identity (hat -> LIP 1 "Hat", bag -> 0 background).
TOY_TO_LIP = {"background": 0, "head": 13, "upper_body": 5, "lower_body": 9, "shoes": 18}
_LIP_HAT = 1
# Seed offsets of the independent random streams (distractor identities, cameras, images).
_DISTRACTOR_SEED = 7919
_FOLDERS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}
# Fraction of a crop's height/width an occluder covers, and a junk crop's person fraction.
_OCCLUDER_RANGE = (0.3, 0.5)
_JUNK_PERSON_RANGE = (0.1, 0.25)


def _lip_table(identity: ToyIdentity) -> np.ndarray:
    table = np.zeros(len(PARSING_CLASSES), dtype=np.uint8)
    for i, name in enumerate(PARSING_CLASSES):
        if name in TOY_TO_LIP:
            table[i] = TOY_TO_LIP[name]
        elif name == "accessory":
            table[i] = _LIP_HAT if identity.accessory == "hat" else 0
        else:
            raise ValueError(f"toy parsing class {name!r} has no LIP mapping")
    return table


class _Camera:
    """Appearance of one toy camera: background colour/texture, lighting, person scale."""

    def __init__(self, rng: np.random.Generator):
        self.background = rng.integers(40, 220, size=3).astype(np.float64)
        self.gradient = rng.uniform(-40, 40, size=3)
        self.brightness = float(rng.uniform(0.7, 1.2))
        self.scale = float(rng.uniform(0.75, 0.95))

    def background_image(self, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        t = np.linspace(0.0, 1.0, h)[:, None, None]
        img = self.background + self.gradient * t + rng.normal(0.0, 8.0, size=(h, w, 3))
        return img


def _render_crop(
    identity: ToyIdentity, cam: _Camera, h: int, w: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, 3) uint8 RGB crop of ``identity`` seen by ``cam`` and its (h, w) LIP mask."""
    ph = max(8, int(round(h * cam.scale * rng.uniform(0.93, 1.0))))
    pw = max(4, min(w, int(round(ph / identity.aspect))))
    patch, toy_mask = render_person(identity, ph, pw, rng, brightness=cam.brightness)
    y0 = int(rng.integers(0, h - ph + 1))
    x0 = int(rng.integers(0, w - pw + 1))
    image = cam.background_image(h, w, rng)
    mask = np.zeros((h, w), dtype=np.uint8)
    body = toy_mask > 0
    image[y0 : y0 + ph, x0 : x0 + pw][body] = patch[body]
    mask[y0 : y0 + ph, x0 : x0 + pw] = _lip_table(identity)[toy_mask]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def _occlude(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Cover one side of the crop with an object (in place); the mask marks it background."""
    h, w = mask.shape
    frac = rng.uniform(*_OCCLUDER_RANGE)
    side = ("bottom", "top", "left", "right")[int(rng.integers(0, 4))]
    region = np.zeros((h, w), dtype=bool)
    if side == "bottom":
        region[int(round(h * (1 - frac))) :] = True
    elif side == "top":
        region[: int(round(h * frac))] = True
    elif side == "left":
        region[:, : int(round(w * frac))] = True
    else:
        region[:, int(round(w * (1 - frac))) :] = True
    colour = rng.integers(0, 256, size=3)
    noise = rng.normal(0.0, 6.0, size=(int(region.sum()), 3))
    image[region] = np.clip(colour + noise, 0, 255).astype(np.uint8)
    mask[region] = 0


def _partial_crop(
    image: np.ndarray, mask: np.ndarray, frac: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A badly placed detection: a ``frac``-sized window of the crop, resized back."""
    h, w = mask.shape
    ch, cw = max(2, int(round(h * frac))), max(2, int(round(w * np.sqrt(frac))))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    img = Image.fromarray(image[y0 : y0 + ch, x0 : x0 + cw]).resize((w, h), Image.BILINEAR)
    msk = Image.fromarray(mask[y0 : y0 + ch, x0 : x0 + cw]).resize((w, h), Image.NEAREST)
    return np.asarray(img), np.asarray(msk)


def write_market1501(
    out_dir: str,
    seed: int,
    *,
    num_ids: int = 40,
    num_cameras: int = 4,
    images_per_camera: tuple[int, int] = (1, 3),
    max_query_cameras: int = 2,
    height: int = 128,
    width: int = 64,
    occluded_query_fraction: float = 0.5,
    occluded_gallery_fraction: float = 0.1,
    num_distractors: int = 10,
    num_junk: int = 6,
    overwrite: bool = False,
) -> dict:
    """Write the toy Market-1501-layout re-id set to ``out_dir`` (atomically); deterministic.

    Args:
        out_dir: output folder (replaced as a whole only if ``overwrite``).
        seed: seed of the identities (shared with the person-search toy sets) and of the rest.
        num_ids: identities; the first ``ceil(num_ids / 2)`` train, the others test (>= 4).
        num_cameras: cameras (>= 2); each identity is seen by 2..num_cameras of them.
        images_per_camera: (min, max) crops of an identity per camera it is seen by.
        max_query_cameras: a test identity has one query in each of 1..this many cameras.
        height, width: crop size in pixels.
        occluded_query_fraction, occluded_gallery_fraction: share of occluded crops.
        num_distractors, num_junk: crops with id 0000 and -1 in ``bounding_box_test``.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        summary: image counts per folder (junk and distractor files included in "gallery"),
        identity counts and the number of occluded queries (also in ``toy_info.json``).
    """
    if num_ids < 4 or num_cameras < 2 or num_cameras > 9:
        raise ValueError(
            f"write_market1501: need num_ids >= 4 and 2 <= num_cameras <= 9, got {num_ids}, "
            f"{num_cameras}"
        )
    if not 1 <= images_per_camera[0] <= images_per_camera[1]:
        raise ValueError(f"write_market1501: bad images_per_camera {images_per_camera}")
    if height < 16 or width < 8:
        raise ValueError(f"write_market1501: crop {height}x{width} too small (>= 16x8)")
    args = {k: v for k, v in locals().items() if k not in ("out_dir", "overwrite")}
    identities = make_identities(num_ids, seed)
    distractors = make_identities(max(num_distractors, 1), seed + _DISTRACTOR_SEED)
    rng = np.random.default_rng([seed, 1501])
    cameras = [_Camera(rng) for _ in range(num_cameras)]
    num_train = (num_ids + 1) // 2
    frame = np.zeros(num_cameras + 1, dtype=np.int64)  # per-camera frame counter
    summary = {"train": 0, "query": 0, "gallery": 0, "occluded_queries": 0}

    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        for folder in _FOLDERS.values():
            os.makedirs(os.path.join(tmp, folder))
            os.makedirs(os.path.join(tmp, "parsing", folder))

        def save(split: str, name_pid: str, cam: int, image: np.ndarray, mask: np.ndarray) -> None:
            frame[cam] += int(rng.integers(1, 40))
            stem = f"{name_pid}_c{cam}s1_{int(frame[cam]):06d}_00"
            folder = _FOLDERS[split]
            save_jpeg(os.path.join(tmp, folder, stem + ".jpg"), image)
            Image.fromarray(mask).save(os.path.join(tmp, "parsing", folder, stem + ".png"))
            summary[split] += 1

        for identity in identities:
            is_train = identity.pid < num_train
            cams = np.sort(
                rng.choice(num_cameras, size=int(rng.integers(2, num_cameras + 1)), replace=False)
            )
            name_pid = f"{identity.pid + 1:04d}"
            for c in cams:
                for _ in range(int(rng.integers(images_per_camera[0], images_per_camera[1] + 1))):
                    image, mask = _render_crop(identity, cameras[c], height, width, rng)
                    if not is_train and rng.uniform() < occluded_gallery_fraction:
                        _occlude(image, mask, rng)
                    save("train" if is_train else "gallery", name_pid, int(c) + 1, image, mask)
            if is_train:
                continue
            n_query = int(rng.integers(1, min(max_query_cameras, len(cams)) + 1))
            for c in rng.choice(cams, size=n_query, replace=False):
                image, mask = _render_crop(identity, cameras[c], height, width, rng)
                if rng.uniform() < occluded_query_fraction:
                    _occlude(image, mask, rng)
                    summary["occluded_queries"] += 1
                save("query", name_pid, int(c) + 1, image, mask)

        for i in range(num_distractors):
            c = int(rng.integers(0, num_cameras))
            image, mask = _render_crop(distractors[i], cameras[c], height, width, rng)
            image, mask = _partial_crop(image, mask, rng.uniform(0.5, 0.8), rng)
            save("gallery", "0000", c + 1, image, mask)
        for _ in range(num_junk):
            c = int(rng.integers(0, num_cameras))
            image, mask = _render_crop(distractors[0], cameras[c], height, width, rng)
            image, mask = _partial_crop(image, mask, rng.uniform(*_JUNK_PERSON_RANGE), rng)
            save("gallery", "-1", c + 1, image, mask)

        summary.update(
            train_ids=num_train,
            test_ids=num_ids - num_train,
            distractors=num_distractors,
            junk=num_junk,
        )
        with open(os.path.join(tmp, "generation.json"), "w") as f:
            json.dump({"format": "market1501", "args": args, "summary": summary}, f, indent=1)
        with open(os.path.join(tmp, "toy_info.json"), "w") as f:
            json.dump(summary, f, indent=1, sort_keys=True)
    return summary
