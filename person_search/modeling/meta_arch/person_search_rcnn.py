"""Person-search R-CNN: a Faster R-CNN whose RoI heads also embed every person box."""

from __future__ import annotations

from typing import Any

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage

__all__ = ["OCCLUDED_QUERY_IMAGES", "PersonSearchRCNN"]

# Input key of a query's occluded copies (the test mapper's, for the occluded-query evaluation).
OCCLUDED_QUERY_IMAGES = "occluded_query_images"
_OCCLUDED_QUERY_KEYS = ("image", OCCLUDED_QUERY_IMAGES, "occluded_query_coverage")


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
    a query gives ``{"query_embeddings": (1, D)}`` computed from its given box and, when
    ``query_context_size > 0`` (CBGM on), ``"query_context"``: see :meth:`query_context`; a
    query with ``occluded_query_images`` (K, C, H, W) also gives
    ``"occluded_query_embeddings"`` (K, D): see :meth:`occluded_query_embeddings`.
    Both kinds can share one batch: the backbone runs once on all images.
    """

    @configurable
    def __init__(self, *, query_context_size: int = 0, **kwargs):
        """
        Args:
            query_context_size: rows of the CBGM context returned for each query (k2, the query
                box included); 0 = no context.
            kwargs: ``GeneralizedRCNN`` arguments.
        """
        super().__init__(**kwargs)
        if query_context_size < 0:
            raise ValueError(f"query_context_size must be >= 0, got {query_context_size}")
        self.query_context_size = query_context_size

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        # The CBGM keys configure the evaluator too, so model and evaluator cannot disagree.
        cbgm = cfg.TEST.PERSON_SEARCH.CBGM
        ret["query_context_size"] = int(cbgm.K2) if cbgm.ENABLED else 0
        return ret

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
        extra_losses = self.extra_losses(images, extra, gt_instances)
        if self.vis_period > 0:
            storage = get_event_storage()
            if storage.iter % self.vis_period == 0:
                self.visualize_training(batched_inputs, proposals)
        losses = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        clash = sorted(set(extra_losses) & set(losses))
        if clash:
            raise KeyError(f"extra_losses returned losses the model already has: {clash}")
        losses.update(extra_losses)
        return losses

    def extra_losses(
        self, images: ImageList, extra_features: dict[str, Any], gt_instances: list[Instances]
    ) -> dict[str, torch.Tensor]:
        """Training losses of the extra features beyond those of the RPN and the RoI heads
        (none here).

        Args:
            images: the normalised, padded batch.
            extra_features: what :meth:`extract_features` returned beside the backbone maps.
            gt_instances: the batch's ground truth (on the model's device).

        Override to train on the extra features: MGOFE's detection losses of the occluded
        copies (the RPN and the first RCNN head on each copy's maps).
        """
        del images, extra_features, gt_instances
        return {}

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
            for i, result in zip(scene_idx, results):
                outputs[i]["instances"] = _postprocess(result, batched_inputs[i], do_postprocess)
        if query_idx:
            sub_images, sub_features, sub_extra = _select(images, features, extra, query_idx)
            boxes = [self._query_boxes(batched_inputs[i]) for i in query_idx]
            embeddings = self.roi_heads.embed_boxes(sub_features, boxes, sub_extra)
            for i, emb in zip(query_idx, embeddings):
                outputs[i]["query_embeddings"] = emb
            if self.query_context_size > 0:
                contexts = self.query_context(
                    sub_images, sub_features, boxes, embeddings, sub_extra
                )
                for i, ctx in zip(query_idx, contexts):
                    outputs[i]["query_context"] = _postprocess(
                        ctx, batched_inputs[i], do_postprocess
                    )
            for i in query_idx:
                if OCCLUDED_QUERY_IMAGES in batched_inputs[i]:
                    outputs[i]["occluded_query_embeddings"] = self.occluded_query_embeddings(
                        batched_inputs[i]
                    )
        return outputs

    def occluded_query_embeddings(self, query: dict) -> torch.Tensor:
        """(K, D) embeddings of a query's box in each of its ``occluded_query_images``
        (K, C, H, W): the occluded-query evaluation (``TEST.PERSON_SEARCH.OCCLUDED_QUERIES``),
        the K copies embedded as queries in one pass (:meth:`embed_boxes`)."""
        box = self._query_boxes(query)
        base = {k: v for k, v in query.items() if k not in _OCCLUDED_QUERY_KEYS}
        inputs = [dict(base, image=copy) for copy in query[OCCLUDED_QUERY_IMAGES]]
        return torch.cat(self.embed_boxes(inputs, [box] * len(inputs)))

    def query_context(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        query_boxes: list[Boxes],
        query_embeddings: list[torch.Tensor],
        extra_features: dict[str, Any] | None = None,
    ) -> list[Instances]:
        """CBGM context of query images (SeqNet's query-image pass, :mod:`person_search.
        evaluation.cbgm`): the model's detections with the query box forced into the RoI
        heads' final NMS as a score-1 detection, which survives and removes the detections
        overlapping it.

        Args:
            images, features: the query images and their backbone features.
            query_boxes: per image, Boxes (1, 4) in the coordinates of its ``image`` tensor.
            query_embeddings: per image, (1, D) the query box's embedding.
            extra_features: the extra features of these images (:meth:`extract_features`).
        Returns:
            per image, Instances(pred_boxes, scores, pred_classes, embeddings (k, D)) in the
            resized image coordinates, k <= ``query_context_size``: the query box (score 1)
            first, then the other detections by decreasing score.
        """
        bad = [len(b) for b in query_boxes if len(b) != 1]
        if bad:
            raise ValueError(f"a CBGM query context needs one query box per image, got {bad[0]}")
        forced = []
        for size, boxes, emb in zip(images.image_sizes, query_boxes, query_embeddings):
            forced.append(Instances(size, pred_boxes=boxes, embeddings=emb))
        proposals, _ = self.proposal_generator(images, features, None)
        results, _ = self.roi_heads(
            images,
            features,
            proposals,
            None,
            extra_features=extra_features,
            forced_detections=forced,
        )
        return [r[: self.query_context_size] for r in results]

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


def _postprocess(result: Instances, inp: dict, do_postprocess: bool) -> Instances:
    """``result`` rescaled to the input's original ``height`` x ``width`` (when asked)."""
    if not do_postprocess:
        return result
    height = inp.get("height", result.image_size[0])
    width = inp.get("width", result.image_size[1])
    return detector_postprocess(result, height, width)
