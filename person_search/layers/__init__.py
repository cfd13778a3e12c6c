"""person_search.layers: compiled ops (RoIAlign, multi-granularity occlusion) and their
Python wrappers. The extension ``person_search._C`` is loaded on first use."""

from ._ext import built_with_cuda, built_with_openmp, load_extension, registered_ops
from .occlusion import FILL_MODES, boxes_to_indexed, multi_granularity_occlusion
from .pooler import MultiLevelROIPooler, assign_boxes_to_levels, build_roi_pooler
from .roi_align import ROIAlign, boxes_to_rois, roi_align

__all__ = [
    "FILL_MODES",
    "MultiLevelROIPooler",
    "ROIAlign",
    "assign_boxes_to_levels",
    "boxes_to_indexed",
    "boxes_to_rois",
    "build_roi_pooler",
    "built_with_cuda",
    "built_with_openmp",
    "load_extension",
    "multi_granularity_occlusion",
    "registered_ops",
    "roi_align",
]
