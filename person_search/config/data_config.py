"""Config keys of the data part of the library (owner: ``person_search.data``): mappers and
augmentations of scene images and person crops, and the training data stream.
See :func:`add_data_config`."""

from detectron2.config import CfgNode as CN

__all__ = ["add_data_config"]


def add_data_config(cfg: CN) -> None:
    """Add the data keys to ``cfg`` in place: ``DATASETS.PROTOCOL_CACHE`` /
    ``DROP_NEGATIVE_BOXES``, ``INPUT.PERSON_SEARCH_MAPPER``, ``INPUT.MGRO``, ``INPUT.REID``,
    ``DATALOADER.NUM_INSTANCES`` / ``SEED`` / ``START_ITER``.

    One comment per key: what it is, its unit, the paper's value.
    """
    _C = cfg

    # --------------------------------------------------------------------- dataset reading
    # Protocol cache and bad boxes (person_search.data.datasets.options; applied by the data
    # loader builders).
    _C.DATASETS.PROTOCOL_CACHE = CN()
    # Keep each parsed CUHK-SYSU protocol file (TestG<N>.mat, subsets) as an .npz entry keyed
    # by the file's path, size, mtime and content hash; False parses them in every process.
    _C.DATASETS.PROTOCOL_CACHE.ENABLED = True
    # Cache folder; "" = $PERSON_SEARCH_CACHE_DIR, else $XDG_CACHE_HOME/person_search
    # (~/.cache/person_search).
    _C.DATASETS.PROTOCOL_CACHE.DIR = ""
    # Annotation boxes with a negative width or height: False = an error naming the file, row
    # and values; True = dropped and counted in the load summary. (Zero-area boxes are always
    # dropped and counted, as the published loaders do.)
    _C.DATASETS.DROP_NEGATIVE_BOXES = False

    # ---------------------------------------------------------- person search (scene images)
    # Name in person_search.data.build.MAPPER_REGISTRY of the mapper turning person-search
    # dataset dicts into model inputs (train: resize + flip, keeps gt_pids; test: resize, and the
    # query box for query dicts). Sizes come from Detectron2's INPUT.MIN_SIZE_* / MAX_SIZE_*
    # (the papers: shorter side 900, longer side <= 1500). Masks: MODEL.MASK_ON and
    # INPUT.MASK_FORMAT (Detectron2's); persons without a mask get a "gt_has_mask" False flag.
    _C.INPUT.PERSON_SEARCH_MAPPER = "PersonSearchDatasetMapper"

    # MGRO (MGOFE's multi-granularity random occlusion): the training mapper adds
    # "occluded_images" (L, C, H, W), copies of the augmented image in which random grid cells
    # of every person box are covered (the compiled occlusion op; boxes unchanged). Seeded by
    # (SEED, iteration, image id): reproducible and resumable.
    _C.INPUT.MGRO = CN()
    # Whether the training mapper makes the occluded copies (MGOFE: True; baselines: False).
    _C.INPUT.MGRO.ENABLED = False
    # Granularity levels, one (rows, cols) grid per occluded copy; m = the number of levels
    # (MGOFE: m = 2 best of 1/2/3; our reading: level 1 halves (2, 1), level 2 quarters (2, 2)).
    _C.INPUT.MGRO.GRIDS = [[2, 1], [2, 2]]
    # Probability that one grid cell of a box is covered, in [0, 1] (not in the MGOFE text;
    # ours 0.5). A box is never fully covered.
    _C.INPUT.MGRO.CELL_PROB = 0.5
    # Fill of covered cells: "mean" (image's per-channel mean), "constant" (FILL_VALUE) or
    # "noise" (uniform 0..255). MGOFE's text lists mean, zeros and noise; ours: "mean".
    _C.INPUT.MGRO.FILL = "mean"
    # Value of FILL "constant", an integer 0..255 (0 = zeros).
    _C.INPUT.MGRO.FILL_VALUE = 0

    # ------------------------------------------------------------------ re-id (person crops)
    _C.INPUT.REID = CN()
    # Name of the re-id dataset mapper in REID_MAPPER_REGISTRY (person_search.data.reid_mapper),
    # used by the re-id train and test loaders; projects register their own.
    _C.INPUT.REID.MAPPER = "ReIDDatasetMapper"
    # Training input size (height, width) in pixels; PAN and SGSFA use 256x128.
    _C.INPUT.REID.SIZE_TRAIN = (256, 128)
    # Test input size (height, width) in pixels; 256x128 in both papers.
    _C.INPUT.REID.SIZE_TEST = (256, 128)
    # Probability of a horizontal flip at training time (0.5 in both papers).
    _C.INPUT.REID.FLIP_PROB = 0.5
    # Zero padding (pixels, each side) before the random crop back to SIZE_TRAIN; 10 (fast-reid,
    # bag-of-tricks); 0 disables pad + crop.
    _C.INPUT.REID.PADDING = 10
    # Random erasing (Zhong et al. 2017), applied to the image only (never to the parsing mask).
    _C.INPUT.REID.REA = CN()
    # Whether random erasing is applied at training time (both papers: yes).
    _C.INPUT.REID.REA.ENABLED = True
    # Probability to erase one rectangle per image (0.5, the usual value).
    _C.INPUT.REID.REA.PROB = 0.5
    # Range of the erased area as a fraction of the image area (0.02, 0.4 in Zhong et al.).
    _C.INPUT.REID.REA.AREA_RANGE = (0.02, 0.4)
    # Smallest aspect ratio (h / w) of the erased rectangle; the largest is its inverse (0.3).
    _C.INPUT.REID.REA.MIN_ASPECT = 0.3
    # Fill of the erased rectangle: "image_mean" (per-channel mean of the image, SGSFA's text),
    # "pixel_mean" (MODEL.PIXEL_MEAN, fast-reid) or "random" (uniform noise, torchvision).
    _C.INPUT.REID.REA.FILL = "image_mean"
    # Whether the mapper loads the per-image human-parsing map ("parsing_file" in the dataset
    # dict: a single-channel PNG of parser class indices, see datasets/README.md). SGSFA: True
    # (JPPNet masks); PAN: False.
    _C.INPUT.REID.LOAD_PARSING = False
    # Whether test-time mapping loads the maps too (with LOAD_PARSING). They are training
    # targets: a model that predicts its own masks (SGSFA) sets False, so test sets need none.
    _C.INPUT.REID.LOAD_PARSING_AT_TEST = True
    # Whether images without a parsing map are accepted (with LOAD_PARSING): their "parsing" and
    # "part_masks" are filled with -1 (unknown) and heads skip their mask losses. False: a
    # missing map is an error naming the image (checked when the train loader is built).
    _C.INPUT.REID.ALLOW_MISSING_PARSING = False
    # Names of the part groups (order of the "part_masks" channels after the whole-body one);
    # same length as PARSING_GROUPS. Default: none (a project names its parts, e.g. SGSFA's
    # head / upper / lower / shoes).
    _C.INPUT.REID.PARSING_PART_NAMES = ()
    # Parser class indices (0-255) of each part group, same order as PARSING_PART_NAMES; groups
    # are disjoint; the whole-body mask is their union. Default: none (no "part_masks", only
    # "parsing"); the grouping belongs to the label set and the method (SGSFA's config groups
    # the 20 LIP classes into four parts).
    _C.INPUT.REID.PARSING_GROUPS = ()

    # ------------------------------------------------------------------ training data stream
    # Number of instances K per identity in a P x K re-id training batch; P = SOLVER.IMS_PER_BATCH
    # / K. SGSFA: 64 = 16 ids x 4; PAN: 4 as well.
    _C.DATALOADER.NUM_INSTANCES = 4
    # Seed of the shuffled training index stream (person search: the TrainingSampler; re-id: the
    # P x K sampler); -1 = drawn: Detectron2's random seed shared by all processes (re-id: SEED
    # when >= 0). The Trainer fixes it before building the loader and saves it in checkpoints,
    # so that --resume continues the same stream. No paper value.
    _C.DATALOADER.SEED = -1
    # First iteration the training loader serves: the index stream skips what iterations
    # 0 .. START_ITER - 1 read. Set by the Trainer when it resumes a run; 0 otherwise.
    _C.DATALOADER.START_ITER = 0
