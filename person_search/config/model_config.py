"""Config keys of the person-search models (OIM baseline) and of the shared training engine.

See :func:`add_model_config`. Every key carries a comment: what it is, its unit, and the
value of the paper it comes from (OIM: Xiao et al., CVPR 2017, "Joint Detection and
Identification Feature Learning for Person Search"; the OIM baseline as described in the
mask-guided person search paper).
"""

from detectron2.config import CfgNode as CN


def add_model_config(cfg: CN) -> None:
    """Add the model keys (``MODEL.PERSON_SEARCH``, ``MODEL.OIM``, weight loading) and the
    training-engine keys (``SOLVER.*`` additions) to ``cfg`` in place."""
    _add_person_search_config(cfg)
    _add_oim_config(cfg)
    _add_weights_config(cfg)
    _add_solver_config(cfg)


def _add_person_search_config(cfg: CN) -> None:
    _C = cfg
    _C.MODEL.PERSON_SEARCH = CN()
    # Size D of the L2-normalised re-id embedding of every person box (OIM: 256).
    _C.MODEL.PERSON_SEARCH.EMBEDDING_DIM = 256
    # Whether the embedding projection ends with BatchNorm1d before L2 normalisation
    # (the mask-guided paper's OIM baseline: Linear then L2 normalisation, no BN; SeqNet and
    # IIDFC: Linear + BN).
    _C.MODEL.PERSON_SEARCH.EMBEDDING_NORM = True

    # The "last backbone stage used as the RoI head" (Res5 on every RoI, as in Faster R-CNN
    # C4 / OIM). NAME is looked up in ROI_HEAD_STAGE_REGISTRY
    # (person_search.modeling.backbone.head_stage).
    _C.MODEL.PERSON_SEARCH.HEAD_STAGE = CN()
    # Registered name of the RoI head stage ("ResNetRes5Stage": Detectron2 ResNet res5 built
    # from MODEL.RESNETS, stride 2 on the RoI features as Detectron2's Res5ROIHeads).
    _C.MODEL.PERSON_SEARCH.HEAD_STAGE.NAME = "ResNetRes5Stage"


def _add_oim_config(cfg: CN) -> None:
    _C = cfg
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


def _add_weights_config(cfg: CN) -> None:
    _C = cfg
    # MODEL.WEIGHTS is loaded with torch.load(weights_only=True) (tensors, numbers, strings
    # only: nothing is unpickled into code). Set True only for a file you trust that needs full
    # unpickling (e.g. an old checkpoint holding Python objects): weights_only=False.
    _C.MODEL.WEIGHTS_TRUSTED = False
    # A weights file is rejected as "another model's" when fewer than this fraction of the
    # model's state-dict entries are found in it with the right shape (1.0 = all must match).
    # ImageNet backbone files match ~90% of an OIM model; a different architecture ~0%.
    _C.MODEL.WEIGHTS_MIN_MATCHED_FRACTION = 0.5


def _add_solver_config(cfg: CN) -> None:
    _C = cfg
    # Optimizer: "SGD" (momentum SOLVER.MOMENTUM, SOLVER.NESTEROV), "Adam" or "AdamW"
    # (betas SOLVER.ADAM_BETAS). OIM / mask-guided paper: SGD; SeqNeXt: Adam.
    _C.SOLVER.OPTIMIZER = "SGD"
    # (beta1, beta2) of Adam / AdamW (PyTorch defaults).
    _C.SOLVER.ADAM_BETAS = (0.9, 0.999)
    # Unit of SOLVER.MAX_ITER, SOLVER.STEPS, SOLVER.CHECKPOINT_PERIOD and TEST.EVAL_PERIOD:
    # "iter" (Detectron2's) or "epoch" (as papers state schedules; converted to iterations at
    # set-up with ceil(#training images / SOLVER.IMS_PER_BATCH) iterations per epoch).
    # SOLVER.WARMUP_ITERS stays in iterations.
    _C.SOLVER.SCHEDULE_UNIT = "iter"
