"""Config keys for the data part of the library (see add_data_config)."""

from detectron2.config import CfgNode as CN


def add_data_config(cfg: CN) -> None:
    """Add the data keys to ``cfg`` in place.

    One comment per key: what it is, its unit, the paper\'s value.
    """
    # Name in person_search.data.build.MAPPER_REGISTRY of the mapper turning person-search
    # dataset dicts into model inputs (train: resize + flip, keeps gt_pids; test: resize, and the
    # query box for query dicts). Sizes come from Detectron2's INPUT.MIN_SIZE_* / MAX_SIZE_*
    # (the papers: shorter side 900, longer side <= 1500).
    cfg.INPUT.PERSON_SEARCH_MAPPER = "PersonSearchDatasetMapper"
