"""Config keys of the person-search baselines: timm backbones, pretrained weights, SeqNet, HOIM.

Keys added by :func:`add_baselines_config`:

- ``MODEL.TIMM``: the timm network (ConvNeXt or Res2Net) that the trunk
  (``build_convnext_trunk`` / ``build_res2net_trunk``) and the RoI head stage
  (``ConvNeXtHeadStage`` / ``Res2NetHeadStage``) are cut from.
- ``MODEL.BACKBONE.PRETRAINED_FILE`` / ``PRETRAINED_FORMAT``: ImageNet weights for trunk and
  head stage(s), read from a local file (never downloaded).
- ``MODEL.SEQNET``: the second RCNN head of SeqNet / SeqNeXt and its Norm-Aware Embedding.
- ``MODEL.HOIM``: the hierarchical OIM loss (background buffer, two-level loss).
"""

from detectron2.config import CfgNode as CN


def add_baselines_config(cfg: CN) -> None:
    """Add the baseline keys to ``cfg`` in place (keys already present are kept)."""
    _add_timm_config(cfg)
    _add_pretrained_config(cfg)
    _add_seqnet_config(cfg)
    _add_hoim_config(cfg)


def _add_timm_config(cfg: CN) -> None:
    if "TIMM" in cfg.MODEL:
        return
    cfg.MODEL.TIMM = CN()
    # timm architecture the trunk and the RoI head stage are cut from, built with
    # pretrained=False (no download). ConvNeXt: "convnext_tiny|small|base|large" (SeqNeXt:
    # "convnext_base"); Res2Net: "res2net50_26w_4s" (IIDFC).
    cfg.MODEL.TIMM.ARCH = "convnext_base"
    # Blocks per stage (4 ints) overriding the architecture's; [] = keep timm's (ConvNeXt-B:
    # [3, 3, 27, 3]; Res2Net-50: [3, 4, 6, 3]). Tiny values are for CPU tests only.
    cfg.MODEL.TIMM.DEPTHS = []
    # Channels per stage (4 ints) overriding the architecture's; [] = keep timm's. ConvNeXt:
    # output dims (ConvNeXt-B: [128, 256, 512, 1024]); Res2Net: bottleneck planes, the stage
    # outputs 4x as many (Res2Net-50: [64, 128, 256, 512]).
    cfg.MODEL.TIMM.WIDTHS = []
    # Stochastic depth rate of ConvNeXt blocks (timm drop_path_rate); 0 = off. Unused by Res2Net.
    cfg.MODEL.TIMM.DROP_PATH_RATE = 0.0
    # Res2Net BatchNorm handling: "FrozenBN" (statistics and affine frozen, Detectron2's
    # default for ImageNet-initialised ResNets) or "BN" (trainable; needed from scratch).
    # ConvNeXt's LayerNorms are always kept.
    cfg.MODEL.TIMM.NORM = "FrozenBN"


def _add_pretrained_config(cfg: CN) -> None:
    if "PRETRAINED_FILE" in cfg.MODEL.BACKBONE:
        return
    # Local file of ImageNet weights for the trunk and every RoI head stage of the model; ""
    # = none. Loaded strictly by the Trainer when a run starts from scratch (not on resume,
    # not by --eval-only), before MODEL.WEIGHTS (wrong file -> error naming it).
    cfg.MODEL.BACKBONE.PRETRAINED_FILE = ""
    # Layout of PRETRAINED_FILE: "torchvision_resnet" (torchvision ResNet-50 state dict),
    # "timm_convnext", "timm_res2net" (timm state dicts) or "converted" (written by
    # tools/convert_pretrained.py).
    cfg.MODEL.BACKBONE.PRETRAINED_FORMAT = "converted"


def _add_seqnet_config(cfg: CN) -> None:
    if "SEQNET" in cfg.MODEL:
        return
    cfg.MODEL.SEQNET = CN()
    # IoU thresholds / labels of the matcher of the SECOND RCNN head (refined boxes), Detectron2
    # Matcher semantics; SeqNet uses 0.5 for both heads ([0.5], [0, 1]).
    cfg.MODEL.SEQNET.IOU_THRESHOLDS = [0.5]
    cfg.MODEL.SEQNET.IOU_LABELS = [0, 1]
    # Boxes sampled per image for the second head (SeqNet: 128).
    cfg.MODEL.SEQNET.BATCH_SIZE_PER_IMAGE = 128
    # Target fraction of foreground boxes in the second head's sample (SeqNet: 0.5).
    cfg.MODEL.SEQNET.POSITIVE_FRACTION = 0.5
    # Batch-normalise the second head's box regression output (SeqNet "BN neck": True).
    cfg.MODEL.SEQNET.BN_NECK = True
    # Pooling of RoI feature maps into vectors: "max" (SeqNet) or "avg".
    cfg.MODEL.SEQNET.POOLING = "max"
    # Loss weights of the second head (SeqNet: box cls 1, box reg 1); the first head's are
    # Detectron2's (MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT: SeqNet 10 for proposal reg) and
    # the re-id loss's is MODEL.OIM.LOSS_WEIGHT.
    cfg.MODEL.SEQNET.LOSS_WEIGHT_BOX_CLS = 1.0
    cfg.MODEL.SEQNET.LOSS_WEIGHT_BOX_REG = 1.0
    # Test: score threshold on the FIRST head's person score for boxes sent to the second head
    # (SeqNet: 0.5), its NMS IoU (0.4) and the number of boxes kept (300).
    cfg.MODEL.SEQNET.FIRST_SCORE_THRESH_TEST = 0.5
    cfg.MODEL.SEQNET.FIRST_NMS_THRESH_TEST = 0.4
    cfg.MODEL.SEQNET.FIRST_DETECTIONS_PER_IMAGE = 300
    # Test: NMS IoU on the second head's refined boxes (SeqNet: 0.5, higher than the first
    # head's because refined boxes overlap more). The final boxes are then thresholded with
    # MODEL.ROI_HEADS.SCORE_THRESH_TEST and capped at TEST.DETECTIONS_PER_IMAGE (SeqNet: 300).
    cfg.MODEL.SEQNET.SECOND_NMS_THRESH_TEST = 0.5
    # Test: score of a final box. "first" = the first head's score of the box it was refined
    # from (SeqNet's "First Classification Score"), "second" = the NAE norm score.
    cfg.MODEL.SEQNET.FINAL_SCORE = "first"


def _add_hoim_config(cfg: CN) -> None:
    if "HOIM" in cfg.MODEL:
        return
    cfg.MODEL.HOIM = CN()
    # Slots of the background buffer (B of IIDFC eq. 9-10): features of background proposals,
    # replaced first-in-first-out. Not given by the IIDFC text; ours: 5000 (as the OIM queue).
    cfg.MODEL.HOIM.BG_BUFFER_SIZE = 5000
    # Background RoIs pushed into the buffer per training step, all images of the batch
    # together (the text is silent; ours: 64, the hardest = highest person probability p_f).
    cfg.MODEL.HOIM.BG_PER_UPDATE = 64
    # Weight of the first level (foreground vs background) in the HOIM loss (eq. 12: 1).
    cfg.MODEL.HOIM.LOSS_WEIGHT_CLS = 1.0
    # Weight multiplying lambda * L_OIM (eq. 12: 1; lambda = 2 * p_fg^2 per sample).
    cfg.MODEL.HOIM.LOSS_WEIGHT_REID = 1.0
