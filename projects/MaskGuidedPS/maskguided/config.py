"""MaskGuidedPS's config keys (``MODEL.MASKGUIDED.*``, ``INPUT.MASKGUIDED.*``): see
:func:`add_maskguided_config`.

Paper: Zheng, Xiao, Huang, Zhao, "Segmentation mask guided end-to-end person search" (text in
``/work/shared/papers``; numbers and readings in ``projects/MaskGuidedPS/README.md``). The mask
branch itself is Detectron2's: ``MODEL.MASK_ON``, ``MODEL.ROI_MASK_HEAD.*`` (Mask R-CNN's C4
head: "MaskRCNNConvUpsampleHead", NUM_CONV 0, CONV_DIM 256: 7x7 res5 maps -> 14x14 masks) and
``INPUT.MASK_FORMAT``.
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_maskguided_config"]


def add_maskguided_config(cfg: CN) -> None:
    """Add MaskGuidedPS's keys to ``cfg`` in place (one comment per key: what, unit, paper
    value)."""
    cfg.MODEL.MASKGUIDED = CN()
    # lambda of eq. 7 for an image with masks (an image without masks: 0, always). Paper: 1.
    cfg.MODEL.MASKGUIDED.MASK_LOSS_WEIGHT = 1.0
    # Train the mask branch on proposals matched to labelled persons (pid >= 0) only. Paper:
    # True ("proposals with mask" are those of labelled persons); False also uses masks of
    # unlabelled persons, should a mask file have them.
    cfg.MODEL.MASKGUIDED.LABELLED_ONLY = True

    cfg.INPUT.MASKGUIDED = CN()
    # Person masks: a labelme directory (one JSON per image) or a COCO instances JSON; a
    # relative path is under $DETECTRON2_DATASETS. Paper: 1,833 CUHK-SYSU training images
    # annotated with labelme (layouts: datasets/README.md). "" = none (an error with the
    # MaskGuidedDatasetMapper).
    cfg.INPUT.MASKGUIDED.MASKS = ""
    # Layout of MASKS: "labelme", "coco" or "auto" (a directory is labelme, a file COCO).
    cfg.INPUT.MASKGUIDED.MASKS_FORMAT = "auto"
    # alpha of Table 4: fraction of *all* training images that keep their masks, in (0, 1]
    # (paper: 0.03, 0.06, 0.09, 0.12, 0.15), or -1 = every annotated image ("Full", 16%).
    cfg.INPUT.MASKGUIDED.IMAGE_FRACTION = -1.0
    # Seed of the draw of one image per portion of the annotated images (the alpha subsets;
    # no paper value: the paper does not say which images).
    cfg.INPUT.MASKGUIDED.SUBSET_SEED = 0
    # A mask instance matches the one person box with IoU >= MATCH_IOU (of the box around the
    # mask) ... (no paper value: the paper's masks come aligned; ours 0.5, the detection IoU)
    cfg.INPUT.MASKGUIDED.MATCH_IOU = 0.5
    # ... else the one box holding at least this fraction of the mask box's area (the visible
    # part of an occluded person); several or none: skipped and reported. No paper value.
    cfg.INPUT.MASKGUIDED.MATCH_CONTAINMENT = 0.9
