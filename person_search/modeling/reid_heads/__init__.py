"""Re-id heads: turn backbone feature maps into embeddings and, in training, losses.

Heads are registered in :data:`REID_HEAD_REGISTRY` and selected by ``MODEL.REID.HEAD.NAME``;
projects (PAN, SGSFA) plug in their own head and keep the rest of ``ReIDBaseline``.
"""

from .bnneck import BNNeckHead
from .build import REID_HEAD_REGISTRY, build_reid_head, resolve_num_classes
from .losses import ReIDLossTerms, training_person_ids
from .pooling import POOLINGS, GlobalPool

__all__ = [
    "POOLINGS",
    "REID_HEAD_REGISTRY",
    "BNNeckHead",
    "GlobalPool",
    "ReIDLossTerms",
    "build_reid_head",
    "resolve_num_classes",
    "training_person_ids",
]
