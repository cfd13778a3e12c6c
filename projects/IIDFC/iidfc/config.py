"""IIDFC's config keys (``MODEL.IIDFC.*``): see :func:`add_iidfc_config`.

Paper: Hou, Zhao, Chen, Wu, Wei, Miao, "Improved Instance Discrimination and Feature Compactness
for End-to-End Person Search" (text in the team's ``shared/papers``; numbers and readings in
``projects/IIDFC/README.md``). Keys IIDFC shares with the library's HOIM baseline keep their
library names: ``MODEL.OIM.SCALAR`` (1/tau = 30), ``MODEL.OIM.MOMENTUM``, ``MODEL.HOIM.*``
(background buffer, the two levels' weights), ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT``
(lambda3, multiplying the whole IRR loss), ``MODEL.RPN.BBOX_REG_LOSS_WEIGHT`` (lambda2), the
anchors and the Res2Net trunk (``MODEL.TIMM``).
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_iidfc_config"]


def add_iidfc_config(cfg: CN) -> None:
    """Add IIDFC's keys to ``cfg`` in place (one comment per key: what, unit, paper value)."""
    cfg.MODEL.IIDFC = CN()

    # ------------------------------------------------- attention on the layer-4 RoI maps
    cfg.MODEL.IIDFC.ATTENTION = CN()
    # Attention applied to the RoI maps of the head stage (Res2Net layer4) before pooling, a
    # name of iidfc.ROI_ATTENTION_REGISTRY: "PAM" (paper), "SA" (CBAM's spatial attention),
    # "CBAM", "NonLocal" (Table VII alternatives) or "none" (Table V before "+PAM").
    cfg.MODEL.IIDFC.ATTENTION.NAME = "PAM"
    cfg.MODEL.IIDFC.PAM = CN()
    # Dilations of the three 3x3 convolutions sharing one weight (paper: 1, 2, 3).
    cfg.MODEL.IIDFC.PAM.DILATIONS = [1, 2, 3]
    # Output channels of the shared 3x3 convolution, per dilation (the text gives none; ours: 1,
    # one map per receptive field, so that SE weighs the dilations).
    cfg.MODEL.IIDFC.PAM.BRANCH_CHANNELS = 1
    # Reduction of the SE over the concatenated branches: hidden size = channels / REDUCTION,
    # at least 1 (the text gives none; ours: 1, as there are only 3 channels).
    cfg.MODEL.IIDFC.PAM.SE_REDUCTION = 1
    cfg.MODEL.IIDFC.SA = CN()
    # Kernel size of the spatial attention's convolution (CBAM, Woo et al.: 7).
    cfg.MODEL.IIDFC.SA.KERNEL_SIZE = 7
    cfg.MODEL.IIDFC.CBAM = CN()
    # Reduction ratio of CBAM's channel-attention MLP (CBAM: 16).
    cfg.MODEL.IIDFC.CBAM.REDUCTION = 16
    # Kernel size of CBAM's spatial attention (CBAM: 7).
    cfg.MODEL.IIDFC.CBAM.KERNEL_SIZE = 7
    cfg.MODEL.IIDFC.NON_LOCAL = CN()
    # Channel reduction of the embedded-Gaussian non-local block's theta / phi / g (Wang et
    # al.: 2, half the channels).
    cfg.MODEL.IIDFC.NON_LOCAL.REDUCTION = 2

    # ----------------------------------------------- IRR: R-CNN box regression (eq. 1)
    cfg.MODEL.IIDFC.IRR = CN()
    # gamma: weight of Smooth-L1 on the box deltas in L_irr_reg (paper: 0.3). Smooth-L1's beta
    # is MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA.
    cfg.MODEL.IIDFC.IRR.SMOOTH_L1_WEIGHT = 0.3
    # beta: weight of CIoU (Zheng et al., eq. 2-4) on the decoded boxes (paper: 0.7).
    cfg.MODEL.IIDFC.IRR.CIOU_WEIGHT = 0.7

    # ------------------------------------------ margins on the identity logits (eq. 13)
    cfg.MODEL.IIDFC.FC_LOSS = CN()
    # m1: multiplicative factor of the target angle, cos(m1 * theta + m2); > 0 (paper: 0.9).
    cfg.MODEL.IIDFC.FC_LOSS.M1 = 0.9
    # m2: additive angular margin in radians, in [0, pi) (paper: 0.1).
    cfg.MODEL.IIDFC.FC_LOSS.M2 = 0.1
    cfg.MODEL.IIDFC.SPHEREFACE = CN()
    # m of SphereFace's cos(m * theta), monotonic beyond pi as in SphereFace; >= 1 (Table VII
    # gives none; ours: SphereFace's 4).
    cfg.MODEL.IIDFC.SPHEREFACE.M = 4.0
    # lambda of SphereFace's softened target (lambda * cos(theta) + psi(theta)) / (1 + lambda),
    # fixed (SphereFace anneals it down to 5; ours: its final value 5, no annealing).
    cfg.MODEL.IIDFC.SPHEREFACE.LAMBDA = 5.0
    cfg.MODEL.IIDFC.ARCFACE = CN()
    # m of ArcFace's cos(theta + m), radians in [0, pi) (Table VII gives none; ours: ArcFace's
    # 0.5).
    cfg.MODEL.IIDFC.ARCFACE.M = 0.5
