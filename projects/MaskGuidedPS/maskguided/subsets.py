"""Deterministic subsets of the mask-annotated images, for the mask-fraction ablation.

The paper (Table 4) trains with masks on a proportion alpha of the *training images* (3% .. 15%,
and "Full": all 1,833 annotated images, 16% of 11,206), without saying which images. Our
reading, in the spirit of its own selection (portions of 5 consecutive images, one drawn from
each): the annotated images, in training-set order, are cut into k = round(alpha * N_train)
portions of consecutive images (sizes differ by at most one), and one image is drawn from each
portion with a seeded RNG. The subset is spread evenly over the training set, has exactly k
images and is the same for the same seed and annotations.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

__all__ = ["FULL", "select_mask_subset"]

# IMAGE_FRACTION value selecting every annotated image (the paper's "Full").
FULL = -1.0


def select_mask_subset(
    train_image_ids: Sequence[str],
    annotated: Collection[str],
    fraction: float,
    seed: int,
    *,
    key: str = "INPUT.MASKGUIDED.IMAGE_FRACTION",
) -> list[str]:
    """The annotated images that keep their masks.

    Args:
        train_image_ids: every training image, in training-set order.
        annotated: the images with at least one usable mask.
        fraction: alpha in (0, 1], the fraction of *all* training images to carry masks; or
            ``FULL`` (-1): every annotated image.
        seed: seed of the draw in each portion.
        key: the config key named in errors.

    Returns:
        the selected image ids, in training-set order.

    Raises:
        ValueError: ``fraction`` is neither -1 nor in (0, 1], asks for no image, or for more
            images than are annotated (names ``key``, the value and the counts).
    """
    ordered = [i for i in train_image_ids if i in annotated]
    if fraction == FULL:
        return ordered
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{key}={fraction}: use -1 (every annotated image) or a value in (0, 1]")
    k = int(round(fraction * len(train_image_ids)))
    if k == 0:
        raise ValueError(
            f"{key}={fraction} selects no image of the {len(train_image_ids)} training images"
        )
    if k > len(ordered):
        available = len(ordered) / max(len(train_image_ids), 1)
        raise ValueError(
            f"{key}={fraction} asks for {k} training images with masks, but only {len(ordered)} "
            f"of the {len(train_image_ids)} have one ({available:.1%}); use at most that, or -1"
        )
    rng = np.random.default_rng(seed)
    bounds = [(j * len(ordered)) // k for j in range(k + 1)]
    return [ordered[int(rng.integers(bounds[j], bounds[j + 1]))] for j in range(k)]
