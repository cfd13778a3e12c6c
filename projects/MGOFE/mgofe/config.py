"""MGOFE's config keys (``MODEL.MGOFE.*``): see :func:`add_mgofe_config`; and the checks that
tie them to the library's keys (:func:`check_mgofe_config`).

Paper: "Multi-granularity occlusion feature enhancement" for person search (text, garbled, in
``/work/shared/papers``; numbers and our readings in ``projects/MGOFE/README.md``). MGRO, the
occluded copies, is the library's ``INPUT.MGRO`` (grids = the m granularity levels, cell
probability, fill); the RoIAlign size is ``MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION``.
"""

from detectron2.config import CfgNode as CN

from person_search.data.occlusion import MGRO

__all__ = ["META_ARCHITECTURE", "ROI_HEADS", "add_mgofe_config", "check_mgofe_config"]

META_ARCHITECTURE = "MGOFERCNN"  # MODEL.META_ARCHITECTURE of every MGOFE config
ROI_HEADS = "MGOFEROIHeads"  # MODEL.ROI_HEADS.NAME of every MGOFE config


def add_mgofe_config(cfg: CN) -> None:
    """Add MGOFE's keys to ``cfg`` in place (one comment per key: what, unit, paper value)."""
    cfg.MODEL.MGOFE = CN()
    cfg.MODEL.MGOFE.MGFFE = CN()
    # MGFFE: fuse each RoI's real feature p (the second head's pooled [res4, res5] vectors)
    # with its virtual features g_1..g_m from the occluded copies: p' = p + sum_j
    # softmax_j(q k_j / sqrt(d)) v_j. Paper: on ("w/o MGFFE" is the Table 2 ablation).
    cfg.MODEL.MGOFE.MGFFE.ENABLED = True
    # d: size of the query / key projections (0 = the feature's own size). Not in the text
    # (ours: 256, the embedding size).
    cfg.MODEL.MGOFE.MGFFE.DIM = 256
    cfg.MODEL.MGOFE.MGFA = CN()
    # MGFA: a discriminator (MLP) tells real from virtual features, the feature extractor
    # learns to fool it through a gradient-reversal layer. Paper: on ("w/o MGFA" in Table 2).
    cfg.MODEL.MGOFE.MGFA.ENABLED = True
    # Hidden width of the discriminator (Linear -> ReLU -> Linear -> 1 logit). Not in the
    # text (ours: 1024; the paper's +1.1 M parameters for MGFA fit one such hidden layer).
    cfg.MODEL.MGOFE.MGFA.HIDDEN_DIM = 1024
    # Weight of the discriminator's loss (binary cross-entropy, real vs occluded) in the
    # total loss. Not in the text (ours: 0.1).
    cfg.MODEL.MGOFE.MGFA.LOSS_WEIGHT = 0.1
    # Gradient-reversal factor lambda: the features receive -lambda x the discriminator
    # loss's gradient. Not in the text (ours: 1.0, constant).
    cfg.MODEL.MGOFE.MGFA.GRL_LAMBDA = 1.0
    cfg.MODEL.MGOFE.COPY_DETECTION_LOSS = CN()
    # Train the detector on the occluded copies too: the RPN and first RCNN head losses of
    # each copy (same ground truth), averaged over the copies, as loss_*_occluded. Not in the
    # text (ours: off; on in the "+MGRO only" ablation, where the copies train nothing else).
    cfg.MODEL.MGOFE.COPY_DETECTION_LOSS.ENABLED = False
    # Weight of those copy losses.
    cfg.MODEL.MGOFE.COPY_DETECTION_LOSS.WEIGHT = 1.0
    # Inference: make occluded copies at test time too (True: the first head's detections,
    # or the query box, occluded with INPUT.MGRO's grids; the backbone runs 1 + m times) or
    # fuse each RoI with itself as its only virtual feature (False: p' = p + p W_v, one
    # backbone pass, SeqNeXt's cost). Not in the text (ours: False, see the README).
    cfg.MODEL.MGOFE.TEST_COPIES = False
    # Base seed of the test-time copies (with the image id): evaluations are reproducible.
    cfg.MODEL.MGOFE.TEST_COPY_SEED = 0


def check_mgofe_config(cfg: CN) -> MGRO:
    """Check MGOFE's keys against the library's; returns the MGRO settings (with
    ``TEST_COPY_SEED``: what the test-time copies use).

    Raises:
        ValueError: naming the key (and value): m = 0 grids or a bad grid
            (``INPUT.MGRO.GRIDS``), an unknown fill (``INPUT.MGRO.FILL``), MGFFE / MGFA / copy
            losses without MGRO (``INPUT.MGRO.ENABLED``), MGRO with nothing using its copies,
            another meta architecture or RoI heads, a bad weight or size.
    """
    m = cfg.MODEL.MGOFE
    mgro = MGRO.from_config(cfg, base_seed=m.TEST_COPY_SEED)  # INPUT.MGRO.GRIDS / FILL / ...
    if cfg.MODEL.META_ARCHITECTURE != META_ARCHITECTURE:
        raise ValueError(
            f"MODEL.META_ARCHITECTURE={cfg.MODEL.META_ARCHITECTURE!r}: MGOFE needs "
            f"{META_ARCHITECTURE!r} (it runs the occluded copies through the backbone)"
        )
    if cfg.MODEL.ROI_HEADS.NAME != ROI_HEADS:
        raise ValueError(
            f"MODEL.ROI_HEADS.NAME={cfg.MODEL.ROI_HEADS.NAME!r}: MGOFE needs {ROI_HEADS!r}"
        )
    users = {
        "MODEL.MGOFE.MGFFE.ENABLED": m.MGFFE.ENABLED,
        "MODEL.MGOFE.MGFA.ENABLED": m.MGFA.ENABLED,
        "MODEL.MGOFE.COPY_DETECTION_LOSS.ENABLED": m.COPY_DETECTION_LOSS.ENABLED,
    }
    if not cfg.INPUT.MGRO.ENABLED:
        on = [k for k, v in users.items() if v]
        if on:
            raise ValueError(
                f"{on[0]} is True but INPUT.MGRO.ENABLED is False: MGOFE's parts read the "
                "occluded copies MGRO makes (set INPUT.MGRO.ENABLED True)"
            )
    elif not any(users.values()):
        raise ValueError(
            f"INPUT.MGRO.ENABLED is True but nothing uses the copies: enable one of {list(users)}"
        )
    if m.TEST_COPIES and not m.MGFFE.ENABLED:
        raise ValueError(
            "MODEL.MGOFE.TEST_COPIES is True but MODEL.MGOFE.MGFFE.ENABLED is False: the "
            "test-time copies only feed MGFFE"
        )
    if m.MGFFE.DIM < 0:
        raise ValueError(f"MODEL.MGOFE.MGFFE.DIM must be >= 0, got {m.MGFFE.DIM}")
    if m.MGFA.HIDDEN_DIM < 1:
        raise ValueError(f"MODEL.MGOFE.MGFA.HIDDEN_DIM must be >= 1, got {m.MGFA.HIDDEN_DIM}")
    for key, value in (
        ("MODEL.MGOFE.MGFA.LOSS_WEIGHT", m.MGFA.LOSS_WEIGHT),
        ("MODEL.MGOFE.MGFA.GRL_LAMBDA", m.MGFA.GRL_LAMBDA),
        ("MODEL.MGOFE.COPY_DETECTION_LOSS.WEIGHT", m.COPY_DETECTION_LOSS.WEIGHT),
    ):
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}")
    if m.TEST_COPY_SEED < 0:
        raise ValueError(f"MODEL.MGOFE.TEST_COPY_SEED must be >= 0, got {m.TEST_COPY_SEED}")
    return mgro
