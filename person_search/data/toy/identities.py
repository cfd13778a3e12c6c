"""Synthetic person identities for the toy datasets, and their renderer.

A :class:`ToyIdentity` fixes a person's appearance (skin, hair, clothing colours and pattern,
body proportions, an optional accessory); :func:`render_person` draws it into an RGB patch plus a
human-parsing mask whose class indices are positions in :data:`PARSING_CLASSES`. The same
identity rendered twice differs only by a small pose/shape jitter and the lighting, so re-id and
person-search models can learn identities from colour and layout cues, as on real data.

Everything is vectorised numpy; the output is deterministic given the identity, the size and the
state of the ``rng`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PARSING_CLASSES", "ToyIdentity", "make_identities", "render_person"]

# Human-parsing classes of the rendered masks; the class index is the position in this tuple.
PARSING_CLASSES: tuple[str, ...] = (
    "background",
    "head",
    "upper_body",
    "lower_body",
    "shoes",
    "accessory",
)
_HEAD, _UPPER, _LOWER, _SHOES, _ACCESSORY = 1, 2, 3, 4, 5

PATTERNS: tuple[str, ...] = ("solid", "stripes", "checks")
ACCESSORIES: tuple[str, ...] = ("none", "bag", "hat")

# Saturated, well separated clothing colours (RGB); identities differ by their combination.
_UPPER_PALETTE = (
    (200, 30, 30),
    (30, 150, 40),
    (40, 60, 200),
    (230, 200, 30),
    (240, 240, 240),
    (25, 25, 25),
    (150, 40, 170),
    (240, 130, 20),
    (30, 190, 200),
    (120, 70, 30),
    (240, 150, 190),
    (120, 120, 120),
)
_LOWER_PALETTE = (
    (20, 30, 90),
    (30, 30, 30),
    (110, 110, 115),
    (190, 170, 120),
    (90, 60, 30),
    (170, 30, 40),
    (40, 100, 50),
    (225, 225, 225),
)
_SKIN_TONES = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36))
_HAIR_COLOURS = ((20, 15, 10), (90, 55, 25), (200, 160, 80), (150, 150, 150), (140, 40, 20))
# Colour jitter (RGB levels) applied once per identity so palette entries are not exact clones.
_IDENTITY_COLOUR_JITTER = 12
# Pixel noise (RGB levels, std) added at render time: cloth texture / sensor noise.
_RENDER_NOISE_STD = 5.0


@dataclass(frozen=True)
class ToyIdentity:
    """Appearance of one synthetic person. Colours are RGB uint8 triples.

    Body fractions are of the rendered patch height; ``torso_width`` and ``arm_width`` are
    fractions of the patch width.
    """

    pid: int
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    upper: tuple[int, int, int]
    upper_pattern: str  # one of PATTERNS
    upper_secondary: tuple[int, int, int]  # second colour of stripes / checks
    lower: tuple[int, int, int]
    shoes: tuple[int, int, int]
    aspect: float  # preferred patch height / width
    head_frac: float
    torso_frac: float
    shoe_frac: float
    torso_width: float
    arm_width: float
    accessory: str = "none"  # one of ACCESSORIES
    accessory_colour: tuple[int, int, int] = (0, 0, 0)

    @property
    def leg_frac(self) -> float:
        """Fraction of the height taken by the legs (what head, torso and shoes leave)."""
        return 1.0 - self.head_frac - self.torso_frac - self.shoe_frac


def _jitter_colour(rng: np.random.Generator, colour: tuple[int, int, int]) -> tuple[int, ...]:
    delta = rng.integers(-_IDENTITY_COLOUR_JITTER, _IDENTITY_COLOUR_JITTER + 1, size=3)
    return tuple(int(v) for v in np.clip(np.asarray(colour) + delta, 0, 255))


def make_identities(num: int, seed: int) -> list[ToyIdentity]:
    """Make ``num`` distinguishable identities, deterministically for ``seed``.

    Identities get distinct (upper colour, lower colour, upper pattern) combinations as long as
    there are enough (12 * 8 * 3 = 288); beyond that combinations repeat but skin, hair, shoes,
    body shape and accessory still vary. ``pid`` runs 0..num-1.
    """
    if num < 0:
        raise ValueError(f"make_identities: num must be >= 0, got {num}")
    rng = np.random.default_rng(seed)
    n_combos = len(_UPPER_PALETTE) * len(_LOWER_PALETTE) * len(PATTERNS)
    combos = rng.permutation(n_combos)
    if num > n_combos:
        combos = np.concatenate([combos, rng.integers(0, n_combos, size=num - n_combos)])
    identities = []
    for pid in range(num):
        combo = int(combos[pid])
        upper_idx, rest = divmod(combo, len(_LOWER_PALETTE) * len(PATTERNS))
        lower_idx, pattern_idx = divmod(rest, len(PATTERNS))
        secondary_idx = (upper_idx + 1 + int(rng.integers(0, len(_UPPER_PALETTE) - 1))) % len(
            _UPPER_PALETTE
        )
        accessory = ACCESSORIES[int(rng.integers(0, len(ACCESSORIES)))]
        identities.append(
            ToyIdentity(
                pid=pid,
                skin=_jitter_colour(rng, _SKIN_TONES[int(rng.integers(0, len(_SKIN_TONES)))]),
                hair=_jitter_colour(rng, _HAIR_COLOURS[int(rng.integers(0, len(_HAIR_COLOURS)))]),
                upper=_jitter_colour(rng, _UPPER_PALETTE[upper_idx]),
                upper_pattern=PATTERNS[pattern_idx],
                upper_secondary=_jitter_colour(rng, _UPPER_PALETTE[secondary_idx]),
                lower=_jitter_colour(rng, _LOWER_PALETTE[lower_idx]),
                shoes=_jitter_colour(rng, tuple(int(v) for v in rng.integers(0, 256, size=3))),
                aspect=float(rng.uniform(2.3, 2.9)),
                head_frac=float(rng.uniform(0.13, 0.17)),
                torso_frac=float(rng.uniform(0.30, 0.36)),
                shoe_frac=float(rng.uniform(0.04, 0.06)),
                torso_width=float(rng.uniform(0.48, 0.62)),
                arm_width=float(rng.uniform(0.11, 0.15)),
                accessory=accessory,
                accessory_colour=_jitter_colour(
                    rng, tuple(int(v) for v in rng.integers(0, 256, size=3))
                ),
            )
        )
    return identities


def _pattern_mask(
    pattern: str, yy: np.ndarray, xx: np.ndarray, period: float, phase: float
) -> np.ndarray:
    """Where the secondary colour goes: (H, W) bool. ``period`` in normalised height units."""
    if pattern == "solid":
        return np.zeros(np.broadcast_shapes(yy.shape, xx.shape), dtype=bool)
    rows = np.floor((yy + phase) / period).astype(np.int64) % 2 == 1
    if pattern == "stripes":
        return np.broadcast_to(rows, np.broadcast_shapes(yy.shape, xx.shape))
    if pattern == "checks":
        cols = np.floor((xx + phase) / (period * 0.5)).astype(np.int64) % 2 == 1
        return rows ^ cols
    raise ValueError(f"unknown upper-clothing pattern {pattern!r} (known: {PATTERNS})")


def render_person(
    identity: ToyIdentity,
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    brightness: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``identity`` filling a ``height`` x ``width`` patch.

    Args:
        identity: the appearance to draw.
        height, width: patch size in pixels (>= 8 and >= 4).
        rng: source of the small pose/shape jitter and pixel noise.
        brightness: multiplies all colours (lighting); 1.0 = nominal.

    Returns:
        image: (height, width, 3) uint8 RGB; background pixels are 0.
        mask: (height, width) uint8 class indices into :data:`PARSING_CLASSES` (0 = background,
            i.e. transparent).
    """
    if height < 8 or width < 4:
        raise ValueError(f"render_person: patch {height}x{width} too small (need >= 8x4)")
    # Normalised pixel-centre coordinates: yy (H, 1), xx (1, W), both in [0, 1].
    yy = ((np.arange(height, dtype=np.float64) + 0.5) / height)[:, None]
    xx = ((np.arange(width, dtype=np.float64) + 0.5) / width)[None, :]
    mask = np.zeros((height, width), dtype=np.uint8)
    colour = np.zeros((height, width, 3), dtype=np.float64)

    def paint(region: np.ndarray, cls: int, rgb) -> None:
        region = np.broadcast_to(region, mask.shape)
        mask[region] = cls
        colour[region] = np.asarray(rgb, dtype=np.float64)

    cx = 0.5 + rng.uniform(-0.03, 0.03)  # body centre line
    head_y1 = identity.head_frac * rng.uniform(0.95, 1.05)
    torso_y1 = head_y1 + identity.torso_frac * rng.uniform(0.95, 1.05)
    shoe_y0 = 1.0 - identity.shoe_frac
    torso_half = 0.5 * identity.torso_width * rng.uniform(0.95, 1.05)
    arm_w = identity.arm_width
    leg_w = torso_half * rng.uniform(0.75, 0.85)
    stride = rng.uniform(-0.12, 0.12)  # walking pose: legs splay by this much at the feet

    # Legs: two slanted bars from the hip to the top of the shoes.
    leg_t = np.clip((yy - torso_y1) / max(shoe_y0 - torso_y1, 1e-6), 0.0, 1.0)
    in_leg_rows = (yy >= torso_y1 - 0.01) & (yy < shoe_y0)
    left_c = cx - 0.5 * leg_w - stride * leg_t
    right_c = cx + 0.5 * leg_w + stride * leg_t
    left_leg = in_leg_rows & (np.abs(xx - left_c) <= 0.5 * leg_w)
    right_leg = in_leg_rows & (np.abs(xx - right_c) <= 0.5 * leg_w)
    paint(left_leg | right_leg, _LOWER, identity.lower)
    # Shoes under each leg end, a bit wider than the leg.
    in_shoe_rows = yy >= shoe_y0
    shoe_half = 0.6 * leg_w
    left_shoe = in_shoe_rows & (np.abs(xx - (cx - 0.5 * leg_w - stride)) <= shoe_half)
    right_shoe = in_shoe_rows & (np.abs(xx - (cx + 0.5 * leg_w + stride)) <= shoe_half)
    paint(left_shoe | right_shoe, _SHOES, identity.shoes)

    # Torso (slightly tapered to the waist) with the clothing pattern.
    torso_t = np.clip((yy - head_y1) / max(torso_y1 - head_y1, 1e-6), 0.0, 1.0)
    torso = (
        (yy >= head_y1 * 0.97)
        & (yy < torso_y1)
        & (np.abs(xx - cx) <= torso_half * (1.0 - 0.12 * torso_t))
    )
    paint(torso, _UPPER, identity.upper)
    secondary = torso & _pattern_mask(
        identity.upper_pattern, yy, xx, period=0.05, phase=rng.uniform(0.0, 0.05)
    )
    colour[secondary] = np.asarray(identity.upper_secondary, dtype=np.float64)

    # Arms hanging beside the torso, swinging a little; hands in skin colour.
    arm_len = (torso_y1 - head_y1) * rng.uniform(0.85, 1.0)
    arm_rows = (yy >= head_y1 + 0.01) & (yy < head_y1 + arm_len)
    arm_t = np.clip((yy - head_y1) / max(arm_len, 1e-6), 0.0, 1.0)
    swing = rng.uniform(-0.04, 0.04)
    left_arm_c = cx - torso_half - 0.5 * arm_w + swing * arm_t
    right_arm_c = cx + torso_half + 0.5 * arm_w - swing * arm_t
    arms = arm_rows & (
        (np.abs(xx - left_arm_c) <= 0.5 * arm_w) | (np.abs(xx - right_arm_c) <= 0.5 * arm_w)
    )
    paint(arms, _UPPER, identity.upper)
    hands = arms & (arm_t > 0.85)
    colour[hands] = np.asarray(identity.skin, dtype=np.float64)

    # Head: an ellipse of skin, hair on its upper part.
    head_cy = 0.5 * head_y1
    head_ry = 0.5 * head_y1
    head_rx = min(0.5, head_ry * height / width * rng.uniform(0.7, 0.8))
    head = ((xx - cx) / head_rx) ** 2 + ((yy - head_cy) / head_ry) ** 2 <= 1.0
    paint(head, _HEAD, identity.skin)
    hair = head & (yy < head_cy - head_ry * rng.uniform(0.1, 0.3))
    colour[hair] = np.asarray(identity.hair, dtype=np.float64)

    # Accessory: a hand bag at one hip, or a hat brim over the head.
    if identity.accessory == "bag":
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        bag_cx = cx + side * (torso_half + 0.5 * arm_w)
        bag = (
            (yy >= torso_y1 - 0.08)
            & (yy < torso_y1 + 0.08)
            & (np.abs(xx - bag_cx) <= min(0.18, 1.0 - abs(bag_cx - 0.5) * 2 + 0.18))
        )
        paint(bag, _ACCESSORY, identity.accessory_colour)
    elif identity.accessory == "hat":
        hat = (yy < head_cy - 0.45 * head_ry) & (np.abs(xx - cx) <= head_rx * 1.25)
        hat &= yy >= head_cy - head_ry * 1.05
        paint(hat, _ACCESSORY, identity.accessory_colour)
    elif identity.accessory != "none":
        raise ValueError(f"unknown accessory {identity.accessory!r} (known: {ACCESSORIES})")

    # Shading (light from above), lighting and noise, only on the person.
    shade = 1.08 - 0.16 * yy[..., None]
    colour = colour * shade * brightness
    colour += rng.normal(0.0, _RENDER_NOISE_STD, size=colour.shape)
    image = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
    image[mask == 0] = 0
    return image, mask
