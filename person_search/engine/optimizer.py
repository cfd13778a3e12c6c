"""Optimizer construction for every model of the library (``SOLVER.OPTIMIZER``)."""

from __future__ import annotations

import torch
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

__all__ = ["OPTIMIZERS", "build_optimizer"]

# Supported values of SOLVER.OPTIMIZER.
OPTIMIZERS = ("SGD", "Adam", "AdamW")


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over ``model``'s trainable parameters.

    Parameter groups follow Detectron2: ``SOLVER.WEIGHT_DECAY`` for weights,
    ``SOLVER.WEIGHT_DECAY_NORM`` for normalisation layers, ``SOLVER.BIAS_LR_FACTOR`` and
    ``SOLVER.WEIGHT_DECAY_BIAS`` for biases; ``SOLVER.CLIP_GRADIENTS`` wraps the optimizer.
    """
    name = cfg.SOLVER.OPTIMIZER
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    if name == "SGD":
        optimizer_cls = torch.optim.SGD
        kwargs = {"momentum": cfg.SOLVER.MOMENTUM, "nesterov": cfg.SOLVER.NESTEROV}
    elif name in ("Adam", "AdamW"):
        optimizer_cls = torch.optim.Adam if name == "Adam" else torch.optim.AdamW
        betas = tuple(float(b) for b in cfg.SOLVER.ADAM_BETAS)
        if len(betas) != 2:
            raise ValueError(f"SOLVER.ADAM_BETAS must hold 2 values, got {cfg.SOLVER.ADAM_BETAS}")
        kwargs = {"betas": betas}
    else:
        raise ValueError(f"SOLVER.OPTIMIZER={name!r} is not one of {OPTIMIZERS}")
    return maybe_add_gradient_clipping(cfg, optimizer_cls)(params, lr=cfg.SOLVER.BASE_LR, **kwargs)
