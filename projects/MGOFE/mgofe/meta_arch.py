"""MGOFE's meta architecture: SeqNeXt's person-search R-CNN that also runs the occluded copies
of each image through the (shared) backbone, and hands their maps to the RoI heads as the
"virtual" features (``extra_features[VIRTUAL_FEATURES]``).

* Training: the copies are MGRO's (``INPUT.MGRO``; the mapper's ``occluded_images``, seeded by
  (SEED, iteration, image id), so a resumed run sees the same copies). With
  ``MODEL.MGOFE.COPY_DETECTION_LOSS`` the copies also train the detector
  (:meth:`MGOFERCNN.extra_losses`).
* Inference: no copies by default (the RoI heads fuse each RoI with itself); with
  ``MODEL.MGOFE.TEST_COPIES`` the copies are made here, by the same op and grids, occluding
  the query box of a query and the first head's detections of a scene image (the boxes the
  second head embeds), with a fixed seed per image.
"""

from __future__ import annotations

from typing import Any

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import ImageList, Instances

from person_search.data.occlusion import MGRO
from person_search.modeling.meta_arch.person_search_rcnn import PersonSearchRCNN

from .config import check_mgofe_config

__all__ = ["OCCLUDED_IMAGES", "VIRTUAL_FEATURES", "MGOFERCNN"]

# Input key of MGRO's copies (the library's training mapper): (m, C, H, W) uint8.
OCCLUDED_IMAGES = "occluded_images"
# Key of extra_features holding the copies' maps: {name: (B, m, C, H, W)}.
VIRTUAL_FEATURES = "virtual_features"


@META_ARCH_REGISTRY.register()
class MGOFERCNN(PersonSearchRCNN):
    """:class:`PersonSearchRCNN` with the occluded copies' feature maps as extra features."""

    @configurable
    def __init__(
        self,
        *,
        mgro: MGRO,
        train_copies: bool,
        test_copies: bool,
        copy_detection_loss_weight: float = 0.0,
        virtual_feature_names: list[str],
        **kwargs,
    ):
        """
        Args:
            mgro: grids, cell probability, fill and seed of the test-time copies.
            train_copies: run the training inputs' ``occluded_images`` through the backbone.
            test_copies: make and run copies at inference too.
            copy_detection_loss_weight: weight of the copies' detection losses (0 = none).
            virtual_feature_names: the backbone maps kept for the copies (those the RPN and the
                RoI heads read).
            kwargs: :class:`PersonSearchRCNN` arguments.
        """
        super().__init__(**kwargs)
        if copy_detection_loss_weight > 0 and not train_copies:
            raise ValueError("copy detection losses need the training copies (train_copies)")
        self.mgro = mgro
        self.train_copies = train_copies
        self.test_copies = test_copies
        self.copy_detection_loss_weight = copy_detection_loss_weight
        self.virtual_feature_names = list(virtual_feature_names)

    @classmethod
    def from_config(cls, cfg):
        mgro = check_mgofe_config(cfg)
        ret = super().from_config(cfg)
        m = cfg.MODEL.MGOFE
        copy_loss = m.COPY_DETECTION_LOSS
        names = list(dict.fromkeys([*cfg.MODEL.RPN.IN_FEATURES, *cfg.MODEL.ROI_HEADS.IN_FEATURES]))
        ret.update(
            mgro=mgro,
            train_copies=bool(cfg.INPUT.MGRO.ENABLED),
            test_copies=bool(m.TEST_COPIES),
            copy_detection_loss_weight=float(copy_loss.WEIGHT) if copy_loss.ENABLED else 0.0,
            virtual_feature_names=names,
        )
        return ret

    # ------------------------------------------------------------------------------ features
    def extract_features(
        self, images: ImageList, batched_inputs: list[dict]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The backbone maps, and in ``extra[VIRTUAL_FEATURES]`` the copies' maps
        ``{name: (B, m, C, H, W)}`` (training with MGRO, or inference with test copies)."""
        features, extra = super().extract_features(images, batched_inputs)
        if self.training and self.train_copies:
            copies = self._training_copies(batched_inputs)
        elif not self.training and self.test_copies:
            copies = self._test_copies(images, features, batched_inputs)
        else:
            return features, extra
        extra[VIRTUAL_FEATURES] = self.copy_features(copies, images)
        return features, extra

    def copy_features(
        self, copies: list[torch.Tensor], images: ImageList
    ) -> dict[str, torch.Tensor]:
        """Backbone maps of the copies: per image (m, C, H, W) uint8 copies of its input ->
        ``{name: (B, m, C', H', W')}``, normalised and padded as ``images`` (one backbone pass
        over the B x m copies)."""
        m = copies[0].shape[0]
        flat = [(c.to(self.device) - self.pixel_mean) / self.pixel_std for x in copies for c in x]
        batch = ImageList.from_tensors(flat, self.backbone.size_divisibility)
        if batch.tensor.shape[-2:] != images.tensor.shape[-2:]:
            raise ValueError(
                f"occluded copies pad to {tuple(batch.tensor.shape[-2:])}, the images to "
                f"{tuple(images.tensor.shape[-2:])}: the copies must have their image's size"
            )
        maps = self.backbone(batch.tensor)
        return {n: maps[n].unflatten(0, (len(copies), m)) for n in self.virtual_feature_names}

    def _training_copies(self, batched_inputs: list[dict]) -> list[torch.Tensor]:
        copies = []
        for i, x in enumerate(batched_inputs):
            if OCCLUDED_IMAGES not in x:
                raise ValueError(
                    f"MGOFE training input {i} ({x.get('file_name', '?')}) has no "
                    f"{OCCLUDED_IMAGES!r}: the copies come from the library's mapper with "
                    "INPUT.MGRO.ENABLED True"
                )
            c = x[OCCLUDED_IMAGES]
            if c.dim() != 4 or c.shape[1:] != x["image"].shape:
                raise ValueError(
                    f"MGOFE training input {i}: {OCCLUDED_IMAGES} {tuple(c.shape)} are not "
                    f"(m, *image.shape) with image {tuple(x['image'].shape)}"
                )
            copies.append(c)
        if len({c.shape[0] for c in copies}) != 1:
            raise ValueError(f"MGOFE inputs with different copy counts {[len(c) for c in copies]}")
        return copies

    @torch.no_grad()
    def _test_copies(
        self, images: ImageList, features: dict[str, torch.Tensor], batched_inputs: list[dict]
    ) -> list[torch.Tensor]:
        """Per input (m, C, H, W) copies: queries with their query box occluded, scene images
        with the first head's detections occluded (``INPUT.MGRO`` grids, fixed seed)."""
        proposals, _ = self.proposal_generator(images, features, None)
        detections = self.roi_heads.first_detections(features, proposals)
        copies = []
        for i, (x, det) in enumerate(zip(batched_inputs, detections)):
            boxes = self._query_boxes(x).tensor if "query_boxes" in x else _boxes(det)
            image_id = x.get("image_id", x.get("file_name", i))
            copies.append(
                self.mgro.copies_of_tensor(x["image"].to(self.device), boxes, 0, image_id)
            )
        return copies

    # -------------------------------------------------------------------------------- losses
    def extra_losses(
        self, images: ImageList, extra_features: dict[str, Any], gt_instances: list[Instances]
    ) -> dict[str, torch.Tensor]:
        """With ``MODEL.MGOFE.COPY_DETECTION_LOSS``: the RPN and first RCNN head losses of
        every copy (the same ground truth), averaged over the m copies, times the weight;
        named ``<loss>_occluded``."""
        if self.copy_detection_loss_weight <= 0 or VIRTUAL_FEATURES not in extra_features:
            return {}
        maps = extra_features[VIRTUAL_FEATURES]
        m = next(iter(maps.values())).shape[1]
        heads = self.roi_heads
        totals: dict[str, torch.Tensor] = {}
        for level in range(m):
            copy_maps = {n: t[:, level] for n, t in maps.items()}
            proposals, losses = self.proposal_generator(images, copy_maps, gt_instances)
            sampled = heads.label_and_sample_proposals(proposals, gt_instances)
            predictions, _ = heads.first_head(copy_maps, sampled)
            losses = {**losses, **heads.box_predictor.losses(predictions, sampled)}
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + value
        scale = self.copy_detection_loss_weight / m
        return {f"{name}_occluded": scale * value for name, value in totals.items()}


def _boxes(detections: Instances) -> torch.Tensor:
    return detections.pred_boxes.tensor.detach()
