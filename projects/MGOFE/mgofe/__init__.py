"""MGOFE: multi-granularity occlusion feature enhancement for person search, on SeqNeXt, as a
project of ``person_search``. Importing it registers ``MGOFERCNN`` (meta architecture) and
``MGOFEROIHeads``; add the keys with :func:`add_mgofe_config`."""

import person_search  # noqa: F401  (compat layer first: registers the library)

# isort: split
from .config import add_mgofe_config, check_mgofe_config
from .meta_arch import MGOFERCNN, OCCLUDED_IMAGES, VIRTUAL_FEATURES
from .mgfa import MGFA, FeatureDiscriminator, GradientReversal, grad_reverse
from .mgffe import MGFFE
from .roi_heads import MGOFEROIHeads

__all__ = [
    "MGFA",
    "MGFFE",
    "MGOFERCNN",
    "OCCLUDED_IMAGES",
    "VIRTUAL_FEATURES",
    "FeatureDiscriminator",
    "GradientReversal",
    "MGOFEROIHeads",
    "add_mgofe_config",
    "check_mgofe_config",
    "grad_reverse",
]
