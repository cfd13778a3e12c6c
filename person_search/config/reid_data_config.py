"""Config keys for the re-id data and evaluation part of the library (see add_reid_data_config)."""

from detectron2.config import CfgNode as CN


def add_reid_data_config(cfg: CN) -> None:
    """Add the re-id data, loader and evaluation keys to ``cfg`` in place.

    One comment per key: what it is, its unit, the paper's value.
    """
    cfg.INPUT.REID = CN()
    # Name of the re-id dataset mapper in REID_MAPPER_REGISTRY (person_search.data.reid_mapper),
    # used by the re-id train and test loaders; projects register their own.
    cfg.INPUT.REID.MAPPER = "ReIDDatasetMapper"
    # Training input size (height, width) in pixels; PAN and SGSFA use 256x128.
    cfg.INPUT.REID.SIZE_TRAIN = (256, 128)
    # Test input size (height, width) in pixels; 256x128 in both papers.
    cfg.INPUT.REID.SIZE_TEST = (256, 128)
    # Probability of a horizontal flip at training time (0.5 in both papers).
    cfg.INPUT.REID.FLIP_PROB = 0.5
    # Zero padding (pixels, each side) before the random crop back to SIZE_TRAIN; 10 (fast-reid,
    # bag-of-tricks); 0 disables pad + crop.
    cfg.INPUT.REID.PADDING = 10

    # Random erasing (Zhong et al. 2017), applied to the image only (never to the parsing mask).
    cfg.INPUT.REID.REA = CN()
    # Whether random erasing is applied at training time (both papers: yes).
    cfg.INPUT.REID.REA.ENABLED = True
    # Probability to erase one rectangle per image (0.5, the usual value).
    cfg.INPUT.REID.REA.PROB = 0.5
    # Range of the erased area as a fraction of the image area (0.02, 0.4 in Zhong et al.).
    cfg.INPUT.REID.REA.AREA_RANGE = (0.02, 0.4)
    # Smallest aspect ratio (h / w) of the erased rectangle; the largest is its inverse (0.3).
    cfg.INPUT.REID.REA.MIN_ASPECT = 0.3
    # Fill of the erased rectangle: "image_mean" (per-channel mean of the image, SGSFA's text),
    # "pixel_mean" (MODEL.PIXEL_MEAN, fast-reid) or "random" (uniform noise, torchvision).
    cfg.INPUT.REID.REA.FILL = "image_mean"

    # Whether the mapper loads the per-image human-parsing map ("parsing_file" in the dataset
    # dict: a single-channel PNG of parser class indices, see datasets/README.md). SGSFA: True
    # (JPPNet masks); PAN: False.
    cfg.INPUT.REID.LOAD_PARSING = False
    # Whether test-time mapping loads the maps too (with LOAD_PARSING). They are training
    # targets: a model that predicts its own masks (SGSFA) sets False, so test sets need none.
    cfg.INPUT.REID.LOAD_PARSING_AT_TEST = True
    # Whether images without a parsing map are accepted (with LOAD_PARSING): their "parsing" and
    # "part_masks" are filled with -1 (unknown) and heads skip their mask losses. False: a
    # missing map is an error naming the image (checked when the train loader is built).
    cfg.INPUT.REID.ALLOW_MISSING_PARSING = False
    # Names of the part groups (order of the "part_masks" channels after the whole-body one);
    # same length as PARSING_GROUPS. Default: none (a project names its parts, e.g. SGSFA's
    # head / upper / lower / shoes).
    cfg.INPUT.REID.PARSING_PART_NAMES = ()
    # Parser class indices (0-255) of each part group, same order as PARSING_PART_NAMES; groups
    # are disjoint; the whole-body mask is their union. Default: none (no "part_masks", only
    # "parsing"); the grouping belongs to the label set and the method (SGSFA's config groups
    # the 20 LIP classes into four parts).
    cfg.INPUT.REID.PARSING_GROUPS = ()

    # Number of instances K per identity in a P x K training batch; P = SOLVER.IMS_PER_BATCH / K.
    # SGSFA: 64 = 16 ids x 4; PAN: 4 as well.
    cfg.DATALOADER.NUM_INSTANCES = 4

    cfg.TEST.REID = CN()
    # Images per test batch (all ranks together); only throughput, not results, depends on it.
    cfg.TEST.REID.IMS_PER_BATCH = 64
    # Distance on the features: "cosine" (1 - cosine similarity) or "euclidean" (L2, not squared).
    cfg.TEST.REID.METRIC = "cosine"
    # Which model outputs are matched: "global" ("features"), "parts" ("part_features" with
    # "part_visibility") or "global+parts" (sum of the two distances).
    cfg.TEST.REID.FEATURE = "global"
    # A part is visible when its visibility score is > this (SGSFA eq. 5, tau; the text gives no
    # value, we use 0.5).
    cfg.TEST.REID.PART_VISIBILITY_THRESHOLD = 0.5
    # Part distance: "mean" (sum over shared visible parts / their number; reid-protocol.md) or
    # "sum" (SGSFA eq. 7, unnormalised sum over shared visible parts).
    cfg.TEST.REID.PART_DISTANCE = "mean"
    # Largest rank of the CMC curve reported (Rank-1/5/10 need >= 10).
    cfg.TEST.REID.MAX_RANK = 10
    # k-reciprocal re-ranking (Zhong et al. CVPR 2017); neither paper re-ranks its main results.
    cfg.TEST.REID.RERANK = CN()
    # Whether re-ranking is applied to the distance matrix before evaluation.
    cfg.TEST.REID.RERANK.ENABLED = False
    # k1: size of the k-reciprocal neighbour sets (20 in Zhong et al.).
    cfg.TEST.REID.RERANK.K1 = 20
    # k2: neighbours averaged in the local query expansion (6 in Zhong et al.).
    cfg.TEST.REID.RERANK.K2 = 6
    # lambda: weight of the original distance in the final one (0.3 in Zhong et al.).
    cfg.TEST.REID.RERANK.LAMBDA = 0.3
