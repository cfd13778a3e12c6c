"""Box occlusion as data augmentation, on the compiled multi-granularity occlusion op
(:func:`person_search.layers.multi_granularity_occlusion`).

* :class:`MGRO` (MGOFE's multi-granularity random occlusion; ``INPUT.MGRO``): the training
  mapper's option that makes one occluded copy of the augmented image per grid level, seeded
  by ``(SEED, iteration, image id)`` (:func:`mgro_seed`) so that runs are reproducible and a
  resumed run makes the copies the uninterrupted one made.
* :class:`RandomBoxOcclusion`: a Detectron2 ``Augmentation`` replacing the image by one
  occluded version (a random level), seeded from the global numpy RNG like Detectron2's own
  augmentations; its :class:`BoxOcclusionTransform` leaves boxes and masks unchanged.

Both cover random grid cells of every person box, never a whole box (the op's rules), and
change no pixel outside the boxes.
"""

from __future__ import annotations

import hashlib
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
    "RandomBoxOcclusion",
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
    def from_config(cls, cfg: CfgNode) -> MGRO:
        """Settings of ``cfg.INPUT.MGRO``.

        Raises:
            ValueError: a bad value, naming its key.
        """
        m = cfg.INPUT.MGRO
        grids = tuple(tuple(g) for g in m.GRIDS)
        if not grids or not all(
            len(g) == 2 and all(isinstance(v, int) and v >= 1 for v in g) for g in grids
        ):
            raise ValueError(
                f"INPUT.MGRO.GRIDS must list at least one (rows, cols) grid of ints >= 1 (one "
                f"per granularity level), got {list(m.GRIDS)}"
            )
        if not 0.0 <= m.CELL_PROB <= 1.0:
            raise ValueError(f"INPUT.MGRO.CELL_PROB must be in [0, 1], got {m.CELL_PROB}")
        if m.FILL not in FILL_MODES:
            raise ValueError(f"INPUT.MGRO.FILL={m.FILL!r} is not one of {sorted(FILL_MODES)}")
        if m.FILL == "constant" and not (
            float(m.FILL_VALUE).is_integer() and 0 <= m.FILL_VALUE <= 255
        ):
            raise ValueError(f"INPUT.MGRO.FILL_VALUE must be an integer 0..255, got {m.FILL_VALUE}")
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
