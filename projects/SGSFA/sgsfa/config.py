"""SGSFA's config keys (``MODEL.SGSFA.*``); the rest comes from the library's re-id keys.

The paper values are from Ren et al., "Semantic-Guided Shared Feature Alignment for Occluded
Person Re-IDentification" (ACML 2020); "our reading" marks a choice the text leaves open
(``projects/SGSFA/README.md`` lists them).
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_sgsfa_config"]


def add_sgsfa_config(cfg: CN) -> None:
    """Add the SGSFA keys to ``cfg`` in place (call before merging an SGSFA config file)."""
    cfg.MODEL.SGSFA = CN()
    # Whole-body attention after stage 1 (res2), supervised by the whole-body mask; False is
    # the paper's "w/o whole attention" ablation (Table 5). Paper: True.
    cfg.MODEL.SGSFA.WHOLE_ATTENTION = True
    # Channel reduction gamma of the whole-body attention's spatial and channel branches.
    # Paper: 8.
    cfg.MODEL.SGSFA.WHOLE_REDUCTION = 8
    # Channel reduction gamma_1 of the 1x1 conv shared by the part attentions. Paper: 2.
    cfg.MODEL.SGSFA.PART_REDUCTION = 2
    # Dimension D of every branch's embedding (SGA global and parts, SFA regions). Paper: 256.
    cfg.MODEL.SGSFA.EMBED_DIM = 256
    # Part (one of INPUT.REID.PARSING_PART_NAMES) whose learned mask gives the head top of the
    # SFA split. Paper: the head attention.
    cfg.MODEL.SGSFA.HEAD_PART = "head"
    # Whether the spatial feature alignment branch is used (region features, L_dcls, the three
    # blocks in matching); False is our "w/o SFA" ablation (lambda = 1 in the paper's Fig. 6).
    cfg.MODEL.SGSFA.SFA = True
    # Body proportions top / middle / bottom below the head top, fractions summing to 1.
    # Paper: 0.15, 0.23, 0.62.
    cfg.MODEL.SGSFA.SPLIT = (0.15, 0.23, 0.62)
    # Value (0-1) above which a learned mask cell is set: head-top scan, "not all 0" visibility
    # (eq. 2) and the visibility scores (eq. 4). Our reading: 0.5 (the text says "non-zero").
    cfg.MODEL.SGSFA.MASK_THRESHOLD = 0.5
    # lambda of eq. 11: lambda * (L_tri + L_se + SGA CE) + (1 - lambda) * L_dcls. Paper: 0.8.
    cfg.MODEL.SGSFA.LAMBDA = 0.8
    # Weight of L_se (eq. 9: BCE of the five attentions) inside the lambda group. Paper: 1.
    cfg.MODEL.SGSFA.SE_WEIGHT = 1.0
    # Weight of the SGA branches' label-smoothed CE (global + visible parts, the "classifiers
    # in SA branch" of Sec. 4.2) inside the lambda group; eq. 11 has no term for them. Our
    # reading: 1.
    cfg.MODEL.SGSFA.SGA_CLS_WEIGHT = 1.0
    # Regions drawn at random per image from eq. 3's f_choose for L_dcls; 0 = all of them.
    # The paper gives no count; ours: 0.
    cfg.MODEL.SGSFA.DCLS_SAMPLES = 0
