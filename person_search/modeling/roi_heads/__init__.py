from . import (
    hoim_roi_heads,  # noqa: F401  (registers HOIMROIHeads)
    oim_roi_heads,  # noqa: F401  (registers OIMROIHeads)
    seqnet_roi_heads,  # noqa: F401  (registers SeqNetROIHeads: SeqNet / SeqNeXt)
)
