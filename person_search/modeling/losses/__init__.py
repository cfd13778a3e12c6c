"""Losses: the re-id losses of person-search RoI heads (:data:`REID_LOSS_REGISTRY`: OIM, HOIM)
and the losses of re-id models (label-smoothed cross-entropy, batch-hard triplet)."""

from . import (
    hoim,  # noqa: F401  (registers HOIMLoss: OIM + background buffer)
    oim,  # noqa: F401  (registers OIMLoss)
    reid_losses,  # noqa: F401  (label-smoothed CE, batch-hard triplet)
)
from .build import REID_LOSS_REGISTRY, build_reid_loss
from .hoim import HOIMLoss
from .oim import BACKGROUND_PID, UNLABELED_PID, OIMLoss

__all__ = [
    "BACKGROUND_PID",
    "REID_LOSS_REGISTRY",
    "UNLABELED_PID",
    "HOIMLoss",
    "OIMLoss",
    "build_reid_loss",
]
