"""Registry and builder of re-id heads."""

from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry
from torch import nn

from ...data.datasets import get_num_person_ids

__all__ = ["REID_HEAD_REGISTRY", "build_reid_head", "resolve_num_classes"]

REID_HEAD_REGISTRY = Registry("REID_HEAD")
REID_HEAD_REGISTRY.__doc__ = """
Registry for re-id heads, which turn backbone feature maps into person embeddings.

The registered object is called with ``obj(cfg, input_shape, backbone=backbone)``, where
``input_shape`` is the backbone's ``output_shape()`` (dict of name -> ShapeSpec) and ``backbone``
the built backbone with its ImageNet weights (``MODEL.REID.BACKBONE_WEIGHTS``) already loaded: a
head may deep-copy one of its stages (the re-id backbones are
:class:`~person_search.modeling.backbone.reid_backbones.StagedBackbone` s: ``stage(name)``,
``stage_input(name)``, ``stage_output_shape(name)``); a head that does not need it accepts
``backbone=None`` in ``from_config`` and ignores it. It must return an ``nn.Module`` whose
``forward(features, targets=None)`` takes the backbone's feature dict and, in training,
``targets`` = {"person_id": (N,) int64, ...the extra per-image targets every input carries,
among ``MODEL.REID.EXTRA_TARGETS``, e.g. "parsing": (N, H, W) int64} and returns a dict of named
scalar losses; in inference it returns {"features": (N, D)} plus optionally
"part_features": (N, P, d) and "part_visibility": (N, P) in [0, 1].
"""


def build_reid_head(
    cfg: CfgNode, input_shape: dict[str, ShapeSpec], backbone: nn.Module | None = None
) -> nn.Module:
    """Build the head named by ``cfg.MODEL.REID.HEAD.NAME``, giving it the backbone (see
    :data:`REID_HEAD_REGISTRY`)."""
    return REID_HEAD_REGISTRY.get(cfg.MODEL.REID.HEAD.NAME)(cfg, input_shape, backbone=backbone)


def resolve_num_classes(cfg: CfgNode) -> int:
    """Number of training identities of the classifier.

    ``MODEL.REID.HEAD.NUM_CLASSES`` if > 0, else the sum over ``DATASETS.TRAIN`` of each
    dataset's identity count from ``get_num_person_ids`` (static metadata when set, else counted
    from the dataset once per process; the re-id train loader shifts the ids of each further
    dataset past the previous ones).
    """
    num_classes = cfg.MODEL.REID.HEAD.NUM_CLASSES
    if num_classes > 0:
        return num_classes
    if num_classes < 0:
        raise ValueError(f"MODEL.REID.HEAD.NUM_CLASSES must be >= 0, got {num_classes}")
    if not cfg.DATASETS.TRAIN:
        raise ValueError(
            "MODEL.REID.HEAD.NUM_CLASSES = 0 reads num_person_ids from DATASETS.TRAIN, which is "
            "empty; set one of them"
        )
    return sum(_num_person_ids(name) for name in cfg.DATASETS.TRAIN)


def _num_person_ids(name: str) -> int:
    if name not in DatasetCatalog.list():
        raise ValueError(
            f"MODEL.REID.HEAD.NUM_CLASSES = 0 but train dataset {name!r} is not registered; "
            "register it or set MODEL.REID.HEAD.NUM_CLASSES"
        )
    return get_num_person_ids(name)
