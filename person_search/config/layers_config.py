"""Config keys for the layers part of the library (see add_layers_config)."""

from detectron2.config import CfgNode as CN


def add_layers_config(cfg: CN) -> None:
    """Add the layers keys to ``cfg`` in place.

    One comment per key: what it is, its unit, the paper\'s value.
    """
    # RoI pooler implementation used by build_roi_pooler: "person_search" (the compiled
    # RoIAlign of person_search._C, CPU + CUDA) or "detectron2" (Detectron2's ROIPooler on
    # torchvision's RoIAlign). Same results either way; no unit; not a paper setting.
    cfg.MODEL.ROI_POOLER_IMPL = "person_search"
