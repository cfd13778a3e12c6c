"""PAN: Part-Aware Network for occluded person re-identification (Ye et al.), as a project of
``person_search``. Importing it registers ``PANHead`` in ``REID_HEAD_REGISTRY``; add the keys
with :func:`add_pan_config`."""

import person_search  # noqa: F401  (compat layer first: registers the library)

# isort: split
from .config import add_pan_config
from .feature_sources import BUFFER_SUFFIX, FeatureSources
from .head import PANHead
from .mask_generator import MaskGenerator
from .part_fc import PartFC, global_local_ratio
from .weighted_pooling import WeightedPartPooling, weighted_part_pooling

__all__ = [
    "BUFFER_SUFFIX",
    "FeatureSources",
    "MaskGenerator",
    "PANHead",
    "PartFC",
    "WeightedPartPooling",
    "add_pan_config",
    "global_local_ratio",
    "weighted_part_pooling",
]
