"""Synthetic street scenes: textured backgrounds, several persons, occluders and lighting.

Used by the CUHK-SYSU- and PRW-format toy writers. A :class:`BackgroundStyle` plays the role of a
camera (PRW) or a kind of place (CUHK-SYSU); :func:`place_persons` lays out persons standing on
the ground at different scales; :func:`compose_scene` draws them back to front, adds scene objects
that occlude them, and reports how much of each person stays visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .identities import ToyIdentity, render_person
from .io import save_jpeg

__all__ = [
    "BackgroundStyle",
    "ScenePerson",
    "assign_appearances",
    "compose_scene",
    "make_background_styles",
    "place_persons",
    "RenderedPerson",
    "SceneSpec",
    "render_background",
    "render_scenes",
]

_TEXTURES = ("bricks", "tiles", "stripes")
# Person height as a fraction of the image height (smallest, largest).
_PERSON_HEIGHT_FRAC = (0.3, 0.75)
# Max IoU between two placed persons before a placement is retried (keeps each person visible).
_MAX_PLACEMENT_IOU = 0.45
_PLACEMENT_TRIES = 20
# Probability that a scene gets an occluding object in front of the persons.
_OCCLUDER_PROB = 0.45
_BACKGROUND_NOISE_STD = 4.0


@dataclass(frozen=True)
class BackgroundStyle:
    """Look of one camera / place: wall above the horizon, ground below, a texture on the wall."""

    wall: tuple[int, int, int]
    ground: tuple[int, int, int]
    texture: str  # one of _TEXTURES
    texture_colour: tuple[int, int, int]
    horizon: float  # fraction of the image height
    period: int  # texture period in pixels


@dataclass(frozen=True)
class ScenePerson:
    """A person in a scene. ``box`` = (x, y, w, h) integer pixels of the full body (it may
    extend past the image border when the layout allows it)."""

    identity: ToyIdentity
    box: tuple[int, int, int, int]


def make_background_styles(num: int, rng: np.random.Generator) -> list[BackgroundStyle]:
    """``num`` distinct-looking background styles (muted colours, so persons stand out)."""
    styles = []
    for _ in range(num):
        wall = rng.integers(60, 200, size=3)
        styles.append(
            BackgroundStyle(
                wall=tuple(int(v) for v in wall),
                ground=tuple(int(v) for v in rng.integers(50, 170, size=3)),
                texture=_TEXTURES[int(rng.integers(0, len(_TEXTURES)))],
                texture_colour=tuple(int(v) for v in np.clip(wall - rng.integers(30, 60), 0, 255)),
                horizon=float(rng.uniform(0.35, 0.55)),
                period=int(rng.integers(10, 26)),
            )
        )
    return styles


def render_background(
    style: BackgroundStyle, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """(height, width, 3) float64 RGB background with texture, soft shading blobs and noise."""
    yy = np.arange(height)[:, None]
    xx = np.arange(width)[None, :]
    horizon = int(style.horizon * height)
    img = np.empty((height, width, 3), dtype=np.float64)
    img[:horizon] = style.wall
    img[horizon:] = style.ground
    p = style.period
    if style.texture == "bricks":
        row = yy // p
        lines = (yy % p == 0) | ((xx + (row % 2) * p) % (2 * p) == 0)
    elif style.texture == "tiles":
        lines = (yy % p == 0) | (xx % p == 0)
    else:  # stripes
        lines = np.broadcast_to((xx // p) % 2 == 0, (height, width))
    wall_lines = np.broadcast_to(lines, (height, width)) & (yy < horizon)
    img[wall_lines] = style.texture_colour
    # Ground: perspective lines converging at the horizon.
    ground_y = np.maximum(yy - horizon, 1)
    ground_lines = (yy >= horizon) & ((((xx - width / 2) * 8 / ground_y) % 16) < 1.0)
    img[ground_lines] = np.asarray(style.ground) * 0.8
    # Low-frequency shading: a coarse random grid, upsampled by repetition and box-smoothed.
    coarse = rng.uniform(0.85, 1.15, size=(4, 6))
    shade = np.kron(coarse, np.ones((height // 4 + 1, width // 6 + 1)))[:height, :width]
    img *= shade[..., None]
    img += rng.normal(0.0, _BACKGROUND_NOISE_STD, size=img.shape)
    return img


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box a (4,) with boxes b (N, 4), both x, y, w, h."""
    x1 = np.maximum(a[0], b[:, 0])
    y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[0] + a[2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[1] + a[3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (a[2] * a[3] + b[:, 2] * b[:, 3] - inter)


def place_persons(
    identities: Sequence[ToyIdentity],
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    allow_outside: bool = False,
) -> list[ScenePerson]:
    """Lay out ``identities`` standing in a ``height`` x ``width`` scene.

    Persons lower in the image (closer) are larger. With ``allow_outside``, a person may stick
    out of the left/right border by up to 20% of its width (PRW has such boxes).
    """
    placed: list[ScenePerson] = []
    boxes = np.zeros((0, 4), dtype=np.float64)
    lo, hi = _PERSON_HEIGHT_FRAC
    for identity in identities:
        best = None
        for _ in range(_PLACEMENT_TRIES):
            frac = rng.uniform(lo, hi)
            h = int(round(frac * height))
            w = max(4, int(round(h / identity.aspect)))
            # Bottom edge: closer (bigger) persons stand lower in the image.
            depth = (frac - lo) / (hi - lo)
            bottom = int(round(height * (0.7 + 0.3 * depth) - rng.uniform(0, 0.05) * height))
            bottom = min(max(bottom, h), height)
            margin = int(0.2 * w) if allow_outside else 0
            x = int(rng.integers(-margin, width - w + margin + 1))
            box = np.asarray([x, bottom - h, w, h], dtype=np.float64)
            overlap = _iou_xywh(box, boxes).max() if len(boxes) else 0.0
            if best is None or overlap < best[0]:
                best = (overlap, box)
            if overlap < _MAX_PLACEMENT_IOU:
                break
        box = best[1]
        boxes = np.concatenate([boxes, box[None]], axis=0)
        placed.append(ScenePerson(identity, tuple(int(v) for v in box)))
    return placed


def compose_scene(
    background: np.ndarray,
    persons: Sequence[ScenePerson],
    rng: np.random.Generator,
    *,
    brightness: float = 1.0,
    return_owner: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``persons`` back to front on ``background``, then maybe an occluding object.

    Args:
        background: (H, W, 3) float RGB.
        brightness: scene lighting, multiplies everything.
        return_owner: also return the owner map (draws nothing more from ``rng``).

    Returns:
        image: (H, W, 3) uint8 RGB.
        visibility: (P,) float64, the fraction of each person's body pixels left visible (after
            other persons, scene objects and the image border).
        owner (with ``return_owner``): (H, W) int64, per pixel the index in ``persons`` of the
            person it shows (its visible body, accessory included), -1 elsewhere.
    """
    height, width = background.shape[:2]
    canvas = background.copy()
    owner = np.full((height, width), -1, dtype=np.int64)  # which person each pixel shows
    body_pixels = np.zeros(len(persons), dtype=np.float64)
    order = sorted(range(len(persons)), key=lambda i: persons[i].box[1] + persons[i].box[3])
    for i in order:
        x, y, w, h = persons[i].box
        patch, mask = render_person(persons[i].identity, h, w, rng)
        body_pixels[i] = max(int((mask > 0).sum()), 1)
        # Paste the part of the patch inside the image.
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, width), min(y + h, height)
        if x1 <= x0 or y1 <= y0:
            continue
        sub_mask = mask[y0 - y : y1 - y, x0 - x : x1 - x] > 0
        region = canvas[y0:y1, x0:x1]
        region[sub_mask] = patch[y0 - y : y1 - y, x0 - x : x1 - x][sub_mask]
        owner[y0:y1, x0:x1][sub_mask] = i
    if persons and rng.uniform() < _OCCLUDER_PROB:
        _draw_occluder(canvas, owner, rng)
    canvas *= brightness
    visible = np.bincount(owner[owner >= 0], minlength=len(persons)).astype(np.float64)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    visibility = visible / body_pixels if len(persons) else np.zeros(0)
    return (image, visibility, owner) if return_owner else (image, visibility)


def _draw_occluder(canvas: np.ndarray, owner: np.ndarray, rng: np.random.Generator) -> None:
    """A pole (tall, thin) or a low wall / car (wide, at the bottom) in front of the persons."""
    height, width = owner.shape
    colour = rng.integers(30, 220, size=3).astype(np.float64)
    if rng.uniform() < 0.5:
        w = int(rng.uniform(0.04, 0.1) * width)
        x0 = int(rng.integers(0, width - w))
        y0, y1, x1 = int(rng.uniform(0.0, 0.3) * height), height, x0 + w
    else:
        w = int(rng.uniform(0.25, 0.5) * width)
        x0 = int(rng.integers(0, width - w))
        y0, y1, x1 = int(rng.uniform(0.72, 0.85) * height), height, x0 + w
    canvas[y0:y1, x0:x1] = colour
    canvas[y0:y1, x0:x1] += rng.normal(0.0, _BACKGROUND_NOISE_STD, size=(y1 - y0, x1 - x0, 1))
    owner[y0:y1, x0:x1] = -1


def assign_appearances(
    num_images: int,
    identity_ids: Sequence[int],
    rng: np.random.Generator,
    *,
    min_appearances: int,
    max_appearances: int,
    image_groups: np.ndarray | None = None,
    min_groups: int = 1,
) -> list[list[int]]:
    """Choose which images each identity appears in (at most once per image).

    Args:
        num_images: images of the split.
        identity_ids: identities to place.
        min_appearances, max_appearances: images per identity (inclusive range; the maximum is
            capped at ``num_images``).
        image_groups: (num_images,) int camera of each image; with ``min_groups`` > 1 each
            identity appears under at least that many cameras.

    Returns:
        per image, the identity ids in it.
    """
    if min_appearances > num_images:
        raise ValueError(
            f"identities must appear in >= {min_appearances} images, the split has {num_images}"
        )
    max_appearances = min(max_appearances, num_images)
    per_image: list[list[int]] = [[] for _ in range(num_images)]
    load = np.zeros(num_images, dtype=np.float64)
    for pid in identity_ids:
        count = int(rng.integers(min_appearances, max_appearances + 1))
        # Prefer lightly loaded images so persons spread evenly over the split.
        weights = np.exp(-load)
        chosen: list[int] = []
        if image_groups is not None and min_groups > 1:
            groups = np.unique(image_groups)
            if len(groups) < min_groups or count < min_groups:
                raise ValueError(
                    f"cannot spread {count} appearances over {min_groups} of {len(groups)} cameras"
                )
            for g in rng.choice(groups, size=min_groups, replace=False):
                candidates = np.flatnonzero(image_groups == g)
                w = weights[candidates] / weights[candidates].sum()
                chosen.append(int(rng.choice(candidates, p=w)))
        rest = np.setdiff1d(np.arange(num_images), chosen)
        w = weights[rest] / weights[rest].sum()
        chosen += [int(i) for i in rng.choice(rest, size=count - len(chosen), replace=False, p=w)]
        for image in chosen:
            per_image[int(image)].append(int(pid))
            load[int(image)] += 1
    return per_image


@dataclass(frozen=True)
class SceneSpec:
    """What one toy image shows: its file, size, background style and the persons in it."""

    path: str  # output JPEG path
    height: int
    width: int
    style: BackgroundStyle
    identities: tuple[ToyIdentity, ...]
    brightness: float


@dataclass(frozen=True)
class RenderedPerson:
    """A person as drawn: identity index (``ToyIdentity.pid``), full-body box, visibility."""

    pid: int
    box: tuple[int, int, int, int]  # x, y, w, h
    visibility: float


def render_scenes(
    specs: Sequence[SceneSpec],
    rng: np.random.Generator,
    *,
    allow_outside: bool = False,
    on_owner: Callable[[int, np.ndarray], None] | None = None,
) -> list[list[RenderedPerson]]:
    """Render and save every scene of ``specs`` (in order); returns the persons of each.

    Args:
        on_owner: called with ``(scene index, owner map)`` for every scene (the (H, W) map of
            :func:`compose_scene`, indices into that scene's returned persons); it draws nothing
            from ``rng``, so the scenes are the same with or without it.
    """
    out = []
    for index, spec in enumerate(specs):
        background = render_background(spec.style, spec.height, spec.width, rng)
        persons = place_persons(
            spec.identities, spec.height, spec.width, rng, allow_outside=allow_outside
        )
        image, visibility, owner = compose_scene(
            background, persons, rng, brightness=spec.brightness, return_owner=True
        )
        if on_owner is not None:
            on_owner(index, owner)
        save_jpeg(spec.path, image)
        out.append(
            [RenderedPerson(p.identity.pid, p.box, float(v)) for p, v in zip(persons, visibility)]
        )
    return out
