"""Generated road scenes with YOLO labels: a ``day`` source city and a ``night`` target.

A pinhole-like ground plane gives every object a depth ``d`` (0 at the horizon, 1 at the
bottom row): its size in pixels is proportional to ``d``, so far objects are small and
high in the frame, near ones large and low. Objects are painted far to near, so near ones
partly occlude far ones; boxes are amodal (the whole object), like KITTI's. Night frames
are dark, with headlights, tail lights, street lamps and, in half of them, fog.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFilter

from .painting import PAINTERS, background, fog, night_lighting
from .scene import Placed, Scene

CLASSES = ["car", "pedestrian", "cyclist", "traffic_sign"]
SIZES = {
    "tiny": {"day": 60, "night": 30, "width": 192, "height": 112},
    "small": {"day": 240, "night": 80, "width": 256, "height": 144},
    "full": {"day": 2000, "night": 400, "width": 512, "height": 288},
}
# real-world (width, height) in metres and the depth range each class is placed in
OBJECTS = {
    "car": ((1.8, 1.5), (0.2, 0.95)),
    "pedestrian": ((0.7, 1.75), (0.28, 0.9)),
    "cyclist": ((1.6, 1.8), (0.25, 0.9)),
    "traffic_sign": ((0.9, 0.9), (0.25, 0.8)),
}
COUNTS = {"car": (1, 5), "pedestrian": (0, 3), "cyclist": (0, 2), "traffic_sign": (0, 2)}


def write_demo(out_dir: Path, size: str = "small", seed: int = 0) -> Path:
    """Write ``out_dir/day`` and ``out_dir/night`` (YOLO layout); return ``out_dir``."""
    config = SIZES[size]
    for domain in ("day", "night"):
        root = out_dir / domain
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        for index in range(config[domain]):
            rng = np.random.default_rng([seed, 0 if domain == "day" else 1, index])
            image, objects = render_scene(rng, config["width"], config["height"], domain == "night")
            stem = f"{domain}_{index:05d}"
            image.save(root / "images" / f"{stem}.jpg", quality=92)
            (root / "labels" / f"{stem}.txt").write_text(yolo_lines(objects, image.size))
        names = {"names": CLASSES, "nc": len(CLASSES), "domain": domain}
        (root / "data.yaml").write_text(yaml.safe_dump(names, sort_keys=False))
    return out_dir


def yolo_lines(objects: list[Placed], size: tuple[int, int]) -> str:
    width, height = size
    lines = []
    for obj in objects:
        x1, y1, x2, y2 = obj.box
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        lines.append(
            f"{CLASSES.index(obj.cls)} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
        )
    return "\n".join(lines) + ("\n" if lines else "")


def render_scene(
    rng: np.random.Generator, width: int, height: int, night: bool
) -> tuple[Image.Image, list[Placed]]:
    scene = Scene(
        width,
        height,
        horizon=height * rng.uniform(0.36, 0.46),
        vanish_x=width * (0.5 + rng.uniform(-0.08, 0.08)),
        half_bottom=width * rng.uniform(0.6, 0.8),
        night=night,
        fog=float(rng.uniform(0.4, 0.9)) if night and rng.random() < 0.5 else 0.0,
    )
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image, "RGBA")
    background(draw, scene, rng)
    objects = [] if rng.random() < 0.06 else _place_objects(scene, rng)
    for obj in sorted(objects, key=lambda o: o.d):
        PAINTERS[obj.cls](draw, obj, scene, rng)
    if night:
        image = night_lighting(image, scene, objects, rng)
    if scene.fog:
        image = fog(image, scene)
    image = image.filter(ImageFilter.GaussianBlur(0.5))
    noise = rng.normal(0, 7 if night else 4, (height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels), _visible(objects, width, height)


def _visible(objects: list[Placed], width: int, height: int) -> list[Placed]:
    """Clip boxes to the frame; drop objects mostly outside or hidden behind nearer ones."""
    kept = []
    for obj in objects:
        x1, y1, x2, y2 = obj.box
        cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        area = (x2 - x1) * (y2 - y1)
        if cx2 - cx1 < 3 or cy2 - cy1 < 3 or (cx2 - cx1) * (cy2 - cy1) < 0.5 * area:
            continue
        kept.append(Placed(obj.cls, (cx1, cy1, cx2, cy2), obj.d, obj.lateral))
    return kept


def _place_objects(scene: Scene, rng: np.random.Generator) -> list[Placed]:
    placed: list[Placed] = []
    for cls, (low, high) in COUNTS.items():
        for _ in range(rng.integers(low, high + 1)):
            for _attempt in range(6):
                candidate = _sample(cls, scene, rng)
                if all(_hidden_fraction(candidate, other) < 0.5 for other in placed):
                    placed.append(candidate)
                    break
    return placed


def _sample(cls: str, scene: Scene, rng: np.random.Generator) -> Placed:
    (w_m, h_m), (d_low, d_high) = OBJECTS[cls]
    d = float(rng.uniform(d_low, d_high) ** 0.8)
    if cls == "car":
        lateral = float(rng.choice([-0.75, -0.25, 0.25, 0.75]) + rng.uniform(-0.08, 0.08))
    elif cls == "traffic_sign":
        lateral = float(rng.choice([-1, 1]) * rng.uniform(1.15, 1.5))
    else:
        lateral = float(rng.choice([-1, 1]) * rng.uniform(0.95, 1.35))
    ppm = scene.pixels_per_metre(d)
    ground = scene.row(d)
    cx = scene.x_at(lateral, d)
    width, height = w_m * ppm * rng.uniform(0.9, 1.1), h_m * ppm * rng.uniform(0.92, 1.08)
    if cls == "traffic_sign":
        bottom = ground - 2.0 * ppm
        box = (cx - width / 2, bottom - height, cx + width / 2, bottom)
    else:
        box = (cx - width / 2, ground - height, cx + width / 2, ground)
    return Placed(cls, box, d, lateral)


def _hidden_fraction(a: Placed, b: Placed) -> float:
    """How much of the farther of ``a``/``b`` the nearer one covers."""
    far, near = (a, b) if a.d < b.d else (b, a)
    ix = min(far.box[2], near.box[2]) - max(far.box[0], near.box[0])
    iy = min(far.box[3], near.box[3]) - max(far.box[1], near.box[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    area = (far.box[2] - far.box[0]) * (far.box[3] - far.box[1])
    return ix * iy / area
