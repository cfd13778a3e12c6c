"""Dataset mapper for person-search scene images (training, gallery and query dicts)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes

from .build import MAPPER_REGISTRY

__all__ = ["PersonSearchDatasetMapper"]


@MAPPER_REGISTRY.register()
class PersonSearchDatasetMapper:
    """Read, augment and pack one person-search dataset dict.

    Output dict: ``image`` (C, H, W) uint8 tensor in ``image_format``, ``height``/``width`` (the
    original size), ``image_id``, ``file_name``, ``camera_id`` and:

    * training: ``instances`` with ``gt_boxes`` (Boxes (N, 4), resized image coordinates),
      ``gt_classes`` (N,) int64 zeros, ``gt_pids`` (N,) int64 (-1 unlabelled) and ``gt_masks``
      when masks are on and every annotation has a ``segmentation``; boxes left empty by the
      augmentation are dropped together with their pid.
    * test scene images: ``annotations`` unchanged (original coordinates, for evaluation).
    * query dicts: ``query_boxes`` (Boxes (1, 4), in the resized image's coordinates),
      ``query_index`` and ``person_id``.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: list[T.Augmentation | T.Transform],
        image_format: str,
        use_instance_mask: bool = False,
        instance_mask_format: str = "polygon",
    ):
        """
        Args:
            is_train: training mode (builds ``instances``) or test mode.
            augmentations: applied to image and boxes (e.g. ResizeShortestEdge, RandomFlip).
            image_format: ``read_image`` format, e.g. "BGR" or "RGB".
            use_instance_mask: put ``gt_masks`` in training instances (needs ``segmentation``).
            instance_mask_format: "polygon" or "bitmask".
        """
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.use_instance_mask = use_instance_mask
        self.instance_mask_format = instance_mask_format

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict:
        return {
            "is_train": is_train,
            "augmentations": utils.build_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "use_instance_mask": cfg.MODEL.MASK_ON,
            "instance_mask_format": cfg.INPUT.MASK_FORMAT,
        }

    def _read(self, dataset_dict: dict) -> np.ndarray:
        file_name = dataset_dict["file_name"]
        try:
            image = utils.read_image(file_name, format=self.image_format)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"image not found: {file_name}") from e
        except OSError as e:  # PIL: unidentified / truncated image
            raise OSError(f"cannot read image {file_name}: {e}") from e
        utils.check_image_size(dataset_dict, image)
        return image

    def __call__(self, dataset_dict: dict) -> dict:
        """Map one dataset dict (not modified) to a model input dict."""
        dataset_dict = copy.copy(dataset_dict)
        image = self._read(dataset_dict)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]  # (H, W) after augmentation
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

        if "query_box" in dataset_dict:
            box = np.asarray(dataset_dict.pop("query_box"), dtype=np.float64).reshape(1, 4)
            dataset_dict["query_boxes"] = Boxes(
                torch.as_tensor(transforms.apply_box(box), dtype=torch.float32)
            )
            return dataset_dict
        if not self.is_train:
            return dataset_dict
        annos = [
            utils.transform_instance_annotations(_float_box(a), transforms, image_shape)
            for a in dataset_dict.pop("annotations", ())
        ]
        with_segm = [("segmentation" in a) for a in annos]
        use_masks = self.use_instance_mask and annos and all(with_segm)
        if self.use_instance_mask and any(with_segm) and not all(with_segm):
            raise ValueError(
                f"{dataset_dict['file_name']}: some annotations have a 'segmentation' and some "
                "do not; masks need one for every box"
            )
        if not use_masks:
            for a in annos:
                a.pop("segmentation", None)
        instances = utils.annotations_to_instances(
            annos, image_shape, mask_format=self.instance_mask_format
        )
        instances.gt_pids = torch.as_tensor(
            [a["person_id"] for a in annos], dtype=torch.int64
        ).reshape(-1)
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
        return dataset_dict


def _float_box(annotation: dict) -> dict:
    """A deep copy of ``annotation`` with a float ``bbox``: Detectron2 transforms the box in place
    in an array of the box's own dtype, which truncates integer coordinates after a resize."""
    annotation = copy.deepcopy(annotation)
    annotation["bbox"] = [float(v) for v in annotation["bbox"]]
    return annotation
