"""MGFA, multi-granularity feature alignment: a discriminator learns to tell the real features
of the RoIs from their virtual (occluded-copy) ones, while the feature extractor learns to fool
it, so that occluded persons get the features of unoccluded ones.

The adversarial game is played with a gradient-reversal layer (Ganin & Lempitsky, ICML 2015),
not with alternating updates (ours; see the README): one loss, one backward pass and one
optimizer step, as every other loss of the model. The discriminator descends its binary
cross-entropy; the features receive ``-lambda`` times that loss's gradient, i.e. they ascend
it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.utils.events import get_event_storage
from torch import nn

__all__ = ["MGFA", "FeatureDiscriminator", "GradientReversal", "grad_reverse"]


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient times ``-coeff`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """``x`` unchanged, its gradient multiplied by ``-coeff`` (:class:`GradientReversal`)."""
    return GradientReversal.apply(x, coeff)


class FeatureDiscriminator(nn.Sequential):
    """MLP (M, C) -> (M,) logits of "real" (Linear -> ReLU -> Linear)."""

    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(-1)


class MGFA(nn.Module):
    """Adversarial alignment loss of real and virtual features."""

    def __init__(self, in_dim: int, hidden_dim: int, grl_lambda: float = 1.0):
        """
        Args:
            in_dim: C, the features' size; hidden_dim: the discriminator's hidden width.
            grl_lambda: the gradient-reversal factor.
        """
        super().__init__()
        self.discriminator = FeatureDiscriminator(in_dim, hidden_dim)
        self.grl_lambda = grl_lambda

    def discriminator_loss(self, real: torch.Tensor, virtual: torch.Tensor) -> torch.Tensor:
        """The discriminator's binary cross-entropy (real = 1, virtual = 0), each side averaged
        on its own and the two averaged (the m copies give m times more virtual features),
        computed on the given tensors (no reversal). Also logs the discriminator's accuracy
        (``mgfa/accuracy``) when an event storage is open."""
        r = self.discriminator(real)
        v = self.discriminator(virtual.flatten(0, 1))
        loss = 0.5 * (
            F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
            + F.binary_cross_entropy_with_logits(v, torch.zeros_like(v))
        )
        try:
            storage = get_event_storage()
        except AssertionError:  # no storage outside training loops
            storage = None
        if storage is not None and r.numel() and v.numel():
            correct = (r > 0).float().mean() + (v <= 0).float().mean()
            storage.put_scalar("mgfa/accuracy", 0.5 * float(correct))
        return loss

    def forward(self, real: torch.Tensor, virtual: torch.Tensor) -> torch.Tensor:
        """
        Args:
            real: (M, C) real features; virtual: (M, m, C) virtual features.

        Returns:
            the discriminator loss (scalar); its gradient reaches ``real`` and ``virtual``
            reversed (times ``-grl_lambda``).
        """
        if real.numel() == 0:
            return real.sum() * 0.0 + sum(p.sum() * 0.0 for p in self.parameters())
        return self.discriminator_loss(
            grad_reverse(real, self.grl_lambda), grad_reverse(virtual, self.grl_lambda)
        )
