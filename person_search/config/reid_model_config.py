"""Config keys of the re-id models (owner: ``person_search.modeling``, re-id); see
:func:`add_reid_model_config`.

The re-id baseline (``ReIDBaseline``) is the "strong baseline" of Luo et al., "Bag of Tricks
and A Strong Baseline for Deep Person Re-identification" (CVPRW 2019): a ResNet-50 with last
stride 1, a BNNeck head, label-smoothed cross-entropy and batch-hard triplet loss. The paper
values quoted below are that paper's unless another is named.

Keys read from Detectron2's own defaults: ``MODEL.META_ARCHITECTURE`` ("ReIDBaseline"),
``MODEL.BACKBONE.NAME`` ("build_reid_resnet_backbone" or "build_osnet_backbone"),
``MODEL.PIXEL_MEAN`` / ``MODEL.PIXEL_STD`` (ImageNet statistics in 0-255 units, in the
channel order of ``INPUT.FORMAT``), ``MODEL.WEIGHTS`` (a whole-model checkpoint).
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_reid_model_config"]


def add_reid_model_config(cfg: CN) -> None:
    """Add the re-id model keys (``MODEL.REID.*``) to ``cfg`` in place."""
    cfg.MODEL.REID = CN()
    # Local path of ImageNet weights for the backbone alone (a torchvision-style state dict
    # for ResNets, e.g. resnet50-0676ba61.pth; a state dict in this library's OSNet naming for
    # OSNet). "" = random init. Never downloaded. Paper: ImageNet-pretrained ResNet-50.
    cfg.MODEL.REID.BACKBONE_WEIGHTS = ""
    # Names of the backbone outputs to return (ResNet: res2..res5; OSNet: conv2..conv5).
    cfg.MODEL.REID.BACKBONE_OUT_FEATURES = ["res5"]
    # Per-image training targets of the mapped inputs forwarded (stacked) to the re-id head
    # when every input of a batch carries them; a project's mapper may add its own names.
    # Default: the parsing mask and its part groups (used by SGSFA; ignored by BNNeck / PAN).
    cfg.MODEL.REID.EXTRA_TARGETS = ["parsing", "part_masks"]

    cfg.MODEL.REID.RESNET = CN()
    # ResNet depth: 18 or 34 (BasicBlock), 50 or 101 or 152 (Bottleneck). Paper: 50.
    cfg.MODEL.REID.RESNET.DEPTH = 50
    # Stride of the first block of the last stage (res5): 1 gives a 16x8 map for a 256x128
    # input, 2 the usual 8x4. Paper ("last stride" trick): 1.
    cfg.MODEL.REID.RESNET.LAST_STRIDE = 1
    # Channels of the stem and of res2's bottleneck (64 = torchvision widths; smaller values
    # give thin networks for CPU tests; ImageNet weights need 64). Paper: 64.
    cfg.MODEL.REID.RESNET.STEM_WIDTH = 64
    # Normalisation in the backbone: "BN", "SyncBN", "FrozenBN" (Detectron2's get_norm).
    # Paper: BN (trained).
    cfg.MODEL.REID.RESNET.NORM = "BN"

    cfg.MODEL.REID.OSNET = CN()
    # OSNet width multiplier: 1.0 (osnet_x1_0, channels 64/256/384/512), 0.75, 0.5 or 0.25.
    # OSNet paper (Zhou et al., ICCV 2019) for re-id: 1.0.
    cfg.MODEL.REID.OSNET.WIDTH = 1.0
    # Normalisation in OSNet: "BN", "SyncBN", "FrozenBN". OSNet paper: BN.
    cfg.MODEL.REID.OSNET.NORM = "BN"

    cfg.MODEL.REID.HEAD = CN()
    # Name of the head in REID_HEAD_REGISTRY. Strong baseline: "BNNeckHead".
    cfg.MODEL.REID.HEAD.NAME = "BNNeckHead"
    # Backbone output the head reads (ResNet: "res5"; OSNet: "conv5").
    cfg.MODEL.REID.HEAD.IN_FEATURE = "res5"
    # Number of training identities of the classifier; 0 = the train dataset's metadata
    # ``num_person_ids``. Market-1501: 751, DukeMTMC-reID: 702, Occluded-Duke: 702.
    cfg.MODEL.REID.HEAD.NUM_CLASSES = 0
    # Global pooling of the feature map: "avg", "max" or "gem" (generalised mean).
    # Paper: "avg".
    cfg.MODEL.REID.HEAD.POOLING = "avg"
    # Initial exponent p of GeM pooling (p=1 average, p->inf max). Radenovic et al.: 3.0.
    cfg.MODEL.REID.HEAD.GEM_P = 3.0
    # Whether GeM's p is learnt. Radenovic et al.: True.
    cfg.MODEL.REID.HEAD.GEM_LEARN_P = True
    # Inference feature: "after" (after the BNNeck's BatchNorm) or "before" it.
    # Paper: "after" (with cosine distance).
    cfg.MODEL.REID.HEAD.NECK_FEAT = "after"

    cfg.MODEL.REID.LOSS = CN()
    # Weight of the identity (classification) cross-entropy loss. Paper: 1.0.
    cfg.MODEL.REID.LOSS.CE_WEIGHT = 1.0
    # Label-smoothing epsilon of the cross-entropy (0 = plain CE). Paper: 0.1.
    cfg.MODEL.REID.LOSS.CE_EPSILON = 0.1
    # Weight of the batch-hard triplet loss (0 = off). Paper: 1.0.
    cfg.MODEL.REID.LOSS.TRIPLET_WEIGHT = 1.0
    # Margin of the hinge triplet loss max(0, d_ap - d_an + margin). Paper: 0.3.
    cfg.MODEL.REID.LOSS.TRIPLET_MARGIN = 0.3
    # Soft-margin triplet log(1 + exp(d_ap - d_an)) instead of the hinge (margin ignored).
    # Paper: False (PAN uses the soft margin).
    cfg.MODEL.REID.LOSS.TRIPLET_SOFT_MARGIN = False
    # Distance of the triplet loss: "euclidean" or "cosine" (1 - cosine similarity).
    # Paper: "euclidean".
    cfg.MODEL.REID.LOSS.TRIPLET_DISTANCE = "euclidean"
