"""The training mapper of MaskGuidedPS: the library's person-search mapper, with the person
masks of :mod:`.training_masks` put into the annotations of the images that have them.

A masked person's annotation gets its ``segmentation`` (polygons, or an RLE with
``INPUT.MASK_FORMAT`` "bitmask"); the library's mapper then transforms it with the image
(resize, flip: Detectron2's ``transform_instance_annotations``), makes ``gt_masks`` for every
person (an empty placeholder for persons without a mask) and ``gt_has_mask``. Test-time mapping
is the library's, unchanged.
"""

from __future__ import annotations

import copy

from detectron2.config import configurable

from person_search.data.build import MAPPER_REGISTRY
from person_search.data.mappers import PersonSearchDatasetMapper

from .mask_records import Segmentation
from .training_masks import load_training_masks

__all__ = ["MaskGuidedDatasetMapper"]


@MAPPER_REGISTRY.register()
class MaskGuidedDatasetMapper(PersonSearchDatasetMapper):
    """``PersonSearchDatasetMapper`` + person masks from files (``INPUT.MASKGUIDED``)."""

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        person_masks: dict[str, dict[int, Segmentation]] | None = None,
        **kwargs,
    ):
        """
        Args:
            person_masks: training: image id -> annotation index -> segmentation (an image or
                person absent has no mask); None at test time.
            kwargs: ``PersonSearchDatasetMapper``'s arguments (``use_instance_mask`` must be
                True when masks are given).
        """
        super().__init__(is_train, **kwargs)
        if person_masks and not self.use_instance_mask:
            raise ValueError("person masks are given but the mapper makes no gt_masks")
        self.person_masks = person_masks or {}

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict:
        if not cfg.MODEL.MASK_ON:
            raise ValueError(
                "INPUT.PERSON_SEARCH_MAPPER='MaskGuidedDatasetMapper' reads person masks for the "
                "mask branch, but MODEL.MASK_ON is False (the OIM baseline uses the library's "
                "'PersonSearchDatasetMapper')"
            )
        ret = super().from_config(cfg, is_train)
        if is_train:
            ret["person_masks"] = load_training_masks(cfg).segmentations
        return ret

    def __call__(self, dataset_dict: dict) -> dict:
        """The library's mapping, after giving masked persons their ``segmentation``."""
        masks = self.person_masks.get(dataset_dict.get("image_id")) if self.is_train else None
        if masks:
            dataset_dict = copy.copy(dataset_dict)
            annotations = [dict(a) for a in dataset_dict["annotations"]]
            for index, segmentation in masks.items():
                annotations[index]["segmentation"] = segmentation  # the library deep-copies
            dataset_dict["annotations"] = annotations
        return super().__call__(dataset_dict)
