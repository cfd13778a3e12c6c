"""MaskGuidedPS's RoI heads: the library's OIM heads with the mask branch trained as the paper
trains it.

OIM (Detectron2's ``Res5ROIHeads``): RoIAlign 14x14 on res4 -> res5 (7x7, 2048 channels) ->
pooled 2048-d -> box classifier / regressor and the 256-d L2-normalised OIM embedding. The mask
branch is Detectron2's Mask R-CNN C4 head (``MODEL.ROI_MASK_HEAD``: "MaskRCNNConvUpsampleHead",
no conv, 2x2 deconvolution to 14x14, 1x1 predictor, per-pixel sigmoid BCE) on the same res5
RoI maps ``F_p``.

The paper's eq. 6 / 7: only the *proposals with mask* (foreground proposals matched to a
labelled person, pid >= 0, that has a mask) enter the mask branch; background proposals,
proposals of unlabelled persons and of persons without a mask contribute exactly nothing.
``L_total = L_RPN + L_RCNN + L_id + lambda * L_mask`` with lambda = ``MASK_LOSS_WEIGHT`` (1)
for an image with masks and 0 otherwise: an image without masks has no proposal with mask, so
none of its RoIs reaches the loss. ``L_mask`` is Detectron2's mean of the per-pixel BCE over the
proposals with mask of the batch (the paper sums; with its batch of 1 image the two differ by a
constant factor, our reading in the README).

At inference the detections get ``pred_masks`` (the library's path: the mask head on the RoI
maps of the detected boxes, pasted into the image by the meta architecture's postprocessing).
"""

from __future__ import annotations

import torch
from detectron2.config import configurable
from detectron2.modeling import ROI_HEADS_REGISTRY

from person_search.modeling.roi_heads.oim_roi_heads import OIMROIHeads, PerImage

__all__ = ["MaskGuidedROIHeads"]


@ROI_HEADS_REGISTRY.register()
class MaskGuidedROIHeads(OIMROIHeads):
    """``OIMROIHeads`` whose mask branch trains on labelled persons with masks only, its loss
    weighted by ``MODEL.MASKGUIDED.MASK_LOSS_WEIGHT``."""

    @configurable
    def __init__(self, *, labelled_only: bool = True, **kwargs):
        """
        Args:
            labelled_only: train the mask branch on proposals of labelled persons only (the
                paper); False also uses masks of unlabelled persons.
            kwargs: ``OIMROIHeads``' arguments; ``mask_head`` is required.
        """
        super().__init__(**kwargs)
        if self.mask_head is None:
            raise ValueError(f"{type(self).__name__} needs a mask head (MODEL.MASK_ON True)")
        self.labelled_only = labelled_only

    @classmethod
    def from_config(cls, cfg, input_shape):
        if not cfg.MODEL.MASK_ON:
            raise ValueError(
                "MODEL.ROI_HEADS.NAME='MaskGuidedROIHeads' is the OIM heads with a mask branch: "
                "set MODEL.MASK_ON True (the baseline without masks is 'OIMROIHeads')"
            )
        weight = cfg.MODEL.MASKGUIDED.MASK_LOSS_WEIGHT
        if weight < 0:
            raise ValueError(f"MODEL.MASKGUIDED.MASK_LOSS_WEIGHT={weight}: must be >= 0")
        ret = super().from_config(cfg, input_shape)
        ret["mask_head"].loss_weight = float(weight)  # Detectron2's head multiplies its loss
        ret["labelled_only"] = cfg.MODEL.MASKGUIDED.LABELLED_ONLY
        return ret

    def mask_training_selection(self, foreground: PerImage) -> list[torch.Tensor]:
        """Per image, (n_i,) bool: the foreground proposals matched to a person with a mask
        (the library's rule) and, with ``labelled_only``, a labelled one (``gt_pids`` >= 0)."""
        with_mask = super().mask_training_selection(foreground)
        if not self.labelled_only:
            return with_mask
        return [
            keep & (p.gt_pids >= 0) if p.has("gt_pids") else torch.zeros_like(keep)
            for keep, p in zip(with_mask, foreground)
        ]
