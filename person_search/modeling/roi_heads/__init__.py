"""Person-search RoI heads (registered in Detectron2's ``ROI_HEADS_REGISTRY``): OIM on
``Res5ROIHeads``, SeqNet / SeqNeXt, HOIM; and the box utilities they share."""

from . import (
    hoim_roi_heads,  # noqa: F401  (registers HOIMROIHeads)
    oim_roi_heads,  # noqa: F401  (registers OIMROIHeads)
    seqnet_roi_heads,  # noqa: F401  (registers SeqNetROIHeads: SeqNet / SeqNeXt)
)
from .hoim_roi_heads import HOIMROIHeads
from .oim_roi_heads import OIMROIHeads
from .seqnet_roi_heads import SeqNetROIHeads

__all__ = ["HOIMROIHeads", "OIMROIHeads", "SeqNetROIHeads"]
