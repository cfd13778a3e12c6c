"""Config keys of the person-search models (owner: ``person_search.modeling``, person search).

One flat :func:`add_person_search_model_config`, in the manner of Detectron2's ``defaults.py``:
every key with a comment giving what it is, its unit and the paper's value. The papers: OIM
(Xiao et al., CVPR 2017), SeqNet (Li & Miao, AAAI 2021) and SeqNeXt (Jaffe et al., 2023),
HOIM as described in IIDFC (Hou et al.), and the OIM baseline of the mask-guided paper.
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_person_search_model_config"]


def add_person_search_model_config(cfg: CN) -> None:
    """Add the person-search model keys to ``cfg`` in place: ``MODEL.PERSON_SEARCH``,
    ``MODEL.ROI_POOLER_IMPL``, ``MODEL.OIM``, ``MODEL.HOIM``, ``MODEL.SEQNET``, ``MODEL.TIMM``
    and ``MODEL.BACKBONE.PRETRAINED_FILE`` / ``PRETRAINED_FORMAT``."""
    _C = cfg

    # ---------------------------------------------------------------- RoI heads, embedding
    _C.MODEL.PERSON_SEARCH = CN()
    # Size D of the L2-normalised re-id embedding of every person box (OIM: 256).
    _C.MODEL.PERSON_SEARCH.EMBEDDING_DIM = 256
    # Whether the embedding projection ends with BatchNorm1d before L2 normalisation
    # (the mask-guided paper's OIM baseline: Linear then L2 normalisation, no BN; SeqNet and
    # IIDFC: Linear + BN).
    _C.MODEL.PERSON_SEARCH.EMBEDDING_NORM = True
    # Re-id loss of the RoI heads' embeddings, a name in
    # person_search.modeling.losses.REID_LOSS_REGISTRY: "OIMLoss" (OIM, SeqNet) or "HOIMLoss"
    # (IIDFC's HOIM baseline; HOIMROIHeads need it: its p_f is their person score).
    _C.MODEL.PERSON_SEARCH.REID_LOSS = "OIMLoss"
    # The "last backbone stage used as the RoI head" (Res5 on every RoI, as in Faster R-CNN
    # C4 / OIM).
    _C.MODEL.PERSON_SEARCH.HEAD_STAGE = CN()
    # Registered name in ROI_HEAD_STAGE_REGISTRY (person_search.modeling.backbone.head_stage):
    # "ResNetRes5Stage" (Detectron2 ResNet res5 built from MODEL.RESNETS, stride 2 on the RoI
    # features as Detectron2's Res5ROIHeads), "ConvNeXtHeadStage", "Res2NetHeadStage".
    _C.MODEL.PERSON_SEARCH.HEAD_STAGE.NAME = "ResNetRes5Stage"
    # RoI pooler implementation used by build_roi_pooler: "person_search" (the compiled
    # RoIAlign of person_search._C, CPU + CUDA) or "detectron2" (Detectron2's ROIPooler on
    # torchvision's RoIAlign). Same results either way; not a paper setting.
    _C.MODEL.ROI_POOLER_IMPL = "person_search"

    # --------------------------------------------------------------------------- OIM loss
    _C.MODEL.OIM = CN()
    # Rows of the lookup table (LUT) = number of labelled training identities.
    # 0 = read ``num_person_ids`` from the metadata of DATASETS.TRAIN[0] (CUHK-SYSU 5,532,
    # PRW 483). Never hard-code PRW as 482: two identities would mis-train.
    _C.MODEL.OIM.NUM_PERSON_IDS = 0
    # Length of the circular queue of unlabelled-person features (SeqNet's defaults: 5,000 for
    # CUHK-SYSU, 500 for PRW; the mask-guided text gives no value).
    _C.MODEL.OIM.QUEUE_SIZE = 5000
    # Momentum gamma of the LUT update v <- normalize(gamma * v + (1 - gamma) * x) (SeqNet: 0.5;
    # the mask-guided text, eq. 4, gives no value).
    _C.MODEL.OIM.MOMENTUM = 0.5
    # Inverse temperature 1/tau multiplying the cosine similarities before softmax (30, i.e.
    # tau = 1/30: IIDFC and SeqNet; the mask-guided text, eq. 3, gives no value).
    _C.MODEL.OIM.SCALAR = 30.0
    # Weight of the OIM loss in the total loss (OIM: 1.0).
    _C.MODEL.OIM.LOSS_WEIGHT = 1.0

    # -------------------------------------------------------------------------- HOIM loss
    _C.MODEL.HOIM = CN()
    # Slots of the background buffer (B of IIDFC eq. 9-10): features of background proposals,
    # replaced first-in-first-out. Not given by the IIDFC text; ours: 5000 (as the OIM queue).
    _C.MODEL.HOIM.BG_BUFFER_SIZE = 5000
    # Background RoIs pushed into the buffer per training step, all images of the batch
    # together (the text is silent; ours: 64, the hardest = highest person probability p_f).
    _C.MODEL.HOIM.BG_PER_UPDATE = 64
    # Weight of the first level (foreground vs background) in the HOIM loss (eq. 12: 1).
    _C.MODEL.HOIM.LOSS_WEIGHT_CLS = 1.0
    # Weight multiplying lambda * L_OIM (eq. 12: 1; lambda = 2 * p_fg^2 per sample).
    _C.MODEL.HOIM.LOSS_WEIGHT_REID = 1.0

    # ------------------------------------------------------------ SeqNet / SeqNeXt heads
    _C.MODEL.SEQNET = CN()
    # IoU thresholds / labels of the matcher of the SECOND RCNN head (refined boxes), Detectron2
    # Matcher semantics; SeqNet uses 0.5 for both heads ([0.5], [0, 1]).
    _C.MODEL.SEQNET.IOU_THRESHOLDS = [0.5]
    _C.MODEL.SEQNET.IOU_LABELS = [0, 1]
    # Boxes sampled per image for the second head (SeqNet: 128).
    _C.MODEL.SEQNET.BATCH_SIZE_PER_IMAGE = 128
    # Target fraction of foreground boxes in the second head's sample (SeqNet: 0.5).
    _C.MODEL.SEQNET.POSITIVE_FRACTION = 0.5
    # Batch-normalise the second head's box regression output (SeqNet "BN neck": True).
    _C.MODEL.SEQNET.BN_NECK = True
    # Pooling of RoI feature maps into vectors: "max" (SeqNet) or "avg".
    _C.MODEL.SEQNET.POOLING = "max"
    # Loss weights of the second head (SeqNet: box cls 1, box reg 1); the first head's are
    # Detectron2's (MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT: SeqNet 10 for proposal reg) and
    # the re-id loss's is MODEL.OIM.LOSS_WEIGHT.
    _C.MODEL.SEQNET.LOSS_WEIGHT_BOX_CLS = 1.0
    _C.MODEL.SEQNET.LOSS_WEIGHT_BOX_REG = 1.0
    # Test: score threshold on the FIRST head's person score for boxes sent to the second head
    # (SeqNet: 0.5), its NMS IoU (0.4) and the number of boxes kept (300).
    _C.MODEL.SEQNET.FIRST_SCORE_THRESH_TEST = 0.5
    _C.MODEL.SEQNET.FIRST_NMS_THRESH_TEST = 0.4
    _C.MODEL.SEQNET.FIRST_DETECTIONS_PER_IMAGE = 300
    # Test: NMS IoU on the second head's refined boxes (SeqNet: 0.5, higher than the first
    # head's because refined boxes overlap more). The final boxes are then thresholded with
    # MODEL.ROI_HEADS.SCORE_THRESH_TEST and capped at TEST.DETECTIONS_PER_IMAGE (SeqNet: 300).
    _C.MODEL.SEQNET.SECOND_NMS_THRESH_TEST = 0.5
    # Test: score of a final box. "first" = the first head's score of the box it was refined
    # from (SeqNet's "First Classification Score"), "second" = the NAE norm score.
    _C.MODEL.SEQNET.FINAL_SCORE = "first"

    # ------------------------------------------------------------ timm trunks, ImageNet
    _C.MODEL.TIMM = CN()
    # timm architecture the trunk and the RoI head stage are cut from, built with
    # pretrained=False (no download). ConvNeXt: "convnext_tiny|small|base|large" (SeqNeXt:
    # "convnext_base"); Res2Net: "res2net50_26w_4s" (IIDFC).
    _C.MODEL.TIMM.ARCH = "convnext_base"
    # Blocks per stage (4 ints) overriding the architecture's; [] = keep timm's (ConvNeXt-B:
    # [3, 3, 27, 3]; Res2Net-50: [3, 4, 6, 3]). Tiny values are for CPU tests only.
    _C.MODEL.TIMM.DEPTHS = []
    # Channels per stage (4 ints) overriding the architecture's; [] = keep timm's. ConvNeXt:
    # output dims (ConvNeXt-B: [128, 256, 512, 1024]); Res2Net: bottleneck planes, the stage
    # outputs 4x as many (Res2Net-50: [64, 128, 256, 512]).
    _C.MODEL.TIMM.WIDTHS = []
    # Stochastic depth rate of ConvNeXt blocks (timm drop_path_rate); 0 = off. Unused by Res2Net.
    _C.MODEL.TIMM.DROP_PATH_RATE = 0.0
    # Res2Net BatchNorm handling: "FrozenBN" (statistics and affine frozen, Detectron2's
    # default for ImageNet-initialised ResNets) or "BN" (trainable; needed from scratch).
    # ConvNeXt's LayerNorms are always kept.
    _C.MODEL.TIMM.NORM = "FrozenBN"
    # Local file of ImageNet weights for the trunk and every RoI head stage of the model; ""
    # = none. Loaded strictly by the Trainer when a run starts from scratch (not on resume,
    # not by --eval-only), before MODEL.WEIGHTS (wrong file -> error naming it).
    _C.MODEL.BACKBONE.PRETRAINED_FILE = ""
    # Layout of PRETRAINED_FILE: "torchvision_resnet" (torchvision ResNet-50 state dict),
    # "timm_convnext", "timm_res2net" (timm state dicts) or "converted" (written by
    # tools/convert_pretrained.py).
    _C.MODEL.BACKBONE.PRETRAINED_FORMAT = "converted"
