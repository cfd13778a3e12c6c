"""Box occlusion as data augmentation, on the compiled multi-granularity occlusion op
(:func:`person_search.layers.multi_granularity_occlusion`).

* :class:`MGRO` (MGOFE's multi-granularity random occlusion; ``INPUT.MGRO``): the training
  mapper's option that makes one occluded copy of the augmented image per grid level, seeded
  by ``(SEED, iteration, image id)`` (:func:`mgro_seed`) so that runs are reproducible and a
  resumed run makes the copies the uninterrupted one made.
* :class:`RandomBoxOcclusion`: a Detectron2 ``Augmentation`` replacing the image by one
  occluded version (a random level), seeded from the global numpy RNG like Detectron2's own
  augmentations; its :class:`BoxOcclusionTransform` leaves boxes and masks unchanged.
* :class:`QueryOcclusion` (``TEST.PERSON_SEARCH.OCCLUDED_QUERIES``): the test mapper's option
  that makes occluded copies of each query image, only its query box covered, at every
  (grid, coverage) setting of the occluded-query evaluation; seeded by (SEED, query index).

Both cover random grid cells of every person box, never a whole box (the op's rules), and
change no pixel outside the boxes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T

from ..layers.occlusion import FILL_MODES, multi_granularity_occlusion

__all__ = [
    "MGRO",
    "BoxOcclusionTransform",
    "QueryOcclusion",
    "RandomBoxOcclusion",
    "box_pixel_count",
    "check_grids",
    "check_fill",
    "mgro_seed",
    "occluded_copies",
]

# Seeds of the op are int64; we draw / hash into [0, 2**63).
_SEED_BITS = 63


def mgro_seed(base_seed: int, iteration: int, image_id: object) -> int:
    """A 63-bit seed, a stable hash of ``(base_seed, iteration, image_id)`` (the same in every
    process and Python run, unlike ``hash``)."""
    key = f"{int(base_seed)}/{int(iteration)}/{image_id}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "little") >> (64 - _SEED_BITS)


def check_grids(key: str, grids: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """``grids`` as a tuple of (rows, cols) int pairs.

    Raises:
        ValueError: no grid, or a grid that is not two ints >= 1 (names ``key``).
    """
    grids = tuple(tuple(g) for g in grids)
    if not grids or not all(
        len(g) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in g)
        for g in grids
    ):
        raise ValueError(
            f"{key} must list at least one (rows, cols) grid of ints >= 1 (one per granularity "
            f"level, m >= 1), got {[list(g) for g in grids]}"
        )
    return grids


def check_fill(prefix: str, fill: str, fill_value: float) -> None:
    """Check a fill mode and its constant (keys ``<prefix>.FILL``, ``<prefix>.FILL_VALUE``).

    Raises:
        ValueError: an unknown fill mode, or a constant that is not an integer 0..255.
    """
    if fill not in FILL_MODES:
        raise ValueError(f"{prefix}.FILL={fill!r} is not one of {sorted(FILL_MODES)}")
    if fill == "constant" and not (float(fill_value).is_integer() and 0 <= fill_value <= 255):
        raise ValueError(f"{prefix}.FILL_VALUE must be an integer 0..255, got {fill_value}")


def box_pixel_count(box: Sequence[float], height: int, width: int) -> int:
    """Pixels a box owns under the occlusion op's convention (pixel centres in
    ``[x1, x2) x [y1, y2)``, clipped to the ``height`` x ``width`` image)."""

    def edge(v: float, size: int) -> int:
        return int(min(max(math.ceil(v - 0.5), 0), size))

    x1, y1, x2, y2 = (float(v) for v in box)
    w = max(edge(x2, width) - edge(x1, width), 0)
    h = max(edge(y2, height) - edge(y1, height), 0)
    return w * h


def occluded_copies(
    image: np.ndarray,
    boxes: np.ndarray,
    grids: Sequence[Sequence[int]],
    cell_prob: float,
    fill: str,
    seed: int,
    fill_value: float = 0.0,
) -> np.ndarray:
    """One occluded copy of ``image`` per grid level.

    Args:
        image: (H, W, C) uint8 or float32 image.
        boxes: (N, 4) XYXY boxes in pixels of ``image``.
        grids, cell_prob, fill, seed, fill_value: see
            :func:`~person_search.layers.multi_granularity_occlusion`.

    Returns:
        (L, H, W, C) array of ``image``'s dtype; ``image`` is not modified.
    """
    images = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    box_tensor = torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    grid_list = [[int(v) for v in grid] for grid in grids]
    occluded, _ = multi_granularity_occlusion(
        images, [box_tensor], grid_list, float(cell_prob), fill, int(seed), fill_value=fill_value
    )
    return occluded[:, 0].permute(0, 2, 3, 1).numpy()


@dataclass(frozen=True)
class MGRO:
    """MGRO settings (``INPUT.MGRO``) and the copies they make.

    Attributes:
        grids: one (rows, cols) grid per level (m = ``len(grids)``).
        cell_prob: probability that a cell is covered.
        fill, fill_value: fill of covered cells ("mean", "constant", "noise").
        base_seed: the run's seed (``SEED``, else the Trainer's ``DATALOADER.SEED``).
    """

    grids: tuple[tuple[int, int], ...]
    cell_prob: float
    fill: str
    fill_value: float
    base_seed: int

    @classmethod
    def from_config(cls, cfg: CfgNode, base_seed: int | None = None) -> MGRO:
        """Settings of ``cfg.INPUT.MGRO``.

        Args:
            base_seed: the seed of the copies; None = ``SEED``, else ``DATALOADER.SEED`` (a
                model making copies at test time passes its own fixed seed).

        Raises:
            ValueError: a bad value, naming its key.
        """
        m = cfg.INPUT.MGRO
        grids = check_grids("INPUT.MGRO.GRIDS", m.GRIDS)
        if not 0.0 <= m.CELL_PROB <= 1.0:
            raise ValueError(f"INPUT.MGRO.CELL_PROB must be in [0, 1], got {m.CELL_PROB}")
        check_fill("INPUT.MGRO", m.FILL, m.FILL_VALUE)
        if base_seed is None:
            base_seed = cfg.SEED if cfg.SEED >= 0 else cfg.DATALOADER.SEED
        if base_seed < 0:
            raise ValueError(
                "INPUT.MGRO seeds its occlusions with SEED, else the Trainer's DATALOADER.SEED; "
                "both are < 0: set SEED (or build the loader through the Trainer)"
            )
        return cls(grids, float(m.CELL_PROB), m.FILL, float(m.FILL_VALUE), int(base_seed))

    def copies(
        self, image: np.ndarray, boxes: np.ndarray, iteration: int, image_id: object
    ) -> np.ndarray:
        """(L, H, W, C) occluded copies of the (H, W, C) ``image`` with (N, 4) ``boxes``, seeded
        by ``(base_seed, iteration, image_id)``."""
        seed = mgro_seed(self.base_seed, iteration, image_id)
        return occluded_copies(
            image, boxes, self.grids, self.cell_prob, self.fill, seed, self.fill_value
        )

    def copies_of_tensor(
        self, image: torch.Tensor, boxes: torch.Tensor, iteration: int, image_id: object
    ) -> torch.Tensor:
        """:meth:`copies` of a (C, H, W) tensor on any device (e.g. a model's input at test
        time): (L, C, H, W) of its dtype and device; ``boxes`` (N, 4) XYXY in its pixels."""
        seed = mgro_seed(self.base_seed, iteration, image_id)
        occluded, _ = multi_granularity_occlusion(
            image[None],
            [boxes.reshape(-1, 4).to(image.device, torch.float64)],
            [list(g) for g in self.grids],
            self.cell_prob,
            self.fill,
            seed,
            fill_value=self.fill_value,
        )
        return occluded[:, 0]


@dataclass(frozen=True)
class QueryOcclusion:
    """Occluded copies of a query image for the occluded-query evaluation
    (``TEST.PERSON_SEARCH.OCCLUDED_QUERIES``): only the query box is covered, at every
    (grid, coverage) setting, grid-major (``settings``).

    The copies of one query share their random numbers (seed = (``seed``, query index)): a
    cell covered at some coverage is covered at every larger one with the same grid, unless
    the op's never-the-whole-box rule uncovers it.

    Attributes:
        grids: (rows, cols) grids of the box.
        coverages: probabilities that a cell is covered, each in (0, 1].
        fill, fill_value: fill of covered cells.
        seed: base seed of the copies.
    """

    grids: tuple[tuple[int, int], ...]
    coverages: tuple[float, ...]
    fill: str
    fill_value: float
    seed: int

    @classmethod
    def from_config(cls, cfg: CfgNode) -> QueryOcclusion:
        """Settings of ``cfg.TEST.PERSON_SEARCH.OCCLUDED_QUERIES``.

        Raises:
            ValueError: a bad value, naming its key.
        """
        prefix = "TEST.PERSON_SEARCH.OCCLUDED_QUERIES"
        q = cfg.TEST.PERSON_SEARCH.OCCLUDED_QUERIES
        grids = check_grids(f"{prefix}.GRIDS", q.GRIDS)
        coverages = tuple(float(c) for c in q.COVERAGES)
        if not coverages or not all(0.0 < c <= 1.0 for c in coverages):
            raise ValueError(
                f"{prefix}.COVERAGES must list at least one cell probability in (0, 1], got "
                f"{list(q.COVERAGES)}"
            )
        check_fill(prefix, q.FILL, q.FILL_VALUE)
        if q.SEED < 0:
            raise ValueError(f"{prefix}.SEED must be >= 0 (a fixed seed), got {q.SEED}")
        return cls(grids, coverages, q.FILL, float(q.FILL_VALUE), int(q.SEED))

    @property
    def settings(self) -> list[tuple[tuple[int, int], float]]:
        """The K = len(grids) x len(coverages) (grid, coverage) settings, grid-major."""
        return [(g, c) for g in self.grids for c in self.coverages]

    @staticmethod
    def setting_name(grid: Sequence[int], coverage: float) -> str:
        """Name of a setting in the metrics, e.g. ``"2x1@0.50"``."""
        return f"{grid[0]}x{grid[1]}@{coverage:.2f}"

    def copies(
        self, image: np.ndarray, box: Sequence[float], query_index: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the (H, W, C) query ``image`` with its XYXY ``box`` (pixels) covered.

        Returns:
            (K, H, W, C) copies in :attr:`settings` order, and (K,) float32: the fraction of the
            box's pixels each covers (0 for a box without pixels).
        """
        height, width = image.shape[:2]
        boxes = np.asarray(box, dtype=np.float64).reshape(1, 4)
        seed = mgro_seed(self.seed, 0, f"query/{int(query_index)}")
        probe = np.zeros((height, width, 1), dtype=np.uint8)  # which pixels get covered
        area = box_pixel_count(boxes[0], height, width)
        per_coverage, covered = [], []
        for c in self.coverages:
            per_coverage.append(
                occluded_copies(image, boxes, self.grids, c, self.fill, seed, self.fill_value)
            )
            marks = occluded_copies(probe, boxes, self.grids, c, "constant", seed, 1.0)
            covered.append(marks.reshape(len(self.grids), -1).sum(axis=1) / max(area, 1))
        # (C, G, ...) -> grid-major (G, C, ...) -> K
        copies = np.stack(per_coverage, axis=1).reshape(-1, *image.shape)
        return copies, np.stack(covered, axis=1).reshape(-1).astype(np.float32)


class BoxOcclusionTransform(T.Transform):
    """Cover random cells of every box at one grid level (boxes, coordinates and masks are
    unchanged; not invertible, so its geometric inverse is the identity, as for Detectron2's
    colour transforms)."""

    def __init__(
        self,
        boxes: np.ndarray,
        grid: tuple[int, int],
        cell_prob: float,
        fill: str,
        seed: int,
        fill_value: float = 0.0,
    ):
        """
        Args:
            boxes: (N, 4) XYXY boxes of the image the transform is applied to.
            grid, cell_prob, fill, seed, fill_value: one level of :func:`occluded_copies`.
        """
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """(H, W, C) -> (H, W, C) occluded."""
        squeeze = img.ndim == 2
        image = img[:, :, None] if squeeze else img
        out = occluded_copies(
            image, self.boxes, [self.grid], self.cell_prob, self.fill, self.seed, self.fill_value
        )[0]
        return out[:, :, 0] if squeeze else out

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> T.Transform:
        return T.NoOpTransform()


class RandomBoxOcclusion(T.Augmentation):
    """With probability ``prob``, occlude the image's boxes at one granularity level chosen at
    random among ``grids`` (a Detectron2 augmentation: ``AugInput(image, boxes=...)``)."""

    def __init__(
        self,
        grids: Sequence[Sequence[int]],
        cell_prob: float,
        fill: str = "mean",
        fill_value: float = 0.0,
        prob: float = 1.0,
    ):
        super().__init__()
        if not grids:
            raise ValueError("RandomBoxOcclusion needs at least one (rows, cols) grid")
        grids = tuple(tuple(int(v) for v in g) for g in grids)
        self._init(locals())

    def get_transform(self, image: np.ndarray, boxes: np.ndarray) -> T.Transform:
        if self._rand_range() >= self.prob:
            return T.NoOpTransform()
        level = int(np.random.randint(len(self.grids)))
        seed = int(np.random.randint(0, 2**_SEED_BITS, dtype=np.int64))
        return BoxOcclusionTransform(
            boxes, self.grids[level], self.cell_prob, self.fill, seed, self.fill_value
        )
