"""The dynamic classification loss L_dcls over the visible SFA regions (SGSFA Sec. 3.2.2).

Each image's top / middle / bottom blocks are visible or not (eq. 2: t, m, b in {0, 1}); eq. 3
chooses the regions that take part in training::

    f_choose = FR = {top, middle, bottom, top+middle, middle+bottom}   if t = m = b = 1
               {top, middle, top+middle}                               elif t = m = 1
               {top}                                                   elif t = 1
               {} (the image takes no part)                            otherwise

The cases are read in order, as written: the split hangs from the head top, so without a
visible top block (t = 0) no region is trusted, and a visible bottom counts only below a
visible middle.

Our readings: each chosen region has its own classifier (BN + FC, label-smoothed CE, eq. 10);
L_dcls is the mean CE over all chosen (image, region) pairs of the batch (0 without any).
"Randomly selected local blocks f_choose": with ``num_samples`` k > 0, each image keeps k of
its chosen regions drawn uniformly (all of them when it has at most k); k = 0 keeps all.
"""

from __future__ import annotations

import torch

from person_search.modeling.losses.reid_losses import cross_entropy_label_smooth

__all__ = ["choose_regions", "dynamic_classification_loss", "sample_regions"]


def choose_regions(visible: torch.Tensor) -> torch.Tensor:
    """Eq. 3: which regions of :data:`~.sfa.REGIONS` take part, from block visibility.

    Args:
        visible: (N, 3) bool, visibility of top, middle, bottom (eq. 2).

    Returns:
        (N, 5) bool over the regions (top, middle, bottom, top+middle, middle+bottom).
    """
    if visible.dim() != 2 or visible.shape[1] != 3:
        raise ValueError(f"visibility must be (N, 3) (top, middle, bottom), got {visible.shape}")
    t, m, b = visible.bool().unbind(dim=1)
    top_middle = t & m  # the first two cases
    every = top_middle & b  # the first case
    # columns follow REGIONS: top, middle, bottom, top+middle, middle+bottom
    return torch.stack([t, top_middle, every, top_middle, every], dim=1)


def sample_regions(
    chosen: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Keep at most ``num_samples`` chosen regions per image, drawn uniformly (0 = all).

    Args:
        chosen: (N, R) bool.
        num_samples: regions kept per image (0: all).
        generator: random source (the global one when None).

    Returns:
        (N, R) bool, a subset of ``chosen``.
    """
    if num_samples < 0:
        raise ValueError(f"MODEL.SGSFA.DCLS_SAMPLES must be >= 0, got {num_samples}")
    if num_samples == 0:
        return chosen
    keys = torch.rand(chosen.shape, generator=generator, device="cpu").to(chosen.device)
    keys = keys.masked_fill(~chosen, 2.0)  # unchosen regions sort last
    rank = keys.argsort(dim=1).argsort(dim=1)
    return chosen & (rank < num_samples)


def dynamic_classification_loss(
    logits: torch.Tensor, targets: torch.Tensor, chosen: torch.Tensor, epsilon: float = 0.1
) -> torch.Tensor:
    """L_dcls: mean label-smoothed CE over the chosen (image, region) pairs.

    Args:
        logits: (N, R, K) class scores of each region's classifier.
        targets: (N,) int64 identities.
        chosen: (N, R) bool, e.g. ``sample_regions(choose_regions(visible), k)``.
        epsilon: label smoothing.

    Returns:
        scalar float32; 0 (connected to the graph) when nothing is chosen.
    """
    if logits.dim() != 3 or chosen.shape != logits.shape[:2] or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits (N, R, K), chosen (N, R), targets (N,), got {tuple(logits.shape)}, "
            f"{tuple(chosen.shape)}, {tuple(targets.shape)}"
        )
    if not bool(chosen.any()):
        return logits.sum() * 0.0
    image, _ = chosen.nonzero(as_tuple=True)
    return cross_entropy_label_smooth(logits[chosen], targets[image], epsilon)
