"""Config keys of the training engine (owner: ``person_search.engine``): the task, optimizers,
epoch schedules and the loading of weights files. See :func:`add_engine_config`."""

from detectron2.config import CfgNode as CN

__all__ = ["add_engine_config"]


def add_engine_config(cfg: CN) -> None:
    """Add the engine keys to ``cfg`` in place: ``TASK``, ``SOLVER.OPTIMIZER`` /
    ``ADAM_BETAS`` / ``SCHEDULE_UNIT``, ``MODEL.WEIGHTS_TRUSTED`` /
    ``WEIGHTS_MIN_MATCHED_FRACTION``."""
    _C = cfg
    # Which task a config trains, i.e. which trainer class tools/train_net.py builds
    # (person_search.engine.get_trainer_class): "person_search" (scene images,
    # PersonSearchTrainer) or "reid" (person crops, ReIDTrainer).
    _C.TASK = "person_search"

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

    # MODEL.WEIGHTS is loaded with torch.load(weights_only=True) (tensors, numbers, strings
    # only: nothing is unpickled into code). Set True only for a file you trust that needs full
    # unpickling (e.g. an old checkpoint holding Python objects): weights_only=False.
    _C.MODEL.WEIGHTS_TRUSTED = False
    # A weights file is rejected as "another model's" when fewer than this fraction of the
    # model's state-dict entries are found in it with the right shape (1.0 = all must match).
    # ImageNet backbone files match ~90% of an OIM model; a different architecture ~0%.
    _C.MODEL.WEIGHTS_MIN_MATCHED_FRACTION = 0.5
