"""Multi-level RoI pooler on the compiled RoIAlign, a drop-in for Detectron2's ``ROIPooler``."""

import math
from collections.abc import Sequence

import torch
from detectron2.config import CfgNode
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes
from torch import Tensor, nn

from .roi_align import ROIAlign, boxes_to_rois

__all__ = ["MultiLevelROIPooler", "assign_boxes_to_levels", "build_roi_pooler"]

# pooler_type -> value of RoIAlign's `aligned` (Detectron2's names).
_POOLER_TYPES = {"ROIAlign": False, "ROIAlignV2": True}
# Keeps log2 finite for empty boxes (Detectron2 uses the same value).
_LOG_EPS = 1e-8
# Values of MODEL.ROI_POOLER_IMPL.
POOLER_IMPLS = ("person_search", "detectron2")


def assign_boxes_to_levels(
    box_lists: Sequence[Boxes],
    min_level: int,
    max_level: int,
    canonical_box_size: float,
    canonical_level: int,
) -> Tensor:
    """FPN level of every box: ``floor(canonical_level + log2(sqrt(area) / canonical_size))``.

    Args:
        box_lists: one ``Boxes`` per image.
    Returns:
        (M,) int64 level index minus ``min_level``, boxes concatenated in image order.
    """
    box_sizes = torch.sqrt(torch.cat([boxes.area() for boxes in box_lists]))
    levels = torch.floor(canonical_level + torch.log2(box_sizes / canonical_box_size + _LOG_EPS))
    levels = torch.clamp(levels, min=min_level, max=max_level)
    return levels.to(torch.int64) - min_level


class MultiLevelROIPooler(nn.Module):
    """Pools every box from the feature level matching its size (Detectron2 ``ROIPooler``
    semantics) with :class:`ROIAlign` of the compiled extension."""

    def __init__(
        self,
        output_size: int | Sequence[int],
        scales: Sequence[float],
        sampling_ratio: int,
        pooler_type: str,
        canonical_box_size: float = 224,
        canonical_level: int = 4,
    ):
        """
        Args:
            output_size: ``S`` or ``(PH, PW)``.
            scales: 1 / stride of every level, a pyramid: consecutive factors of 1/2.
            sampling_ratio: RoIAlign samples per bin and axis, <= 0 for adaptive.
            pooler_type: "ROIAlign" (aligned=False) or "ROIAlignV2" (aligned=True).
            canonical_box_size: box size (sqrt(area), pixels) mapped to ``canonical_level``.
            canonical_level: level (log2 stride) of a canonical box; 4 = stride 16 (FPN).
        """
        super().__init__()
        if pooler_type not in _POOLER_TYPES:
            raise ValueError(
                f"pooler_type must be one of {sorted(_POOLER_TYPES)}, got {pooler_type!r}"
            )
        if len(scales) == 0:
            raise ValueError("scales must list at least one feature-map scale")
        if canonical_box_size <= 0:
            raise ValueError(f"canonical_box_size must be > 0, got {canonical_box_size}")
        self.level_poolers = nn.ModuleList(
            ROIAlign(output_size, s, sampling_ratio, aligned=_POOLER_TYPES[pooler_type])
            for s in scales
        )
        self.output_size = self.level_poolers[0].output_size
        min_level = -math.log2(scales[0])
        max_level = -math.log2(scales[-1])
        if not (
            math.isclose(min_level, round(min_level)) and math.isclose(max_level, round(max_level))
        ):
            raise ValueError(f"feature-map strides must be powers of 2, got scales {scales}")
        self.min_level = round(min_level)
        self.max_level = round(max_level)
        if len(scales) != self.max_level - self.min_level + 1 or self.min_level < 0:
            raise ValueError(f"scales {scales} do not form a pyramid of factor 1/2")
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def forward(self, x: list[Tensor], box_lists: list[Boxes]) -> Tensor:
        """
        Args:
            x: one (N, C, Hl, Wl) feature map per level, in the order of ``scales``.
            box_lists: N ``Boxes`` in image coordinates.
        Returns:
            (M, C, PH, PW), M = total number of boxes, in image order.
        """
        if len(x) != len(self.level_poolers):
            raise ValueError(f"expected {len(self.level_poolers)} feature maps, got {len(x)}")
        if len(box_lists) != x[0].shape[0]:
            raise ValueError(
                f"got {len(box_lists)} box lists for a batch of {x[0].shape[0]} images"
            )
        if len(box_lists) == 0:
            return x[0].new_zeros((0, x[0].shape[1], *self.output_size))
        rois = boxes_to_rois([b.tensor for b in box_lists])
        if len(self.level_poolers) == 1:
            return self.level_poolers[0](x[0], rois)
        levels = assign_boxes_to_levels(
            box_lists, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
        )
        output = x[0].new_zeros((rois.shape[0], x[0].shape[1], *self.output_size))
        for level, (features, pooler) in enumerate(zip(x, self.level_poolers)):
            inds = torch.nonzero(levels == level, as_tuple=True)[0]
            output.index_put_((inds,), pooler(features, rois[inds]))
        return output


def build_roi_pooler(
    cfg: CfgNode,
    output_size: int | Sequence[int],
    scales: Sequence[float],
    sampling_ratio: int,
    pooler_type: str,
) -> nn.Module:
    """The RoI pooler selected by ``cfg.MODEL.ROI_POOLER_IMPL``.

    Returns:
        :class:`MultiLevelROIPooler` for "person_search", Detectron2's ``ROIPooler`` for
        "detectron2"; both are called as ``pooler(features_list, box_lists)``.
    """
    impl = cfg.MODEL.ROI_POOLER_IMPL
    if impl == "person_search":
        return MultiLevelROIPooler(output_size, scales, sampling_ratio, pooler_type)
    if impl == "detectron2":
        return ROIPooler(output_size, scales, sampling_ratio, pooler_type)
    raise ValueError(f"cfg.MODEL.ROI_POOLER_IMPL must be one of {POOLER_IMPLS}, got {impl!r}")
