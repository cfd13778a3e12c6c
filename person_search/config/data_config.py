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

    # ---- Dataset reading: protocol cache and bad boxes (person_search.data.datasets.options;
    # ---- applied by the data loader builders). One block: may move when config is regrouped.
    cfg.DATASETS.PROTOCOL_CACHE = CN()
    # Keep each parsed CUHK-SYSU protocol file (TestG<N>.mat, subsets) as an .npz entry keyed
    # by the file's path, size, mtime and content hash; False parses them in every process.
    cfg.DATASETS.PROTOCOL_CACHE.ENABLED = True
    # Cache folder; "" = $PERSON_SEARCH_CACHE_DIR, else $XDG_CACHE_HOME/person_search
    # (~/.cache/person_search).
    cfg.DATASETS.PROTOCOL_CACHE.DIR = ""
    # Annotation boxes with a negative width or height: False = an error naming the file, row
    # and values; True = dropped and counted in the load summary. (Zero-area boxes are always
    # dropped and counted, as the published loaders do.)
    cfg.DATASETS.DROP_NEGATIVE_BOXES = False
