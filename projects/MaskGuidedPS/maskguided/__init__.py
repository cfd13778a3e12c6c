"""MaskGuidedPS: segmentation-mask guided end-to-end person search (Zheng et al.), as a
project of ``person_search``: OIM with a Mask R-CNN mask branch on the res5 RoI maps, trained
on partial mask annotations. Importing it registers ``MaskGuidedROIHeads`` (RoI heads) and
``MaskGuidedDatasetMapper`` (person-search mapper); add the keys with
:func:`add_maskguided_config`."""

import person_search  # noqa: F401  (compat layer first: registers the library)

# isort: split
from .coco_masks import read_coco_instances
from .config import add_maskguided_config
from .labelme import read_labelme_dir, read_labelme_file
from .mapper import MaskGuidedDatasetMapper
from .mask_records import ImageMasks, MaskInstance, MaskIssue, MaskPiece, MaskSet
from .matching import MatchRule, match_instances
from .roi_heads import MaskGuidedROIHeads
from .subsets import FULL, select_mask_subset
from .training_masks import (
    TrainingMasks,
    build_training_masks,
    load_training_masks,
    person_segmentation,
    read_mask_source,
)

__all__ = [
    "FULL",
    "ImageMasks",
    "MaskGuidedDatasetMapper",
    "MaskGuidedROIHeads",
    "MaskInstance",
    "MaskIssue",
    "MaskPiece",
    "MaskSet",
    "MatchRule",
    "TrainingMasks",
    "add_maskguided_config",
    "build_training_masks",
    "load_training_masks",
    "match_instances",
    "person_segmentation",
    "read_coco_instances",
    "read_labelme_dir",
    "read_labelme_file",
    "read_mask_source",
    "select_mask_subset",
]
