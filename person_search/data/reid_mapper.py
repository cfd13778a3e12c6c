"""Dataset mapper for person crops (re-id): reads, augments and packs one dataset dict.

Training: resize to ``INPUT.REID.SIZE_TRAIN``, random horizontal flip, zero padding + random crop
back to the size, random erasing. Test: resize to ``INPUT.REID.SIZE_TEST`` only. Normalisation is
left to the model (``MODEL.PIXEL_MEAN/STD``), as in Detectron2: the image stays uint8.

The parsing mask (if loaded) goes through the same geometric transforms as the image (nearest
neighbour resize, same flip, padding with background 0, same crop). Random erasing changes the
image only: the mask keeps describing where the body is, the erased patch plays an occluder the
model must see through (the mask is a target, not an input).

``REID_MAPPER_REGISTRY`` holds the re-id mappers a config can select with ``INPUT.REID.MAPPER``
(:func:`build_reid_mapper`); the re-id loaders build theirs that way.

Parsing maps (``datasets/README.md``): one single-channel PNG of parser class indices per image;
a map whose size differs from its image is resized to it (nearest neighbour). An image without
a map is an error naming it, unless images without masks are allowed: then its "parsing" and
"part_masks" are filled with :data:`MISSING_PARSING` (-1, unknown) and heads skip its mask
losses.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.utils.registry import Registry
from fvcore.transforms.transform import CropTransform, PadTransform, TransformList
from PIL import Image

from ..utils.registry import get_registered

__all__ = [
    "MISSING_PARSING",
    "REID_MAPPER_REGISTRY",
    "RandomErasing",
    "RandomPadCrop",
    "ReIDDatasetMapper",
    "build_reid_mapper",
    "check_parsing_files",
    "check_parsing_groups",
    "group_parsing",
]

REID_MAPPER_REGISTRY = Registry("REID_MAPPER")
REID_MAPPER_REGISTRY.__doc__ = """
Registry for re-id dataset mappers: a callable turning one re-id dataset dict into the model's
input dict (see :class:`ReIDDatasetMapper` for the keys the re-id models read). The registered
object is called with ``obj(cfg, is_train)``.
"""

# How many random rectangles random erasing draws before giving up (Zhong et al.: 100).
_ERASING_ATTEMPTS = 100
_ERASING_FILLS = ("image_mean", "pixel_mean", "random")
# Value of every pixel of "parsing" and "part_masks" for an image without a parsing map (allowed
# by INPUT.REID.ALLOW_MISSING_PARSING): no parser class or mask value is negative.
MISSING_PARSING = -1
# How many images without a map an error message names.
_NAMED_MISSING = 5


def group_parsing(parsing: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Binary part masks from a parsing map of raw classes.

    Args:
        parsing: (H, W) integer class indices.
        groups: G sequences of raw class indices, one per part.

    Returns:
        (1 + G, H, W) float32 in {0, 1}: channel 0 the whole body (union of all groups), then one
        channel per group in the given order.
    """
    parts = np.stack([np.isin(parsing, np.asarray(g, dtype=parsing.dtype)) for g in groups])
    whole = parts.any(axis=0, keepdims=True)
    return np.concatenate([whole, parts]).astype(np.float32)


def check_parsing_groups(groups: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Validate a class grouping (``INPUT.REID.PARSING_GROUPS``): non-empty groups of distinct
    class indices in [0, 255], no class in two groups. Returns it as tuples."""
    out = tuple(tuple(int(c) for c in g) for g in groups)
    seen: dict[int, int] = {}
    for i, group in enumerate(out):
        if not group:
            raise ValueError(f"INPUT.REID.PARSING_GROUPS: group {i} is empty")
        for c in group:
            if not 0 <= c <= 255:
                raise ValueError(f"INPUT.REID.PARSING_GROUPS: class {c} not in [0, 255]")
            if c in seen and seen[c] != i:
                raise ValueError(
                    f"INPUT.REID.PARSING_GROUPS: class {c} is in groups {seen[c]} and {i}"
                )
            seen[c] = i
    return out


class RandomPadCrop(T.Augmentation):
    """Pad by ``padding`` pixels on each side (image 0, segmentation 0), then crop a random
    window of the unpadded size (the "pad 10 + random crop" of the re-id bag of tricks)."""

    def __init__(self, padding: int):
        super().__init__()
        if padding < 0:
            raise ValueError(f"RandomPadCrop: padding must be >= 0, got {padding}")
        self.padding = padding

    def get_transform(self, image: np.ndarray) -> TransformList:
        h, w = image.shape[:2]
        p = self.padding
        x0, y0 = (int(v) for v in np.random.randint(0, 2 * p + 1, size=2))
        return TransformList(
            [PadTransform(p, p, p, p, orig_w=w, orig_h=h), CropTransform(x0, y0, w, h)]
        )


class RandomErasing:
    """Random erasing (Zhong et al., AAAI 2020 / arXiv 2017) on an (H, W, C) uint8 image.

    With probability ``prob`` one rectangle of area in ``area_range`` (fraction of the image) and
    aspect ratio h/w in [min_aspect, 1/min_aspect] (log-uniform) is filled with ``fill``:
    "image_mean" (per-channel mean of the image), "pixel_mean" (the given ``pixel_mean``, in the
    image's channel order) or "random" (uniform noise). Uses numpy's global RNG like Detectron2's
    augmentations (seeded per worker by the data loader).
    """

    def __init__(
        self,
        *,
        prob: float,
        area_range: tuple[float, float],
        min_aspect: float,
        fill: str,
        pixel_mean: Sequence[float] | None = None,
    ):
        if fill not in _ERASING_FILLS:
            raise ValueError(f"INPUT.REID.REA.FILL must be one of {_ERASING_FILLS}, got {fill!r}")
        if fill == "pixel_mean" and pixel_mean is None:
            raise ValueError("random erasing with fill 'pixel_mean' needs pixel_mean")
        if not 0 < area_range[0] <= area_range[1] <= 1:
            raise ValueError(f"INPUT.REID.REA.AREA_RANGE must be in (0, 1], got {area_range}")
        if not 0 < min_aspect <= 1:
            raise ValueError(f"INPUT.REID.REA.MIN_ASPECT must be in (0, 1], got {min_aspect}")
        self.prob = prob
        self.area_range = area_range
        self.log_aspect = (math.log(min_aspect), -math.log(min_aspect))
        self.fill = fill
        self.pixel_mean = None if pixel_mean is None else np.asarray(pixel_mean, dtype=np.float64)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Returns a new (H, W, C) uint8 image (the input is never modified)."""
        if np.random.rand() >= self.prob:
            return image
        h, w, c = image.shape
        for _ in range(_ERASING_ATTEMPTS):
            area = np.random.uniform(*self.area_range) * h * w
            aspect = math.exp(np.random.uniform(*self.log_aspect))
            eh, ew = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < eh < h and 0 < ew < w:
                y0, x0 = np.random.randint(0, h - eh + 1), np.random.randint(0, w - ew + 1)
                out = image.copy()
                if self.fill == "image_mean":
                    value = image.reshape(-1, c).mean(axis=0)
                elif self.fill == "pixel_mean":
                    value = self.pixel_mean
                else:
                    value = np.random.uniform(0, 255, size=(eh, ew, c))
                out[y0 : y0 + eh, x0 : x0 + ew] = np.clip(np.rint(value), 0, 255).astype(np.uint8)
                return out
        return image


def _parsing_path(dataset_dict: dict) -> str | None:
    """The dict's parsing map path if the file exists, else None."""
    path = dataset_dict.get("parsing_file")
    return path if path and os.path.isfile(path) else None


def check_parsing_files(dataset_dicts: Sequence[dict], *, allow_missing: bool) -> int:
    """Check that every dict has a parsing map on disk (``INPUT.REID.LOAD_PARSING``).

    Returns:
        the number of dicts without one (0 unless ``allow_missing``).

    Raises:
        FileNotFoundError: some map is missing and ``allow_missing`` is False; names the first
            images and their expected map paths.
    """
    missing = [d for d in dataset_dicts if _parsing_path(d) is None]
    if missing and not allow_missing:
        named = ", ".join(
            f"{d['file_name']} (map {d.get('parsing_file', 'none: no parsing/ folder')})"
            for d in missing[:_NAMED_MISSING]
        )
        raise FileNotFoundError(
            f"{len(missing)} of {len(dataset_dicts)} images have no parsing map, e.g. {named}; "
            "see datasets/README.md, or set INPUT.REID.ALLOW_MISSING_PARSING True to train "
            "them without mask losses"
        )
    return len(missing)


def _read_parsing(path: str, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 class indices of the map at ``path``, resized to ``shape`` = (H, W) with
    nearest neighbour when its size differs."""
    with Image.open(path) as img:
        parsing = np.asarray(img)
    if parsing.ndim != 2:
        raise ValueError(
            f"parsing mask {path} must be one channel of class indices, got {parsing.shape}"
        )
    if parsing.size and (parsing.min() < 0 or parsing.max() > 255):
        raise ValueError(
            f"parsing mask {path} holds values outside [0, 255] "
            f"({parsing.min()}..{parsing.max()}); expected parser class indices"
        )
    parsing = parsing.astype(np.uint8)
    if parsing.shape != shape:
        resized = Image.fromarray(parsing).resize((shape[1], shape[0]), Image.NEAREST)
        parsing = np.asarray(resized)
    return parsing


@REID_MAPPER_REGISTRY.register()
class ReIDDatasetMapper:
    """Map a re-id dataset dict to a model input.

    Output dict::

        {"image": (3, H, W) uint8 tensor in ``image_format``, "person_id": int, "camera_id": int,
         "image_id": str, "split": str, "file_name": str,
         "parsing": (H, W) int64 raw parser classes (only when parsing is loaded),
         "part_masks": (1 + G, H, W) float32 whole body + G groups (only with parsing_groups)}

    An image without a map (allowed by ``allow_missing_parsing``) gets "parsing" and
    "part_masks" of the same shapes filled with :data:`MISSING_PARSING`.
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        size: tuple[int, int],
        image_format: str = "BGR",
        flip_prob: float = 0.5,
        padding: int = 0,
        erasing: RandomErasing | None = None,
        load_parsing: bool = False,
        parsing_groups: Sequence[Sequence[int]] | None = None,
        allow_missing_parsing: bool = False,
    ):
        """
        Args:
            is_train: training (augment) or test (resize only) mapping.
            size: output (height, width) in pixels.
            image_format: Detectron2 image format ("BGR", "RGB").
            flip_prob: horizontal flip probability (training only).
            padding: pixels of zero padding before the random crop (training only; 0 = none).
            erasing: random erasing applied at training time, or None.
            load_parsing: read ``dataset_dict["parsing_file"]`` (a missing one is an error
                naming the image unless ``allow_missing_parsing``).
            parsing_groups: raw classes of each part group, to emit ``"part_masks"``; None or
                empty = no.
            allow_missing_parsing: map an image without a parsing map with -1-filled masks.
        """
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"ReIDDatasetMapper: size must be (height, width) > 0, got {size}")
        augs: list[T.Augmentation] = [T.Resize(tuple(size))]
        if is_train:
            if flip_prob > 0:
                augs.append(T.RandomFlip(prob=flip_prob, horizontal=True, vertical=False))
            if padding > 0:
                augs.append(RandomPadCrop(padding))
        self.augmentations = T.AugmentationList(augs)
        self.size = (int(size[0]), int(size[1]))
        self.is_train = is_train
        self.image_format = image_format
        self.erasing = erasing if is_train else None
        self.load_parsing = load_parsing
        self.allow_missing_parsing = allow_missing_parsing
        self.parsing_groups = check_parsing_groups(parsing_groups) if parsing_groups else None

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict:
        rcfg = cfg.INPUT.REID
        erasing = None
        if is_train and rcfg.REA.ENABLED:
            erasing = RandomErasing(
                prob=rcfg.REA.PROB,
                area_range=tuple(rcfg.REA.AREA_RANGE),
                min_aspect=rcfg.REA.MIN_ASPECT,
                fill=rcfg.REA.FILL,
                pixel_mean=cfg.MODEL.PIXEL_MEAN,
            )
        if len(rcfg.PARSING_GROUPS) != len(rcfg.PARSING_PART_NAMES):
            raise ValueError(
                "INPUT.REID.PARSING_GROUPS and INPUT.REID.PARSING_PART_NAMES differ in length: "
                f"{len(rcfg.PARSING_GROUPS)} vs {len(rcfg.PARSING_PART_NAMES)}"
            )
        return {
            "is_train": is_train,
            "size": tuple(rcfg.SIZE_TRAIN if is_train else rcfg.SIZE_TEST),
            "image_format": cfg.INPUT.FORMAT,
            "flip_prob": rcfg.FLIP_PROB,
            "padding": rcfg.PADDING,
            "erasing": erasing,
            "load_parsing": rcfg.LOAD_PARSING and (is_train or rcfg.LOAD_PARSING_AT_TEST),
            "parsing_groups": rcfg.PARSING_GROUPS if rcfg.LOAD_PARSING else None,
            "allow_missing_parsing": rcfg.ALLOW_MISSING_PARSING,
        }

    def __call__(self, dataset_dict: dict) -> dict:
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        parsing = None
        if self.load_parsing:
            path = _parsing_path(dataset_dict)
            if path is not None:
                parsing = _read_parsing(path, image.shape[:2])
            elif not self.allow_missing_parsing:
                expected = dataset_dict.get("parsing_file", "none: no parsing/ folder")
                raise FileNotFoundError(
                    f"INPUT.REID.LOAD_PARSING is on but image {dataset_dict['file_name']} has no "
                    f"parsing map (expected {expected}; see datasets/README.md, or allow images "
                    "without maps with INPUT.REID.ALLOW_MISSING_PARSING)"
                )
        aug_input = T.AugInput(image, sem_seg=parsing)
        self.augmentations(aug_input)
        image = aug_input.image
        if self.erasing is not None:
            image = self.erasing(image)
        out = {
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "person_id": int(dataset_dict["person_id"]),
            "camera_id": int(dataset_dict["camera_id"]),
            "image_id": dataset_dict["image_id"],
            "split": dataset_dict["split"],
            "file_name": dataset_dict["file_name"],
        }
        if self.load_parsing:
            out.update(self._parsing_targets(None if parsing is None else aug_input.sem_seg))
        return out

    def _parsing_targets(self, parsing: np.ndarray | None) -> dict[str, torch.Tensor]:
        """{"parsing": (H, W) int64, "part_masks": (1 + G, H, W) float32 (with groups)} of a
        transformed map, or both filled with MISSING_PARSING (None: the image has no map)."""
        if parsing is None:
            size = self.size
            out = {"parsing": torch.full(size, MISSING_PARSING, dtype=torch.int64)}
            if self.parsing_groups is not None:
                shape = (1 + len(self.parsing_groups), *size)
                out["part_masks"] = torch.full(shape, float(MISSING_PARSING))
            return out
        out = {"parsing": torch.as_tensor(parsing.astype(np.int64))}
        if self.parsing_groups is not None:
            out["part_masks"] = torch.as_tensor(group_parsing(parsing, self.parsing_groups))
        return out


def build_reid_mapper(cfg, is_train: bool):
    """The mapper named by ``cfg.INPUT.REID.MAPPER``, built with ``(cfg, is_train)``."""
    return get_registered(REID_MAPPER_REGISTRY, cfg.INPUT.REID.MAPPER, "INPUT.REID.MAPPER")(
        cfg, is_train
    )
