"""Painting a generated road scene (`demo`): background, road, objects, night light, fog.

Every painter draws from the scene's random generator in a fixed order, so a seed gives the
same pixels on every machine.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .scene import Placed, Scene


def _shade(color: tuple[int, int, int], night: bool, factor: float = 1.0) -> tuple[int, ...]:
    scale = factor * (0.32 if night else 1.0)
    return tuple(int(min(255, c * scale)) for c in color)


def background(draw: ImageDraw.ImageDraw, scene: Scene, rng: np.random.Generator) -> None:
    w, h, hz = scene.width, scene.height, scene.horizon
    top = (
        (14, 18, 40)
        if scene.night
        else tuple(int(c) for c in rng.integers([90, 140, 200], [130, 180, 240]))
    )
    bottom = (30, 32, 52) if scene.night else (200, 215, 230)
    for y in range(int(hz) + 1):
        t = y / max(hz, 1)
        draw.line(
            [(0, y), (w, y)],
            fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    skyline = _shade((110, 110, 120), scene.night, 0.8)
    x = 0.0
    while x < w:  # buildings and trees along the horizon
        bw = rng.uniform(0.04, 0.12) * w
        bh = rng.uniform(0.03, 0.16) * h
        color = skyline if rng.random() < 0.6 else _shade((50, 100, 50), scene.night)
        draw.rectangle([x, hz - bh, x + bw, hz + 1], fill=color)
        if scene.night and rng.random() < 0.5:
            for _ in range(int(rng.integers(1, 5))):
                wx, wy = x + rng.uniform(0, bw - 2), hz - rng.uniform(2, max(bh, 3))
                draw.rectangle([wx, wy, wx + 1.5, wy + 1.5], fill=(230, 200, 120))
        x += bw
    grass = _shade(tuple(int(c) for c in rng.integers([60, 110, 40], [90, 150, 70])), scene.night)
    draw.rectangle([0, hz, w, h], fill=grass)
    far, near = scene.x_at(-1.25, 1.0), scene.x_at(1.25, 1.0)
    draw.polygon(
        [(scene.vanish_x, hz), (far, h), (near, h)], fill=_shade((170, 165, 155), scene.night)
    )
    road = _shade(tuple(int(c) for c in rng.integers([75, 75, 80], [105, 105, 110])), scene.night)
    draw.polygon(
        [(scene.vanish_x, hz), (scene.x_at(-1, 1.0), h), (scene.x_at(1, 1.0), h)], fill=road
    )
    _lane_markings(draw, scene)


def _lane_markings(draw: ImageDraw.ImageDraw, scene: Scene) -> None:
    paint = _shade((235, 235, 225), scene.night, 1.4 if scene.night else 1.0)
    for lateral in (-0.98, 0.98):
        draw.line(
            [(scene.vanish_x, scene.horizon), (scene.x_at(lateral, 1.0), scene.height)],
            fill=paint,
            width=max(1, int(scene.width / 200)),
        )
    for lateral in (-0.5, 0.0, 0.5):
        z = 1.0
        while z < 40:  # dashes equally spaced on the ground, so ever closer in the image
            d_near, d_far = 1 / z, 1 / (z + 0.6)
            half_near = 0.012 * scene.half_bottom * d_near
            half_far = 0.012 * scene.half_bottom * d_far
            xn, xf = scene.x_at(lateral, d_near), scene.x_at(lateral, d_far)
            yn, yf = scene.row(d_near), scene.row(d_far)
            draw.polygon(
                [
                    (xn - half_near, yn),
                    (xn + half_near, yn),
                    (xf + half_far, yf),
                    (xf - half_far, yf),
                ],
                fill=paint,
            )
            z += 1.5


def _car(draw: ImageDraw.ImageDraw, obj: Placed, scene: Scene, rng: np.random.Generator) -> None:
    x1, y1, x2, y2 = obj.box
    w, h = x2 - x1, y2 - y1
    body = tuple(int(c) for c in rng.integers(20, 235, 3))
    cabin_top = y1
    body_top = y1 + 0.42 * h
    draw.polygon(
        [
            (x1 + 0.16 * w, cabin_top),
            (x2 - 0.16 * w, cabin_top),
            (x2 - 0.04 * w, body_top),
            (x1 + 0.04 * w, body_top),
        ],
        fill=_shade(body, scene.night),
    )
    draw.polygon(
        [
            (x1 + 0.22 * w, cabin_top + 0.08 * h),
            (x2 - 0.22 * w, cabin_top + 0.08 * h),
            (x2 - 0.1 * w, body_top),
            (x1 + 0.1 * w, body_top),
        ],
        fill=_shade((40, 50, 60), scene.night),
    )
    draw.rectangle([x1, body_top, x2, y2 - 0.12 * h], fill=_shade(body, scene.night, 0.9))
    draw.rectangle([x1 + 0.05 * w, y2 - 0.16 * h, x1 + 0.22 * w, y2], fill=(15, 15, 15))
    draw.rectangle([x2 - 0.22 * w, y2 - 0.16 * h, x2 - 0.05 * w, y2], fill=(15, 15, 15))
    oncoming = obj.lateral < 0
    lamp = (250, 245, 210) if oncoming else (220, 30, 30)
    if not scene.night:
        lamp = (235, 235, 220) if oncoming else (170, 30, 30)
    ly = body_top + 0.12 * h
    for lx in (x1 + 0.06 * w, x2 - 0.2 * w):
        draw.rectangle([lx, ly, lx + 0.14 * w, ly + 0.12 * h], fill=lamp)
    draw.rectangle(
        [x1 + 0.35 * w, ly + 0.2 * h, x2 - 0.35 * w, ly + 0.3 * h],
        fill=_shade((230, 230, 230), scene.night),
    )


def _person(
    draw: ImageDraw.ImageDraw,
    box: tuple[float, ...],
    scene: Scene,
    rng: np.random.Generator,
    legs: bool = True,
) -> None:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    skin = _shade(tuple(int(c) for c in rng.integers([140, 90, 60], [240, 200, 170])), scene.night)
    shirt = _shade(tuple(int(c) for c in rng.integers(20, 240, 3)), scene.night)
    pants = _shade(tuple(int(c) for c in rng.integers(10, 120, 3)), scene.night)
    head = 0.13 * h
    draw.ellipse([cx - head / 2, y1, cx + head / 2, y1 + head], fill=skin)
    torso_bottom = y1 + 0.55 * h
    draw.rectangle([x1 + 0.18 * w, y1 + head, x2 - 0.18 * w, torso_bottom], fill=shirt)
    draw.line(
        [(x1 + 0.18 * w, y1 + head * 1.2), (x1, torso_bottom)],
        fill=shirt,
        width=max(1, int(0.12 * w)),
    )
    draw.line(
        [(x2 - 0.18 * w, y1 + head * 1.2), (x2, torso_bottom)],
        fill=shirt,
        width=max(1, int(0.12 * w)),
    )
    if legs:
        stride = rng.uniform(0.0, 0.25) * w
        leg = max(1, int(0.2 * w))
        draw.line(
            [(cx - 0.1 * w, torso_bottom), (cx - 0.1 * w - stride, y2)], fill=pants, width=leg
        )
        draw.line(
            [(cx + 0.1 * w, torso_bottom), (cx + 0.1 * w + stride, y2)], fill=pants, width=leg
        )


def _pedestrian(
    draw: ImageDraw.ImageDraw, obj: Placed, scene: Scene, rng: np.random.Generator
) -> None:
    _person(draw, obj.box, scene, rng)


def _cyclist(
    draw: ImageDraw.ImageDraw, obj: Placed, scene: Scene, rng: np.random.Generator
) -> None:
    x1, y1, x2, y2 = obj.box
    w, h = x2 - x1, y2 - y1
    radius = min(0.22 * w, 0.2 * h)
    frame = _shade(tuple(int(c) for c in rng.integers(30, 230, 3)), scene.night)
    tyre = _shade((25, 25, 25), scene.night, 2)
    rear, front = (x1 + radius, y2 - radius), (x2 - radius, y2 - radius)
    width = max(1, int(radius / 4))
    for cx, cy in (rear, front):
        draw.ellipse(
            [cx - radius, cy - radius, cx + radius, cy + radius], outline=tyre, width=width
        )
    seat = ((x1 + x2) / 2 - 0.1 * w, y2 - 2.4 * radius)
    draw.line([rear, seat, front, ((x1 + x2) / 2, y2 - radius), rear], fill=frame, width=width)
    rider_w = 0.45 * w
    rider = (seat[0] - rider_w / 2, y1, seat[0] + rider_w / 2, seat[1] + 0.2 * h)
    _person(draw, rider, scene, rng, legs=False)
    draw.line(
        [(seat[0], seat[1]), ((x1 + x2) / 2, y2 - radius)],
        fill=_shade((20, 40, 90), scene.night),
        width=max(1, int(0.08 * w)),
    )


def _traffic_sign(
    draw: ImageDraw.ImageDraw, obj: Placed, scene: Scene, rng: np.random.Generator
) -> None:
    x1, y1, x2, y2 = obj.box
    w = x2 - x1
    ground = scene.row(obj.d)
    pole = _shade((120, 120, 125), scene.night)
    draw.line([((x1 + x2) / 2, y2), ((x1 + x2) / 2, ground)], fill=pole, width=max(1, int(0.1 * w)))
    bright = 1.6 if scene.night else 1.0  # retro-reflective
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse([x1, y1, x2, y2], fill=_shade((210, 20, 20), scene.night, bright))
        m = 0.18 * w
        draw.ellipse(
            [x1 + m, y1 + m, x2 - m, y2 - m], fill=_shade((245, 245, 245), scene.night, bright)
        )
    elif kind == 1:
        draw.polygon(
            [((x1 + x2) / 2, y1), (x2, y2), (x1, y2)],
            fill=_shade((210, 20, 20), scene.night, bright),
        )
        m = 0.2 * w
        draw.polygon(
            [((x1 + x2) / 2, y1 + 1.6 * m), (x2 - m, y2 - 0.6 * m), (x1 + m, y2 - 0.6 * m)],
            fill=_shade((245, 245, 245), scene.night, bright),
        )
    else:
        draw.rectangle([x1, y1, x2, y2], fill=_shade((20, 70, 190), scene.night, bright))
        draw.polygon(
            [
                ((x1 + x2) / 2, y1 + 0.2 * w),
                (x2 - 0.25 * w, y2 - 0.25 * w),
                (x1 + 0.25 * w, y2 - 0.25 * w),
            ],
            fill=_shade((245, 245, 245), scene.night, bright),
        )


PAINTERS = {
    "car": _car,
    "pedestrian": _pedestrian,
    "cyclist": _cyclist,
    "traffic_sign": _traffic_sign,
}


# ------------------------------------------------------------------------- night
def night_lighting(
    image: Image.Image, scene: Scene, objects: list[Placed], rng: np.random.Generator
) -> Image.Image:
    """Additive light: headlight cones on the road, lamp glows, tail-light halos."""
    glow = Image.new("RGB", image.size, (0, 0, 0))
    draw = ImageDraw.Draw(glow)
    ego_reach = scene.row(0.35)
    draw.polygon(
        [
            (scene.x_at(-0.55, 1.0), scene.height),
            (scene.vanish_x - 4, ego_reach),
            (scene.vanish_x + 14, ego_reach),
            (scene.x_at(0.6, 1.0), scene.height),
        ],
        fill=(70, 66, 50),
    )
    for _ in range(int(rng.integers(1, 4))):
        d = rng.uniform(0.25, 0.8)
        x = scene.x_at(rng.choice([-1.3, 1.3]), d)
        y = scene.row(d) - 5.0 * scene.pixels_per_metre(d)
        r = 0.7 * scene.pixels_per_metre(d)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(160, 135, 70))
    for obj in objects:
        if obj.cls != "car":
            continue
        x1, y1, x2, y2 = obj.box
        w, h = x2 - x1, y2 - y1
        color = (120, 115, 90) if obj.lateral < 0 else (110, 10, 10)
        for lx in (x1 + 0.13 * w, x2 - 0.13 * w):
            ly = y1 + 0.6 * h
            r = 0.18 * w
            draw.ellipse([lx - r, ly - r, lx + r, ly + r], fill=color)
    glow = glow.filter(ImageFilter.GaussianBlur(max(1.5, scene.width / 120)))
    return Image.fromarray(
        np.clip(np.asarray(image, np.int16) + np.asarray(glow, np.int16), 0, 255).astype(np.uint8)
    )


def fog(image: Image.Image, scene: Scene) -> Image.Image:
    """Blend towards haze with distance: alpha grows as depth d shrinks."""
    rows = np.arange(scene.height, dtype=np.float32)
    d = np.clip((rows - scene.horizon) / (scene.height - scene.horizon), 0.02, 1.0)
    alpha = np.clip(1 - np.exp(-scene.fog * 0.35 / d), 0, 0.92)[:, None, None]
    haze = np.array([70, 72, 80], np.float32)
    pixels = np.asarray(image, np.float32) * (1 - alpha) + haze * alpha
    return Image.fromarray(pixels.astype(np.uint8))
