"""IIDFC: Improved Instance Discrimination and Feature Compactness for end-to-end person search
(Hou et al.), as a project of ``person_search``.

Importing the package registers its RoI heads (``IIDFCROIHeads``, ``AttentionOIMROIHeads``),
its re-id losses (``FCLoss``, ``OIMFCLoss``, ``SphereFaceLoss``, ``ArcFaceLoss``) and its RoI
attentions (``ROI_ATTENTION_REGISTRY``: PAM, SA, CBAM, NonLocal, none); configs need
:func:`add_iidfc_config` applied before merging.
"""

import person_search  # noqa: F401  (first: Detectron2's compat fixes; registers the library)

# isort: split
from .attention import ROI_ATTENTION_REGISTRY, build_roi_attention
from .config import add_iidfc_config
from .irr import IRRBoxRegressor
from .margin_losses import ArcFaceLoss, FCLoss, OIMFCLoss, SphereFaceLoss, angular_margin_target
from .pam import PedestrianAttention
from .roi_heads import AttentionOIMROIHeads, IIDFCROIHeads

__all__ = [
    "ROI_ATTENTION_REGISTRY",
    "ArcFaceLoss",
    "AttentionOIMROIHeads",
    "FCLoss",
    "IIDFCROIHeads",
    "IRRBoxRegressor",
    "OIMFCLoss",
    "PedestrianAttention",
    "SphereFaceLoss",
    "add_iidfc_config",
    "angular_margin_target",
    "build_roi_attention",
]
