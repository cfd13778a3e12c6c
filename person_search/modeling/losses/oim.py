"""Online Instance Matching (OIM) loss.

Xiao et al., "Joint Detection and Identification Feature Learning for Person Search",
CVPR 2017. Each labelled identity has a row in a lookup table (LUT) holding a running,
L2-normalised mean of its features; features of unlabelled persons fill a circular queue.
A labelled feature x with identity y is classified over [LUT; queue] by a softmax of the
scaled cosine similarities, ``p_y = softmax(scalar * [LUT; queue] x)_y``, and the loss is
``-log p_y``. The LUT and queue are not learned by gradient: after each forward pass (in
training mode) ``v_y <- normalize(momentum * v_y + (1 - momentum) * x)`` for every labelled
feature, applied in the order of the inputs when an identity occurs several times, and the
unlabelled features are pushed into the queue, as if one at a time (oldest overwritten first).
The loss of a batch is computed with the tables as they were before its update. Unlabelled
features are never a target; they are the negatives of later batches. Empty (all-zero) LUT rows
and queue slots take part in the softmax with similarity 0.

The mask-guided person search paper writes the LUT update (its eq. 4) without the
renormalisation; we keep it, as OIM and SeqNet do, so that LUT rows stay on the unit sphere
like the features. Temperature (``scalar`` = 1/tau) and momentum come from the config (tau = 1/30,
momentum 0.5 in the configs: SeqNet's values, IIDFC's tau; the mask-guided text gives none).

Both tables and the queue pointer are registered buffers, so they are checkpointed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.utils import comm
from torch import nn

from .build import REID_LOSS_REGISTRY

__all__ = ["BACKGROUND_PID", "UNLABELED_PID", "OIMLoss", "push_circular"]

# Person id of a proposal matched to an unlabelled person (the data contract's -1).
UNLABELED_PID = -1
# Person id given by the RoI heads to background proposals (OIM ignores them; HOIM uses them).
BACKGROUND_PID = -2


@REID_LOSS_REGISTRY.register()
class OIMLoss(nn.Module):
    """OIM loss with its lookup table (``lut``, (L, D)) and circular queue (``queue``, (Q, D)).

    A re-id loss of :data:`~person_search.modeling.losses.build.REID_LOSS_REGISTRY`: forward
    ``(embeddings (N, D), pids (N,)) -> {"loss_oim": scalar}``; :meth:`logits` gives the
    scaled similarities to ``[LUT; queue]`` (what IIDFC's FC loss puts its margin on).
    """

    @configurable
    def __init__(
        self,
        *,
        num_person_ids: int,
        embedding_dim: int,
        queue_size: int,
        momentum: float,
        scalar: float,
        loss_weight: float = 1.0,
    ):
        """
        Args:
            num_person_ids: L, rows of the lookup table (labelled training identities).
            embedding_dim: D, size of the L2-normalised features.
            queue_size: Q, length of the circular queue of unlabelled features (0 disables it).
            momentum: gamma of the LUT update, in [0, 1).
            scalar: inverse temperature multiplying the cosine similarities.
            loss_weight: multiplier of the returned loss.
        """
        super().__init__()
        if num_person_ids <= 0:
            raise ValueError(f"OIMLoss needs num_person_ids > 0, got {num_person_ids}")
        if queue_size < 0:
            raise ValueError(f"OIMLoss needs queue_size >= 0, got {queue_size}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"OIMLoss needs momentum in [0, 1), got {momentum}")
        self.num_person_ids = num_person_ids
        self.embedding_dim = embedding_dim
        self.queue_size = queue_size
        self.momentum = momentum
        self.scalar = scalar
        self.loss_weight = loss_weight
        self.register_buffer("lut", torch.zeros(num_person_ids, embedding_dim))
        self.register_buffer("queue", torch.zeros(queue_size, embedding_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg, num_person_ids: int):
        return {
            "num_person_ids": num_person_ids,
            "embedding_dim": cfg.MODEL.PERSON_SEARCH.EMBEDDING_DIM,
            "queue_size": cfg.MODEL.OIM.QUEUE_SIZE,
            "momentum": cfg.MODEL.OIM.MOMENTUM,
            "scalar": cfg.MODEL.OIM.SCALAR,
            "loss_weight": cfg.MODEL.OIM.LOSS_WEIGHT,
        }

    def memory(self) -> torch.Tensor:
        """The rows the features are classified against: ``[LUT; queue]``, (L + Q, D), a new
        tensor (the in-place table updates never touch what autograd saved)."""
        return torch.cat([self.lut, self.queue], dim=0)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) L2-normalised features -> (N, K) scaled cosine similarities ``scalar * x m^T``
        to the rows ``m`` of :meth:`memory` (OIM: K = L + Q; the first L columns are the
        identities), in the dtype of ``features``."""
        return self.scalar * features.mm(self.memory().to(features.dtype).t())

    def identity_logits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The logits the identity cross-entropy reads (the identity here).

        Args:
            logits: (N, K) float32 scaled similarities of :meth:`logits` to the person rows of
                the memory (OIM: ``[LUT; queue]``; HOIM: without its background buffer).
            targets: (N,) int64, the identity in [0, L) of each row, ``UNLABELED_PID`` where
                the row has none (not in the cross-entropy).

        Returns:
            (N, K) logits. Override to put a margin on each target's logit (IIDFC's FC loss,
            SphereFace, ArcFace); what the loss computes besides (HOIM's first level and its
            weight lambda, ``person_scores``) reads the unmodified logits.
        """
        del targets
        return logits

    def check_inputs(self, features: torch.Tensor, pids: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the problem unless ``features`` is (N, D) and ``pids``
        (N,) holds identities in [0, L), ``UNLABELED_PID`` or ``BACKGROUND_PID``."""
        name = type(self).__name__
        if features.dim() != 2 or features.shape[1] != self.embedding_dim:
            raise ValueError(
                f"{name} expects features of shape (N, {self.embedding_dim}), "
                f"got {tuple(features.shape)}"
            )
        if pids.shape != features.shape[:1]:
            raise ValueError(f"pids {tuple(pids.shape)} do not match {tuple(features.shape)}")
        allowed = (
            f"person ids must be in [0, {self.num_person_ids}), {UNLABELED_PID} (unlabelled) or "
            f"{BACKGROUND_PID} (background)"
        )
        if bool((pids < BACKGROUND_PID).any()):
            raise ValueError(
                f"{name}: {allowed}, got {sorted(set(pids[pids < BACKGROUND_PID].tolist()))}"
            )
        if pids.numel() and int(pids.max()) >= self.num_person_ids:
            raise ValueError(
                f"{name}: person id {int(pids.max())} is out of range for the lookup table of "
                f"{self.num_person_ids} identities ({allowed}): MODEL.OIM.NUM_PERSON_IDS or the "
                "dataset's num_person_ids is wrong"
            )

    def forward(self, features: torch.Tensor, pids: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            features: (N, D) L2-normalised features of sampled proposals.
            pids: (N,) int64: identity in [0, L) for labelled persons, ``UNLABELED_PID``
                for unlabelled ones, ``BACKGROUND_PID`` for background proposals (ignored).

        Returns:
            ``{"loss_oim": loss_weight * mean of -log p_y over the labelled features}`` (0 with
            a graph to ``features`` when there are none). In training mode the LUT and queue
            are then updated with the foreground ``features``.
        """
        self.check_inputs(features, pids)
        foreground = pids != BACKGROUND_PID
        features, pids = features[foreground], pids[foreground]
        labelled = pids >= 0
        logits = self.logits(features)  # (N, L + Q)
        targets = torch.where(labelled, pids, torch.full_like(pids, UNLABELED_PID))
        per_sample = F.cross_entropy(
            self.identity_logits(logits.float(), targets),
            targets,
            ignore_index=UNLABELED_PID,
            reduction="none",
        )
        loss = per_sample.sum() / labelled.sum().clamp(min=1)
        if self.training:
            self.update(features.detach(), pids)
        return {"loss_oim": self.loss_weight * loss}

    @torch.no_grad()
    def update(self, features: torch.Tensor, pids: torch.Tensor) -> None:
        """Update the LUT with the labelled and the queue with the unlabelled features.

        With several processes, the features of all of them are gathered first, so that every
        process keeps identical tables.

        Args:
            features: (N, D) L2-normalised features (no gradient needed).
            pids: (N,) int64 as in :meth:`forward`; other negative values are ignored.
        """
        features, pids = _gather_across_processes(features.float(), pids)
        labelled = pids >= 0
        self._update_lut(features[labelled], pids[labelled])
        self._push_queue(features[pids == UNLABELED_PID])

    def _update_lut(self, features: torch.Tensor, pids: torch.Tensor) -> None:
        # Sequential momentum updates per identity, vectorised by occurrence rank: round r
        # applies the r-th occurrence of every identity at once (distinct rows in a round).
        if pids.numel() == 0:
            return
        order = torch.sort(pids, stable=True).indices
        sorted_pids = pids[order]
        position = torch.arange(sorted_pids.numel(), device=pids.device)
        is_first = torch.ones_like(sorted_pids, dtype=torch.bool)
        is_first[1:] = sorted_pids[1:] != sorted_pids[:-1]
        group_start = torch.cummax(torch.where(is_first, position, 0), dim=0).values
        rank = position - group_start
        gamma = self.momentum
        for r in range(int(rank.max()) + 1):
            sel = order[rank == r]
            rows = pids[sel]
            mixed = gamma * self.lut[rows] + (1.0 - gamma) * features[sel]
            self.lut[rows] = F.normalize(mixed, dim=1)

    def _push_queue(self, features: torch.Tensor) -> None:
        push_circular(self.queue, self.queue_ptr, features)

    def extra_repr(self) -> str:
        return (
            f"num_person_ids={self.num_person_ids}, embedding_dim={self.embedding_dim}, "
            f"queue_size={self.queue_size}, momentum={self.momentum}, scalar={self.scalar}"
        )


@torch.no_grad()
def push_circular(buffer: torch.Tensor, ptr: torch.Tensor, items: torch.Tensor) -> None:
    """Push ``items`` into the circular ``buffer`` in place, as if one at a time, in order.

    Item ``i`` goes to slot ``(ptr + i) % S``; when more than ``S`` items come at once only
    the last ``S`` survive (the earlier ones would have been overwritten). ``ptr`` then points
    at ``(ptr + n) % S``, the oldest entry, which the next push overwrites first.

    Args:
        buffer: (S, D) circular buffer (S = 0: nothing happens).
        ptr: () int64 index of the next slot to write, updated in place.
        items: (n, D) entries to push.
    """
    size, n = buffer.shape[0], items.shape[0]
    if size == 0 or n == 0:
        return
    kept = items[-size:]
    first = n - kept.shape[0]  # index of the first surviving item
    slots = (ptr + first + torch.arange(kept.shape[0], device=buffer.device)) % size
    buffer[slots] = kept.to(buffer.dtype)
    ptr.copy_((ptr + n) % size)


def _gather_across_processes(
    features: torch.Tensor, pids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather (N_i, D) features and (N_i,) pids of every process, in rank order."""
    world_size = comm.get_world_size()
    if world_size == 1:
        return features, pids
    import torch.distributed as dist

    count = torch.tensor([features.shape[0]], device=features.device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    max_count = max(counts)
    padded_f = features.new_zeros((max_count, features.shape[1]))
    padded_f[: features.shape[0]] = features
    padded_p = pids.new_full((max_count,), BACKGROUND_PID)
    padded_p[: pids.shape[0]] = pids
    all_f = [torch.empty_like(padded_f) for _ in range(world_size)]
    all_p = [torch.empty_like(padded_p) for _ in range(world_size)]
    dist.all_gather(all_f, padded_f)
    dist.all_gather(all_p, padded_p)
    gathered_f = torch.cat([f[:c] for f, c in zip(all_f, counts)])
    gathered_p = torch.cat([p[:c] for p, c in zip(all_p, counts)])
    return gathered_f, gathered_p
