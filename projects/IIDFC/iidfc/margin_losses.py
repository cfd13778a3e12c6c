"""Angular margins on the identity logits of OIM / HOIM: IIDFC's Feature Compactness (FC)
loss and the SphereFace / ArcFace alternatives of its Table VII.

OIM classifies an L2-normalised RoI feature x over the rows ``w_j`` of its memory (LUT of
labelled identities, queue of unlabelled persons) with logits ``s_j = cos(theta_j) / tau``
(``MODEL.OIM.SCALAR`` = 1/tau = 30). The FC loss (IIDFC eq. 13) replaces the target's logit by

    psi(theta_y) / tau,   psi(theta) = cos(m1 * theta + m2)   (m1 = 0.9, m2 = 0.1)

and keeps every other logit; the other margins are the same form (IIDFC Table I): SphereFace
``cos(m * theta)`` (m1 = m, m2 = 0), ArcFace ``cos(theta + m)`` (m1 = 1, m2 = m). With m1 = 1,
m2 = 0 the loss is the plain OIM / HOIM loss.

Choices the text leaves open (ours):

- Past pi, ``cos(m1 * theta + m2)`` would rise again; psi continues monotonically as
  SphereFace's ``(-1)^k cos(phi) - 2k`` with ``phi = m1 * theta + m2``, ``k = floor(phi / pi)``,
  for all three margins (at the paper's FC values phi < pi always: psi is the cosine).
- SphereFace's softened target ``(lambda cos(theta) + psi(theta)) / (1 + lambda)`` with a fixed
  lambda (``MODEL.IIDFC.SPHEREFACE.LAMBDA``; SphereFace anneals it); FC and ArcFace: lambda = 0.
- The margin only enters the identity cross-entropy (:meth:`~person_search.modeling.losses.
  oim.OIMLoss.identity_logits`): HOIM's first level, its weight lambda = 2 p_f^2 (eq. 14 writes
  a normaliser over the person slots only, which would make it the constant 2: we read it as
  HOIM's p_f, eq. 12) and the detection scores read the plain cosines.
- theta = arccos of the cosine clamped to [-1 + 1e-7, 1 - 1e-7] (finite gradient), computed in
  float64; LUT rows of identities not seen yet are zero, their cosine 0 (theta = pi/2).
- The LUT, queue and background buffer are updated as OIM / HOIM's, with the plain features.
"""

from __future__ import annotations

import math

import torch
from detectron2.config import configurable

from person_search.modeling.losses import REID_LOSS_REGISTRY, HOIMLoss, OIMLoss

__all__ = ["ArcFaceLoss", "FCLoss", "OIMFCLoss", "SphereFaceLoss", "angular_margin_target"]

# Clamp of the cosine before arccos: keeps d(arccos)/dcos finite at a perfect match.
_COS_EPS = 1e-7


def angular_margin_target(
    cos: torch.Tensor, m1: float, m2: float, softening: float = 0.0
) -> torch.Tensor:
    """The target's cosine under an angular margin, elementwise.

    Args:
        cos: (N,) cosines of the targets' angles theta.
        m1, m2: ``phi = m1 * theta + m2``.
        softening: lambda of ``(lambda cos + psi) / (1 + lambda)`` (SphereFace), >= 0.

    Returns:
        (N,) ``psi(theta) = (-1)^k cos(phi) - 2k``, ``k = floor(phi / pi)``, softened; in the
        dtype of ``cos`` (computed in float64).
    """
    c = cos.double()
    theta = torch.acos(c.clamp(-1.0 + _COS_EPS, 1.0 - _COS_EPS))
    phi = m1 * theta + m2
    k = torch.floor(phi / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    psi = sign * torch.cos(phi) - 2.0 * k
    return ((softening * c + psi) / (1.0 + softening)).to(cos.dtype)


class AngularMarginMixin:
    """Puts :func:`angular_margin_target` on the target logits of an OIM-family loss (placed
    before ``OIMLoss`` / ``HOIMLoss`` in the bases); keys named in errors: ``MARGIN_KEYS``."""

    # Config key of each margin argument, for error messages (argument name when absent).
    MARGIN_KEYS: dict[str, str] = {}

    @configurable
    def __init__(self, *, m1: float, m2: float, softening: float = 0.0, **kwargs):
        """
        Args:
            m1: factor of the target angle, > 0.
            m2: additive angle (radians), in [0, pi).
            softening: SphereFace's lambda, >= 0.
            kwargs: the arguments of the loss it is mixed into (``OIMLoss`` / ``HOIMLoss``).
        """
        super().__init__(**kwargs)
        for name, value, ok, rule in (
            ("m1", m1, m1 > 0, "> 0"),
            ("m2", m2, 0 <= m2 < math.pi, "in [0, pi)"),
            ("softening", softening, softening >= 0, ">= 0"),
        ):
            if not (ok and math.isfinite(value)):
                key = self.MARGIN_KEYS.get(name, name)
                raise ValueError(f"{type(self).__name__}: {key} must be {rule}, got {value}")
        self.m1 = float(m1)
        self.m2 = float(m2)
        self.softening = float(softening)

    def identity_logits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(N, K) float32 logits with each labelled row's target logit ``s * cos(theta_y)``
        replaced by ``s * psi(theta_y)`` (a new tensor); rows with ``targets < 0`` unchanged."""
        rows = (targets >= 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            return logits
        cols = targets[rows]
        cos = logits[rows, cols].double() / self.scalar
        target = self.scalar * angular_margin_target(cos, self.m1, self.m2, self.softening)
        return logits.index_put((rows, cols), target.to(logits.dtype))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m1={self.m1}, m2={self.m2}, softening={self.softening}"


@REID_LOSS_REGISTRY.register()
class FCLoss(AngularMarginMixin, HOIMLoss):
    """IIDFC's HOIM-FC loss (eq. 14): HOIM's two levels, the FC margin on the second.

    ``forward(embeddings (R, D), pids (R,)) -> {"loss_hoim_cls", "loss_hoim_reid"}`` as
    :class:`~person_search.modeling.losses.HOIMLoss` (``person_scores`` too)."""

    MARGIN_KEYS = {"m1": "MODEL.IIDFC.FC_LOSS.M1", "m2": "MODEL.IIDFC.FC_LOSS.M2"}

    @classmethod
    def from_config(cls, cfg, num_person_ids: int):
        ret = HOIMLoss.from_config(cfg, num_person_ids)
        ret.update(m1=cfg.MODEL.IIDFC.FC_LOSS.M1, m2=cfg.MODEL.IIDFC.FC_LOSS.M2)
        return ret


@REID_LOSS_REGISTRY.register()
class OIMFCLoss(AngularMarginMixin, OIMLoss):
    """The FC margin on plain OIM (Table IV's "OIM(ours)+PAM+FC"):
    ``forward -> {"loss_oim"}`` as :class:`~person_search.modeling.losses.OIMLoss`."""

    MARGIN_KEYS = FCLoss.MARGIN_KEYS

    @classmethod
    def from_config(cls, cfg, num_person_ids: int):
        ret = OIMLoss.from_config(cfg, num_person_ids)
        ret.update(m1=cfg.MODEL.IIDFC.FC_LOSS.M1, m2=cfg.MODEL.IIDFC.FC_LOSS.M2)
        return ret


@REID_LOSS_REGISTRY.register()
class SphereFaceLoss(AngularMarginMixin, HOIMLoss):
    """HOIM with SphereFace's margin on the second level (Table VII): psi = cos(m theta),
    softened by lambda."""

    MARGIN_KEYS = {"m1": "MODEL.IIDFC.SPHEREFACE.M", "softening": "MODEL.IIDFC.SPHEREFACE.LAMBDA"}

    @classmethod
    def from_config(cls, cfg, num_person_ids: int):
        sphere = cfg.MODEL.IIDFC.SPHEREFACE
        if sphere.M < 1:
            raise ValueError(f"MODEL.IIDFC.SPHEREFACE.M must be >= 1, got {sphere.M}")
        ret = HOIMLoss.from_config(cfg, num_person_ids)
        ret.update(m1=sphere.M, m2=0.0, softening=sphere.LAMBDA)
        return ret


@REID_LOSS_REGISTRY.register()
class ArcFaceLoss(AngularMarginMixin, HOIMLoss):
    """HOIM with ArcFace's margin on the second level (Table VII): psi = cos(theta + m)."""

    MARGIN_KEYS = {"m2": "MODEL.IIDFC.ARCFACE.M"}

    @classmethod
    def from_config(cls, cfg, num_person_ids: int):
        ret = HOIMLoss.from_config(cfg, num_person_ids)
        ret.update(m1=1.0, m2=cfg.MODEL.IIDFC.ARCFACE.M)
        return ret
