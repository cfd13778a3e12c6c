"""Dataset mapper for person-search scene images (training, gallery and query dicts)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes

from .build import ITERATION_KEY, MAPPER_REGISTRY
from .occlusion import MGRO, QueryOcclusion

__all__ = ["PersonSearchDatasetMapper"]


@MAPPER_REGISTRY.register()
class PersonSearchDatasetMapper:
    """Read, augment and pack one person-search dataset dict.

    Output dict: ``image`` (C, H, W) uint8 tensor in ``image_format``, ``height``/``width`` (the
    original size), ``image_id``, ``file_name``, ``camera_id`` and:

    * training: ``instances`` with ``gt_boxes`` (Boxes (N, 4), resized image coordinates),
      ``gt_classes`` (N,) int64 zeros, ``gt_pids`` (N,) int64 (-1 unlabelled); with masks on,
      ``gt_masks`` for every person and ``gt_has_mask`` (N,) bool: a person whose annotation
      has no (or an empty) ``segmentation`` gets an empty placeholder mask (no polygon / an
      all-zero bitmask) and ``gt_has_mask`` False, and no loss reads it. Boxes left empty by
      the augmentation are dropped together with their pid and mask. With MGRO on
      (``INPUT.MGRO``), also ``occluded_images`` (L, C, H, W) uint8: copies of ``image`` with
      random cells of every person box covered, seeded by ``(SEED, train_iteration,
      image_id)``.
    * test scene images: ``annotations`` unchanged (original coordinates, for evaluation).
    * query dicts: ``query_boxes`` (Boxes (1, 4), in the resized image's coordinates),
      ``query_index`` and ``person_id``; with the occluded-query evaluation on
      (``TEST.PERSON_SEARCH.OCCLUDED_QUERIES``), also ``occluded_query_images`` (K, C, H, W)
      uint8, copies of ``image`` with only the query box partly covered, one per (grid,
      coverage) setting, and ``occluded_query_coverage`` (K,) float32, the fraction of the
      box's pixels each covers (:class:`~.occlusion.QueryOcclusion`).
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
        mgro: MGRO | None = None,
        query_occlusion: QueryOcclusion | None = None,
    ):
        """
        Args:
            is_train: training mode (builds ``instances``) or test mode.
            augmentations: applied to image and boxes (e.g. ResizeShortestEdge, RandomFlip).
            image_format: ``read_image`` format, e.g. "BGR" or "RGB".
            use_instance_mask: put ``gt_masks`` and ``gt_has_mask`` in training instances.
            instance_mask_format: "polygon" or "bitmask".
            mgro: training only: make MGRO's occluded copies (``occluded_images``); None = off.
            query_occlusion: test only: make occluded copies of query images
                (``occluded_query_images``); None = off.
        """
        if instance_mask_format not in ("polygon", "bitmask"):
            raise ValueError(f"INPUT.MASK_FORMAT={instance_mask_format!r}: 'polygon' or 'bitmask'")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.use_instance_mask = use_instance_mask
        self.instance_mask_format = instance_mask_format
        self.mgro = mgro if is_train else None
        self.query_occlusion = None if is_train else query_occlusion

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict:
        return {
            "is_train": is_train,
            "augmentations": utils.build_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "use_instance_mask": cfg.MODEL.MASK_ON,
            "instance_mask_format": cfg.INPUT.MASK_FORMAT,
            "mgro": MGRO.from_config(cfg) if is_train and cfg.INPUT.MGRO.ENABLED else None,
            "query_occlusion": (
                QueryOcclusion.from_config(cfg)
                if not is_train and cfg.TEST.PERSON_SEARCH.OCCLUDED_QUERIES.ENABLED
                else None
            ),
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
            if self.query_occlusion is not None:
                self._occluded_query(dataset_dict, image)
            return dataset_dict
        if not self.is_train:
            return dataset_dict
        annos = [
            utils.transform_instance_annotations(_float_box(a), transforms, image_shape)
            for a in dataset_dict.pop("annotations", ())
        ]
        has_mask = [_has_segmentation(a) for a in annos]
        for a, with_mask in zip(annos, has_mask):
            if not self.use_instance_mask:
                a.pop("segmentation", None)
            elif not with_mask:
                a["segmentation"] = self._placeholder_mask(image_shape)
        instances = utils.annotations_to_instances(
            annos, image_shape, mask_format=self.instance_mask_format
        )
        instances.gt_pids = torch.as_tensor(
            [a["person_id"] for a in annos], dtype=torch.int64
        ).reshape(-1)
        if self.use_instance_mask:
            instances.gt_has_mask = torch.as_tensor(has_mask, dtype=torch.bool).reshape(-1)
        # By box only: the placeholder masks are empty on purpose.
        instances = utils.filter_empty_instances(instances, by_mask=False)
        dataset_dict["instances"] = instances
        if self.mgro is not None:
            dataset_dict["occluded_images"] = self._occluded_images(dataset_dict, image, instances)
        return dataset_dict

    def _occluded_query(self, dataset_dict: dict, image: np.ndarray) -> None:
        """Add the occluded copies of a query's augmented (H, W, C) ``image`` and their
        coverage, seeded by its ``query_index``."""
        if "query_index" not in dataset_dict:
            raise KeyError(
                f"{dataset_dict['file_name']}: the occluded-query evaluation seeds each query's "
                "copies with its 'query_index', which this query dict lacks"
            )
        box = dataset_dict["query_boxes"].tensor[0].tolist()
        copies, coverage = self.query_occlusion.copies(image, box, dataset_dict["query_index"])
        dataset_dict["occluded_query_images"] = torch.as_tensor(
            np.ascontiguousarray(copies.transpose(0, 3, 1, 2))
        )
        dataset_dict["occluded_query_coverage"] = torch.from_numpy(coverage)

    def _placeholder_mask(self, image_shape: tuple[int, int]) -> list | np.ndarray:
        """The empty mask of a person without one: no polygon, or an all-zero bitmask."""
        if self.instance_mask_format == "polygon":
            return []
        return np.zeros(image_shape, dtype=np.uint8)

    def _occluded_images(self, dataset_dict: dict, image: np.ndarray, instances) -> torch.Tensor:
        """MGRO's (L, C, H, W) copies of the augmented (H, W, C) ``image``."""
        if ITERATION_KEY not in dataset_dict:
            raise KeyError(
                f"{dataset_dict['file_name']}: INPUT.MGRO seeds its occlusions with the "
                f"training iteration ({ITERATION_KEY!r}), which the dict lacks: build the loader "
                "with person_search.data.build_person_search_train_loader"
            )
        copies = self.mgro.copies(
            image,
            instances.gt_boxes.tensor.numpy(),
            dataset_dict[ITERATION_KEY],
            dataset_dict.get("image_id", dataset_dict["file_name"]),
        )
        return torch.as_tensor(np.ascontiguousarray(copies.transpose(0, 3, 1, 2)))


def _has_segmentation(annotation: dict) -> bool:
    """Whether an annotation has a mask: a ``segmentation`` that is not an empty polygon list."""
    segmentation = annotation.get("segmentation")
    if segmentation is None:
        return False
    return len(segmentation) > 0 if isinstance(segmentation, list) else True


def _float_box(annotation: dict) -> dict:
    """A deep copy of ``annotation`` with a float ``bbox``: Detectron2 transforms the box in place
    in an array of the box's own dtype, which truncates integer coordinates after a resize."""
    annotation = copy.deepcopy(annotation)
    annotation["bbox"] = [float(v) for v in annotation["bbox"]]
    return annotation
