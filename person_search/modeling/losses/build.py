"""Registry and builder of the re-id losses of person-search RoI heads."""

from __future__ import annotations

from detectron2.utils.registry import Registry
from torch import nn

__all__ = ["REID_LOSS_REGISTRY", "build_reid_loss"]

REID_LOSS_REGISTRY = Registry("REID_LOSS")
REID_LOSS_REGISTRY.__doc__ = """
Registry for the re-id losses of person-search RoI heads (OIM, HOIM; a project registers its
own, e.g. IIDFC's FC loss), selected by ``MODEL.PERSON_SEARCH.REID_LOSS``.

The registered object is called with ``obj(cfg, num_person_ids=L)`` (L: labelled training
identities) and must return an ``nn.Module`` with

* ``forward(embeddings, pids) -> dict[str, Tensor]``: ``embeddings`` (N, D) L2-normalised
  embeddings of the sampled RoIs, ``pids`` (N,) int64: an identity in [0, L) for labelled
  persons, -1 (``UNLABELED_PID``) for unlabelled persons, -2 (``BACKGROUND_PID``) for
  background RoIs (a loss that has no use for some kind ignores it). Returns named, weighted
  scalar losses; in training mode the loss may then update its memory (LUT, queues).
* ``logits(embeddings) -> (N, K)`` where the loss classifies against a memory or classifier
  (OIM: scaled similarities to [LUT; queue]), so that a loss can put a margin on them: a
  subclass of ``OIMLoss`` / ``HOIMLoss`` overrides ``identity_logits(logits, targets)``, the
  logits their identity cross-entropy reads (IIDFC's FC loss).
* optionally ``person_scores(embeddings) -> (N,)`` in [0, 1]: RoI heads without a classifier
  (``HOIMROIHeads``) score detections with it.
"""


def build_reid_loss(cfg, num_person_ids: int) -> nn.Module:
    """The loss named by ``cfg.MODEL.PERSON_SEARCH.REID_LOSS`` for ``num_person_ids``
    identities.

    Raises:
        KeyError: the name is not registered (names it and the registered ones).
    """
    name = cfg.MODEL.PERSON_SEARCH.REID_LOSS
    if name not in REID_LOSS_REGISTRY:
        known = sorted(k for k, _ in REID_LOSS_REGISTRY)
        raise KeyError(f"MODEL.PERSON_SEARCH.REID_LOSS={name!r} is not a registered loss ({known})")
    return REID_LOSS_REGISTRY.get(name)(cfg, num_person_ids=num_person_ids)
