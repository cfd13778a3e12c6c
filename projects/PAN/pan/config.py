"""PAN's config keys (``MODEL.PAN.*``): see :func:`add_pan_config`.

Paper: Ye, Zeng, Zhang, Chen, "Part-aware network: A simple but efficient method for occluded
person re-identification" (text in ``/work/shared/papers``; numbers and readings in
``projects/PAN/README.md``). Keys the PAN head shares with the library's re-id baseline keep
their library names: ``MODEL.REID.HEAD.IN_FEATURE`` (F3, the global branch's map),
``MODEL.REID.HEAD.POOLING`` (paper: "max", GMP), ``MODEL.REID.HEAD.NECK_FEAT``,
``MODEL.REID.LOSS.*`` (CE weight and label smoothing, soft-margin batch-hard triplet).
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_pan_config"]


def add_pan_config(cfg: CN) -> None:
    """Add PAN's keys to ``cfg`` in place (one comment per key: what, unit, paper value)."""
    cfg.MODEL.PAN = CN()
    # p: number of masks of the mask generator (one local feature each). Paper: 14 on
    # Occluded-Duke, 16 on Market-1501 (Fig. 3); {4, 8, 12, 14, 16, 20} ablated.
    cfg.MODEL.PAN.NUM_MASKS = 14
    # Softmax over the p masks at each position (the usual probability masks). Paper: off
    # (its contribution); on is the Table 4 ablation.
    cfg.MODEL.PAN.MASK_SOFTMAX = False
    # F1, the map the masks are generated from: a backbone output ("res4", "res5"; OSNet
    # "conv4", "conv5", each in MODEL.REID.BACKBONE_OUT_FEATURES) or a buffer layer
    # "<stage>_buffer" (a copy of that stage, see LOCAL_SOURCE). Paper: "res5" (Conv50).
    cfg.MODEL.PAN.MASK_SOURCE = "res5"
    # F2, the map the local features are pooled from; "<stage>_buffer" is the buffer layer: a
    # deep copy of the backbone stage, with its ImageNet weights, trained apart, run on the
    # output of the stage before it (which must be in MODEL.REID.BACKBONE_OUT_FEATURES).
    # Paper: "res5_buffer" (Conv51).
    cfg.MODEL.PAN.LOCAL_SOURCE = "res5_buffer"
    # N_g: output size of the FC after global max pooling of F3. Paper: 512 (gamma = 7 with
    # p = 14, n_l = 256).
    cfg.MODEL.PAN.GLOBAL_DIM = 512
    # n_l: output size of the local FC, per part. Paper: 256 (32..1024 ablated, Fig. 2).
    cfg.MODEL.PAN.LOCAL_DIM = 256
    # One FC shared by all p parts (True) or one per part (False). Paper: True (Table 2).
    cfg.MODEL.PAN.SHARED_LOCAL_FC = True
    # Smallest denominator sum(|m_i|) of the weighted pooling (a mask of zeros pools to 0).
    # Paper: not given (its formula has no guard).
    cfg.MODEL.PAN.POOLING_EPS = 1e-6
