"""Hierarchical Online Instance Matching (HOIM) loss, as described in IIDFC (Hou et al.,
"Improved Instance Discrimination and Feature Compactness for End-to-End Person Search",
section 3.3, eq. 8-12), after HOIM (Chen et al., AAAI 2020).

OIM's memory (lookup table V of N labelled identities, circular queue U of M unlabelled
persons; :class:`~person_search.modeling.losses.oim.OIMLoss`) is extended with a *background
buffer* G of B features of background proposals. For an L2-normalised RoI feature x the
scores are ``s = [V; U; G] x`` (N + M + B cosine similarities) and with ``tau = 1 / scalar``

* p_f = sum_{i <= N+M} softmax(s / tau)_i (person), p_b = 1 - p_f (background)   (eq. 9-10)
* first level:  L_cls = -y log p_f - (1 - y) log p_b, y = 1 for a person RoI     (eq. 11)
* second level: L_OIM = -log( e^{s_t/tau} / sum_{j <= N+M} e^{s_j/tau} ) for a labelled RoI
  of identity t (OIM, eq. 8: the background buffer is not in this softmax; its logits pass
  through :meth:`~OIMLoss.identity_logits`, where IIDFC's FC loss puts its margin, eq. 13-14)
* L_HOIM = L_cls + lambda L_OIM with lambda = 2 p_f^2                             (eq. 12)

Choices the text leaves open (ours):

- lambda is computed per RoI from its own p_f and *detached*: it weights the identity loss of
  confident person RoIs more but is not itself optimised (the text calls it a loss weight).
- L_cls is averaged over all sampled RoIs (persons and background); lambda * L_OIM is summed
  over labelled RoIs and divided by their number (OIM's mean). Unlabelled persons enter only
  L_cls (y = 1) and the queue.
- Background buffer: first-in-first-out like OIM's queue, zero-initialised, all B slots
  always in the softmax (as OIM's zero queue slots); after each training step the
  ``bg_per_update`` background RoIs with the highest p_f ("hardest") are pushed.
- Selective Memory Refreshment (HOIM's LUT/queue update policy) is not described in the
  IIDFC text and not implemented: the LUT/queue update is OIM's.
- At inference the person score of a box is its p_f against the trained memory (the buffers
  are checkpointed), which is how HOIM replaces the R-CNN classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import configurable

from .build import REID_LOSS_REGISTRY
from .oim import BACKGROUND_PID, UNLABELED_PID, OIMLoss, _gather_across_processes, push_circular

__all__ = ["HOIMLoss"]


@REID_LOSS_REGISTRY.register()
class HOIMLoss(OIMLoss):
    """OIM memory + background buffer ``bg_buffer`` (B, D); two-level HOIM loss.

    Registered re-id loss: forward ``(embeddings (R, D), pids (R,)) -> {"loss_hoim_cls",
    "loss_hoim_reid"}``; :meth:`logits` against ``[LUT; queue; buffer]``; :meth:`person_scores`
    (p_f) scores the detections of :class:`~person_search.modeling.roi_heads.HOIMROIHeads`.
    """

    @configurable
    def __init__(
        self,
        *,
        bg_buffer_size: int,
        bg_per_update: int,
        cls_loss_weight: float = 1.0,
        **kwargs,
    ):
        """
        Args:
            bg_buffer_size: B, slots of the background buffer (> 0).
            bg_per_update: background features pushed per training step (>= 0).
            cls_loss_weight: weight of the first level (foreground vs background).
            kwargs: :class:`OIMLoss` arguments; its ``loss_weight`` weights the second level.
        """
        super().__init__(**kwargs)
        if bg_buffer_size <= 0:
            raise ValueError(f"HOIMLoss needs bg_buffer_size > 0, got {bg_buffer_size}")
        if bg_per_update < 0:
            raise ValueError(f"HOIMLoss needs bg_per_update >= 0, got {bg_per_update}")
        self.bg_buffer_size = bg_buffer_size
        self.bg_per_update = bg_per_update
        self.cls_loss_weight = cls_loss_weight
        self.register_buffer("bg_buffer", torch.zeros(bg_buffer_size, self.embedding_dim))
        self.register_buffer("bg_ptr", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg, num_person_ids: int):
        ret = OIMLoss.from_config(cfg, num_person_ids)
        ret["loss_weight"] = cfg.MODEL.HOIM.LOSS_WEIGHT_REID
        ret.update(
            bg_buffer_size=cfg.MODEL.HOIM.BG_BUFFER_SIZE,
            bg_per_update=cfg.MODEL.HOIM.BG_PER_UPDATE,
            cls_loss_weight=cfg.MODEL.HOIM.LOSS_WEIGHT_CLS,
        )
        return ret

    def memory(self) -> torch.Tensor:
        """``[LUT; queue; background buffer]``, (N + M + B, D): :meth:`logits` are the scaled
        similarities to these rows (the first N are the identities)."""
        return torch.cat([self.lut, self.queue, self.bg_buffer], dim=0)

    def _log_p_person(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p_f, log p_b), each (R,), from (R, N + M + B) logits."""
        num_person_slots = self.num_person_ids + self.queue_size
        log_z = torch.logsumexp(logits, dim=1)
        log_pf = torch.logsumexp(logits[:, :num_person_slots], dim=1) - log_z
        log_pb = torch.logsumexp(logits[:, num_person_slots:], dim=1) - log_z
        return log_pf, log_pb

    @torch.no_grad()
    def person_scores(self, features: torch.Tensor) -> torch.Tensor:
        """p_f in [0, 1] of (R, D) L2-normalised features, (R,)."""
        if features.shape[0] == 0:
            return features.new_zeros(0)
        return self._log_p_person(self.logits(features).float())[0].exp()

    def forward(self, features: torch.Tensor, pids: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            features: (R, D) L2-normalised features of ALL sampled RoIs.
            pids: (R,) int64: identity in [0, N) for labelled persons, ``UNLABELED_PID`` for
                unlabelled persons, ``BACKGROUND_PID`` for background RoIs.

        Returns:
            ``{"loss_hoim_cls": cls_loss_weight * mean L_cls,
            "loss_hoim_reid": loss_weight * mean over labelled RoIs of lambda * L_OIM}``.
            In training mode the LUT, queue and background buffer are then updated.
        """
        self.check_inputs(features, pids)
        logits = self.logits(features).float()  # (R, N + M + B)
        log_pf, log_pb = self._log_p_person(logits)
        is_person = pids != BACKGROUND_PID
        labelled = pids >= 0
        loss_cls = -torch.where(is_person, log_pf, log_pb)
        loss_cls = loss_cls.mean() if loss_cls.numel() else logits.sum()

        num_person_slots = self.num_person_ids + self.queue_size
        targets = torch.where(labelled, pids, torch.full_like(pids, UNLABELED_PID))
        oim = F.cross_entropy(
            self.identity_logits(logits[:, :num_person_slots], targets),
            targets,
            ignore_index=UNLABELED_PID,
            reduction="none",
        )
        lam = 2.0 * log_pf.detach().exp() ** 2
        loss_reid = (lam * oim).sum() / labelled.sum().clamp(min=1)

        if self.training:
            self.update(features.detach(), pids)
            self._push_background(features.detach()[~is_person], log_pf.detach()[~is_person])
        return {
            "loss_hoim_cls": self.cls_loss_weight * loss_cls,
            "loss_hoim_reid": self.loss_weight * loss_reid,
        }

    @torch.no_grad()
    def _push_background(self, features: torch.Tensor, log_pf: torch.Tensor) -> None:
        """Push the ``bg_per_update`` background features of highest p_f (FIFO)."""
        k = min(self.bg_per_update, features.shape[0])
        hardest = torch.topk(log_pf, k).indices if k > 0 else log_pf.new_zeros(0, dtype=torch.long)
        chosen = features[hardest].float()
        # Gathered from every process so that all keep identical buffers.
        chosen, _ = _gather_across_processes(
            chosen, torch.full((chosen.shape[0],), BACKGROUND_PID, device=chosen.device)
        )
        push_circular(self.bg_buffer, self.bg_ptr, chosen)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, bg_buffer_size={self.bg_buffer_size}, "
            f"bg_per_update={self.bg_per_update}"
        )
