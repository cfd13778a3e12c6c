"""Losses of re-identification models: label-smoothed cross-entropy and batch-hard triplet.

Both follow Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person
Re-identification" (CVPRW 2019); the batch-hard triplet is Hermans et al., "In Defense of the
Triplet Loss for Person Re-Identification" (2017), with its soft-margin variant.

All losses are computed in float32 (inputs in half precision are upcast), and masking uses
``torch.finfo`` limits rather than hand-written large constants, so they are safe under AMP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "DISTANCES",
    "batch_hard_triplet_loss",
    "cross_entropy_label_smooth",
    "pairwise_distance",
]

DISTANCES = ("euclidean", "cosine")
# Lower bound of squared euclidean distances before the square root: keeps the gradient of
# sqrt finite for identical vectors (self-distances).
_SQUARED_DISTANCE_FLOOR = 1e-12


def cross_entropy_label_smooth(
    logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1
) -> torch.Tensor:
    """Cross-entropy against the label-smoothed target ``(1 - eps) * onehot + eps / K``.

    Args:
        logits: (N, K) class scores.
        targets: (N,) int64 class indices in [0, K).
        epsilon: smoothing in [0, 1); 0 gives the plain cross-entropy.

    Returns:
        scalar: the mean over the N samples.
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label-smoothing epsilon must be in [0, 1), got {epsilon}")
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits (N, K) and targets (N,), got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    log_probs = F.log_softmax(logits.float(), dim=1)
    nll = -log_probs.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    uniform = -log_probs.mean(dim=1)
    return ((1.0 - epsilon) * nll + epsilon * uniform).mean()


def pairwise_distance(x: torch.Tensor, y: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """All distances between the rows of ``x`` and the rows of ``y``, in float32.

    Args:
        x: (N, D), y: (M, D).
        metric: "euclidean" (L2 distance) or "cosine" (1 - cosine similarity, in [0, 2]).

    Returns:
        (N, M) float32 distances.
    """
    x, y = x.float(), y.float()
    if metric == "euclidean":
        squared = (
            x.pow(2).sum(dim=1, keepdim=True) + y.pow(2).sum(dim=1).unsqueeze(0) - 2.0 * x @ y.t()
        )
        return squared.clamp(min=_SQUARED_DISTANCE_FLOOR).sqrt()
    if metric == "cosine":
        return 1.0 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).t()
    raise ValueError(f"unknown distance {metric!r}; expected one of {DISTANCES}")


def batch_hard_triplet_loss(
    features: torch.Tensor,
    targets: torch.Tensor,
    *,
    margin: float = 0.3,
    soft_margin: bool = False,
    metric: str = "euclidean",
) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017).

    For every anchor the hardest positive is the farthest sample of the same id (the anchor
    itself, at distance 0, when its id has a single sample in the batch) and the hardest
    negative the closest sample of another id. Anchors without any negative in the batch
    (all samples share one id) are left out of the mean; with no valid anchor the loss is 0
    (still connected to the graph).

    Args:
        features: (N, D) embeddings.
        targets: (N,) int64 identity labels.
        margin: hinge margin, ``max(0, d_ap - d_an + margin)``; ignored if ``soft_margin``.
        soft_margin: use ``log(1 + exp(d_ap - d_an))`` instead of the hinge.
        metric: "euclidean" or "cosine" (see :func:`pairwise_distance`).

    Returns:
        scalar float32: the mean over valid anchors.
    """
    if features.dim() != 2 or targets.shape != features.shape[:1]:
        raise ValueError(
            f"expected features (N, D) and targets (N,), got {tuple(features.shape)} and "
            f"{tuple(targets.shape)}"
        )
    dist = pairwise_distance(features, features, metric)
    same_id = targets.unsqueeze(0) == targets.unsqueeze(1)
    # Distances are >= 0 and every anchor is its own positive, so filling non-positives with
    # the lowest finite value never changes the maximum over positives.
    limits = torch.finfo(dist.dtype)
    dist_ap = dist.masked_fill(~same_id, limits.min).max(dim=1).values
    dist_an = dist.masked_fill(same_id, limits.max).min(dim=1).values
    valid = (~same_id).any(dim=1)
    if not bool(valid.any()):
        return dist.sum() * 0.0
    gap = dist_ap[valid] - dist_an[valid]
    loss = F.softplus(gap) if soft_margin else F.relu(gap + margin)
    return loss.mean()
