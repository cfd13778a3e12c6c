"""SGSFA: semantic-guided attention and shared feature alignment for occluded re-id.

Importing the package registers its backbone (``build_sgsfa_resnet_backbone``) and head
(``SGSFAHead``); configs need :func:`add_sgsfa_config` applied before merging.
"""

import person_search  # noqa: F401  (first: Detectron2's compat fixes; registers the library)

# isort: split
from . import backbone, head  # noqa: F401  (registers the backbone and the head)
from .config import add_sgsfa_config

__all__ = ["add_sgsfa_config"]
