"""Detections forced into a RoI head's final NMS: the query box in SeqNet's CBGM query pass.

SeqNet runs the query image through the detector with the query box added to the candidates of
the final NMS as a detection of score 1: it survives, and NMS removes the other detections that
overlap it (:mod:`person_search.evaluation.cbgm`). Every person-search head ends in a final
"score threshold -> NMS -> top-k" step; at inference, a head given ``forced_detections``
(per image, ``Instances`` with ``pred_boxes`` (F, 4) in the resized image's coordinates and
``embeddings`` (F, D)) appends them to that step's candidates with :func:`append_forced` and
completes the survivors with :func:`finish_forced`:

* :class:`~.oim_roi_heads.OIMROIHeads`: the box predictor's NMS (``MODEL.ROI_HEADS.
  NMS_THRESH_TEST``, top ``TEST.DETECTIONS_PER_IMAGE``), via Detectron2's
  ``fast_rcnn_inference``;
* :class:`~.hoim_roi_heads.HOIMROIHeads`: its NMS on the person probability p_f (same keys);
* :class:`~.seqnet_roi_heads.SeqNetROIHeads` (SeqNet, SeqNeXt): the NMS on the second head's
  refined boxes (``MODEL.SEQNET.SECOND_NMS_THRESH_TEST``), after the score threshold, exactly
  where SeqNet adds the query box; the first head's NMS is untouched, as in SeqNet.

A forced box enters NMS with score :data:`FORCED_NMS_SCORE` (above every probability), so it is
kept, first, even when another detection scores exactly 1; it leaves with score
:data:`FORCED_SCORE` and its given embedding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from detectron2.structures import Instances

__all__ = ["FORCED_NMS_SCORE", "FORCED_SCORE", "append_forced", "finish_forced"]

FORCED_NMS_SCORE = 2.0  # a forced box's NMS priority: above any probability, so it is kept first
FORCED_SCORE = 1.0  # a forced box's score in the head's output


def append_forced(
    boxes: torch.Tensor, scores: torch.Tensor, forced: Instances
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's final-NMS candidates with the forced boxes appended (rows R .. R+F-1).

    Args:
        boxes: (R, 4K) class-specific boxes of K classes (Detectron2's layout; K = 1 for
            person search) or (R, 4).
        scores: (R, K+1) class probabilities, background last (Detectron2's layout), or (R,).
        forced: ``Instances`` with ``pred_boxes`` (F, 4).
    Returns:
        boxes (R+F, 4K) and scores (R+F, K+1) (or (R+F,)); a forced row is class 0 (person).
    """
    forced_boxes = forced.pred_boxes.tensor.to(boxes)
    forced_boxes = forced_boxes.repeat(1, boxes.shape[1] // forced_boxes.shape[1])
    if scores.dim() == 2:
        forced_scores = scores.new_zeros((len(forced_boxes), scores.shape[1]))
        forced_scores[:, 0] = FORCED_NMS_SCORE
    else:
        forced_scores = scores.new_full((len(forced_boxes),), FORCED_NMS_SCORE)
    return torch.cat([boxes, forced_boxes]), torch.cat([scores, forced_scores])


def finish_forced(
    result: Instances,
    kept: torch.Tensor,
    num_candidates: int,
    forced: Instances,
    candidate_embeddings: Callable[[torch.Tensor], torch.Tensor],
) -> Instances:
    """Complete the final-NMS survivors of one image whose candidates were extended by
    :func:`append_forced`: embeddings, and score :data:`FORCED_SCORE` for the forced rows.

    Args:
        result: the survivors (``pred_boxes``, ``scores`` ...), modified in place.
        kept: (n,) their indices among the R + F candidates.
        num_candidates: R.
        forced: the forced ``Instances`` (``embeddings`` (F, D)).
        candidate_embeddings: (m,) indices < R -> (m, D) embeddings of those candidates.
    """
    is_forced = kept >= num_candidates
    embeddings = forced.embeddings.new_empty((len(kept), forced.embeddings.shape[1]))
    embeddings[~is_forced] = candidate_embeddings(kept[~is_forced]).to(embeddings)
    embeddings[is_forced] = forced.embeddings[kept[is_forced] - num_candidates]
    result.embeddings = embeddings
    result.scores = torch.where(is_forced, result.scores.new_tensor(FORCED_SCORE), result.scores)
    return result
