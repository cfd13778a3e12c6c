"""Person-search R-CNN: a Faster R-CNN whose RoI heads also embed every person box."""

from __future__ import annotations

from typing import Any

import torch
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList
from detectron2.utils.events import get_event_storage

__all__ = ["PersonSearchRCNN"]


def _select_batch(obj: Any, idx: torch.Tensor) -> Any:
    """``obj`` with every tensor in it (nested dicts, lists, tuples) indexed by ``idx`` along
    its first (batch) dimension; other values unchanged."""
    if isinstance(obj, torch.Tensor):
        return obj[idx.to(obj.device)]
    if isinstance(obj, dict):
        return {k: _select_batch(v, idx) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_select_batch(v, idx) for v in obj)
    return obj


def _select(images: ImageList, features: dict[str, torch.Tensor], extra: dict, indices: list[int]):
    """The sub-batch ``indices`` of a padded image batch, of its feature maps and of its extra
    features."""
    idx = torch.as_tensor(indices, device=images.tensor.device)
    sub_images = ImageList(images.tensor[idx], [images.image_sizes[i] for i in indices])
    return sub_images, _select_batch(features, idx), _select_batch(extra, idx)


@META_ARCH_REGISTRY.register()
class PersonSearchRCNN(GeneralizedRCNN):
    """Backbone + RPN + person-search RoI heads (e.g. ``OIMROIHeads``).

    The RoI heads must provide ``forward(images, features, proposals, targets=None,
    extra_features=None)`` as Detectron2's (inference instances carrying an ``embeddings``
    field) and ``embed_boxes(features, list[Boxes], extra_features=None) -> list[(n_i, D)]``;
    ``extra_features`` is what :meth:`extract_features` returns beside the backbone maps.

    Inputs (one dict per image, as produced by the person-search mappers):

    * training: ``image`` (C, H, W), ``instances`` with ``gt_boxes``, ``gt_classes``,
      ``gt_pids``;
    * inference, scene image: ``image``, ``height``, ``width`` (original size);
    * inference, query: additionally ``query_boxes`` (Boxes (1, 4) in the coordinates of
      ``image``).

    Outputs at inference, one dict per input: a scene image gives ``{"instances":
    Instances(pred_boxes (original coordinates), scores, pred_classes, embeddings (M, D))}``,
    a query gives ``{"query_embeddings": (1, D)}`` computed from its given box. Both kinds
    can share one batch: the backbone runs once on all images.
    """

    def extract_features(
        self, images: ImageList, batched_inputs: list[dict]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Features of a batch: the backbone maps, and any extra features the RoI heads receive
        (``extra_features`` of their ``forward`` / ``embed_boxes`` and of their
        ``transform_roi_features`` step).

        Args:
            images: the normalised, padded batch (``preprocess_image``).
            batched_inputs: the input dicts (e.g. MGRO's ``occluded_images``).

        Returns:
            the backbone's dict of (B, C, H, W) maps, and a dict of extra features ({} here):
            every tensor in it must have the image batch as its first dimension (inference
            splits mixed batches of scene images and queries along it).

        Override to add features: MGOFE runs the occluded copies of each image through the
        backbone and returns their maps, from which its RoI heads pool the same boxes.
        """
        del batched_inputs
        return self.backbone(images.tensor), {}

    def forward(self, batched_inputs: list[dict]):
        """Training: dict of losses (RPN, RoI heads: box, re-id, mask, ...). Inference: see the
        class docstring."""
        if not self.training:
            return self.inference(batched_inputs)
        missing = [i for i, x in enumerate(batched_inputs) if "instances" not in x]
        if missing:
            raise ValueError(
                f"PersonSearchRCNN training inputs {missing} have no 'instances' (gt_boxes, "
                "gt_classes, gt_pids)"
            )
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        features, extra = self.extract_features(images, batched_inputs)
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        _, detector_losses = self.roi_heads(
            images, features, proposals, gt_instances, extra_features=extra
        )
        if self.vis_period > 0:
            storage = get_event_storage()
            if storage.iter % self.vis_period == 0:
                self.visualize_training(batched_inputs, proposals)
        losses = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        return losses

    def inference(self, batched_inputs: list[dict], do_postprocess: bool = True):
        """Detect + embed in scene images and embed given query boxes, in one backbone pass.

        Args:
            batched_inputs: see the class docstring; dicts with ``query_boxes`` are queries.
            do_postprocess: rescale detections to the original ``height`` x ``width``.

        Returns:
            list[dict], one per input, in input order.
        """
        assert not self.training
        images = self.preprocess_image(batched_inputs)
        features, extra = self.extract_features(images, batched_inputs)
        query_idx = [i for i, x in enumerate(batched_inputs) if "query_boxes" in x]
        scene_idx = [i for i, x in enumerate(batched_inputs) if "query_boxes" not in x]
        outputs: list[dict] = [{} for _ in batched_inputs]
        if scene_idx:
            sub_images, sub_features, sub_extra = _select(images, features, extra, scene_idx)
            proposals, _ = self.proposal_generator(sub_images, sub_features, None)
            results, _ = self.roi_heads(
                sub_images, sub_features, proposals, None, extra_features=sub_extra
            )
            for i, result, size in zip(scene_idx, results, sub_images.image_sizes):
                if do_postprocess:
                    height = batched_inputs[i].get("height", size[0])
                    width = batched_inputs[i].get("width", size[1])
                    result = detector_postprocess(result, height, width)
                outputs[i]["instances"] = result
        if query_idx:
            _, sub_features, sub_extra = _select(images, features, extra, query_idx)
            boxes = [self._query_boxes(batched_inputs[i]) for i in query_idx]
            embeddings = self.roi_heads.embed_boxes(sub_features, boxes, sub_extra)
            for i, emb in zip(query_idx, embeddings):
                outputs[i]["query_embeddings"] = emb
        return outputs

    @torch.no_grad()
    def embed_boxes(self, batched_inputs: list[dict], boxes: list[Boxes]) -> list[torch.Tensor]:
        """Embeddings of given boxes, without detection.

        Args:
            batched_inputs: dicts with ``image`` (C, H, W) as for inference.
            boxes: per input, Boxes (n_i, 4) XYXY in the coordinates of that ``image`` tensor
                (i.e. after the mapper's resizing).

        Returns:
            per input, (n_i, D) float32 L2-normalised embeddings.
        """
        if len(boxes) != len(batched_inputs):
            raise ValueError(f"got {len(boxes)} box lists for {len(batched_inputs)} images")
        images = self.preprocess_image(batched_inputs)
        features, extra = self.extract_features(images, batched_inputs)
        boxes = [b.to(self.device) for b in boxes]
        return self.roi_heads.embed_boxes(features, boxes, extra)

    def _query_boxes(self, x: dict) -> Boxes:
        boxes = x["query_boxes"]
        if not isinstance(boxes, Boxes):
            boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        if len(boxes) == 0:
            raise ValueError(f"query input {x.get('image_id', '?')!r} has an empty query_boxes")
        return boxes.to(self.device)
