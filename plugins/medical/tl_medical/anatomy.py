"""The generated chest radiograph itself: per-patient anatomy, lesions and the scanner look.

`generate_case` draws one image (float display units 0..1) from `sample_patient`'s anatomy;
`tl_medical.demo` writes such images as DICOM and PNG. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CLASSES: tuple[str, ...] = ("normal", "nodule", "effusion")
DEFAULT_LESION_CONTRAST = 0.35
"""Peak density a nodule adds (display units 0..1; lung ≈ 0.25, soft tissue ≈ 0.55, a rib
≈ +0.07). An effusion adds ``1.2 ×`` this over its extent."""


@dataclass(frozen=True)
class Style:
    """One scanner / acquisition look. Ranges are (low, high) of a uniform draw per image."""

    noise: float = 0.018  # quantum noise sigma at mid grey
    grain: float = 0.006  # fine detector noise, signal independent
    contrast: tuple[float, float] = (0.85, 1.2)
    brightness: tuple[float, float] = (-0.08, 0.08)
    gamma: tuple[float, float] = (0.8, 1.25)
    fov: tuple[float, float] = (0.93, 1.05)  # anatomy scale: <1 shows more around the chest
    shift: float = 0.03
    rotation_deg: float = 2.0
    heel: float = 0.04  # anode heel: brightness gradient across the image
    texture: float = 0.035  # lung markings
    collimation: float = 0.0  # chance of visible collimator edges
    blur_cells: int = 0  # 0: sharp; else the noise is low-passed (a softer detector)


STYLES: dict[str, Style] = {
    "standard": Style(),
    # bedside AP film: more noise, flatter contrast, wider field of view, rotated patient,
    # collimator edges, brighter overall
    "portable": Style(
        noise=0.03,
        grain=0.012,
        contrast=(0.65, 0.95),
        brightness=(0.0, 0.12),
        gamma=(0.7, 1.1),
        fov=(0.78, 0.9),
        shift=0.06,
        rotation_deg=5.0,
        heel=0.08,
        texture=0.025,
        collimation=0.7,
    ),
}

# ----------------------------------------------------------------------------- anatomy


def sample_patient(rng: np.random.Generator, label: str) -> dict[str, Any]:
    """Anatomy and lesions of one patient, in body coordinates (x right, y down, ±1).

    Image left is the patient's right (radiological convention): the right dome sits higher
    and the heart bulges into the image-right lung.
    """
    if label not in CLASSES:
        raise ValueError(f"unknown demo class {label!r}; expected one of {CLASSES}")
    p: dict[str, Any] = {
        "label": label,
        "body_w": rng.uniform(0.86, 0.97),
        "lung_x": rng.uniform(0.44, 0.49),  # centre of each lung field
        "lung_ax": rng.uniform(0.33, 0.37),  # half width at the base
        "lung_top": rng.uniform(-0.8, -0.7),
        "dome_r": rng.uniform(0.26, 0.36),  # highest point of the dome, image left
        "dome_l": rng.uniform(0.31, 0.42),
        "dome_h": rng.uniform(0.12, 0.2),  # how far the dome falls to the costophrenic angle
        "heart_rx": rng.uniform(0.3, 0.36),
        "heart_ry": rng.uniform(0.22, 0.28),
        "heart_x": rng.uniform(0.08, 0.15),
        "medi_w": rng.uniform(0.1, 0.13),
        "rib_gap": rng.uniform(0.1, 0.12),
        "rib_curve": rng.uniform(0.75, 1.0),
        "rib_phase": rng.uniform(-0.03, 0.03),
        "aeration": rng.uniform(0.3, 0.38),
        "tissue": rng.uniform(0.56, 0.66),
        "gas_bubble": bool(rng.random() < 0.6),
        "seed": int(rng.integers(2**31)),
        "nodules": [],
        "effusion": None,
    }
    if label == "nodule":
        for _ in range(int(rng.integers(1, 4))):
            p["nodules"].append(_sample_nodule(rng, p))
    elif label == "effusion":
        p["effusion"] = {
            "side": int(rng.integers(2)),  # 0: image left (patient right)
            "height": rng.uniform(0.25, 0.45),  # above the costophrenic angle
            "meniscus": rng.uniform(0.6, 1.2),  # how much higher the fluid climbs laterally
        }
    return p


def _sample_nodule(rng: np.random.Generator, p: dict[str, Any]) -> dict[str, float]:
    """A point well inside one lung field, not behind the heart (rejection sampling)."""
    for _ in range(500):
        side = int(rng.integers(2))
        x = (-1 if side == 0 else 1) * p["lung_x"] + rng.uniform(-0.8, 0.8) * p["lung_ax"]
        y = rng.uniform(p["lung_top"] + 0.1, 0.45)
        xs, ys = np.array([x]), np.array([y])
        if _lung_value(xs, ys, p, side)[0] < 0.08:
            continue
        if _heart_value(xs, ys, p)[0] > -0.2:
            continue
        radius_px = rng.uniform(4.0, 9.0)
        return {"x": float(x), "y": float(y), "r": radius_px / 128.0}
    raise RuntimeError("could not place a nodule")  # pragma: no cover


def _dome(x: np.ndarray, p: dict[str, Any], side: int) -> np.ndarray:
    """Diaphragm height under lung ``side``: highest mid-lung, falling off to both sides."""
    cx = (-1 if side == 0 else 1) * p["lung_x"]
    top = p["dome_r"] if side == 0 else p["dome_l"]
    return top + p["dome_h"] * ((x - cx) / p["lung_ax"]) ** 2


def _lung_value(x: np.ndarray, y: np.ndarray, p: dict[str, Any], side: int) -> np.ndarray:
    """Signed depth inside a lung field (>0 inside): a pear-shaped outline cut by the dome."""
    sgn = -1.0 if side == 0 else 1.0
    cx = sgn * p["lung_x"]
    bottom = max(p["dome_r"], p["dome_l"]) + p["dome_h"] + 0.12
    cy = 0.5 * (p["lung_top"] + bottom)
    ay = 0.5 * (bottom - p["lung_top"])
    # narrow apex, wide base; the medial border is straighter than the lateral one
    grow = np.clip((y - p["lung_top"]) / (2 * ay), 0.0, 1.0)
    ax = p["lung_ax"] * (0.55 + 0.45 * np.sqrt(grow))
    lateral = sgn * (x - cx) > 0
    ax = np.where(lateral, ax, ax * 0.85)
    outline = 1.0 - np.abs((x - cx) / ax) ** 2.4 - np.abs((y - cy) / ay) ** 2.2
    return np.minimum(outline * 0.35, (_dome(x, p, side) - y) * 1.5)


def _heart_value(x: np.ndarray, y: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    cy = 0.5 * (p["dome_r"] + p["dome_l"]) - 0.35 * p["heart_ry"]
    return 1.0 - ((x - p["heart_x"]) / p["heart_rx"]) ** 2 - ((y - cy) / p["heart_ry"]) ** 2


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Band-limited noise: a ``cells × cells`` random grid upsampled bicubically."""
    from PIL import Image

    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _resize(arr: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(arr.astype(np.float32), mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def generate_case(
    rng: np.random.Generator,
    label: str,
    size: int = 256,
    *,
    lesion_contrast: float = DEFAULT_LESION_CONTRAST,
    style: str | Style = "standard",
    patient: dict[str, Any] | None = None,
) -> np.ndarray:
    """One chest radiograph as float32 in 0..1 (display values: bone bright, air dark).

    ``patient`` (from `sample_patient`) fixes the anatomy and lesion so that follow-up images
    of the same patient look alike; without it a new patient is drawn.
    """
    st = STYLES[style] if isinstance(style, str) else style
    p = patient if patient is not None else sample_patient(rng, label)
    if p["label"] != label:
        raise ValueError(f"patient is {p['label']!r}, asked for {label!r}")

    # positioning of this exposure: body coordinates of every pixel. The anatomy is smooth,
    # so it is rendered at half resolution and upsampled; noise is added at full resolution.
    full = size
    size = max(size // 2, 32)
    lin = (np.arange(size, dtype=np.float32) + 0.5) / (size / 2.0) - 1.0
    gx, gy = np.meshgrid(lin, lin)
    scale = rng.uniform(*st.fov)
    angle = np.deg2rad(rng.normal(0.0, st.rotation_deg / 2.0))
    dx, dy = rng.normal(0.0, st.shift, size=2)
    ca, sa, dx, dy = float(np.cos(angle)), float(np.sin(angle)), float(dx), float(dy)
    x = ((gx - dx) * ca + (gy - dy) * sa) / scale  # float32 throughout: 2-4x faster
    y = (-(gx - dx) * sa + (gy - dy) * ca) / scale + 0.06
    ax_ = np.abs(x)
    q = dict(p)
    inspiration = rng.normal(0.0, 0.02)
    q["dome_r"] = p["dome_r"] + inspiration
    q["dome_l"] = p["dome_l"] + inspiration

    # soft tissue: denser in the middle (longer path); neck and sloping shoulders on top,
    # arms' soft tissue at the far sides
    shoulder = -0.95 + 0.5 * np.clip(ax_ - 0.2, 0, None) ** 1.5
    body = _smoothstep((q["body_w"] - ax_) / 0.08) * _smoothstep((y - shoulder) / 0.12)
    arms = _smoothstep((ax_ - q["body_w"] - 0.02) / 0.06) * _smoothstep((y + 0.6) / 0.3)
    arms *= _smoothstep((1.15 - ax_) / 0.05)
    thickness = np.sqrt(np.clip(1.0 - (x / (q["body_w"] + 0.05)) ** 2, 0.0, 1.0))
    dens = 0.05 + body * q["tissue"] * (0.5 + 0.5 * thickness) + 0.35 * arms

    # lungs: aerated (darker); more air apically and laterally
    lungs = np.zeros_like(x)
    for side in (0, 1):
        lungs = np.maximum(lungs, _smoothstep(_lung_value(x, y, q, side) / 0.1 + 0.15))
    heart = _smoothstep(_heart_value(x, y, q) / 0.25 + 0.2)
    medi_w = q["medi_w"] * (1.0 + 0.35 * np.clip(y + 0.3, 0, None))
    mediastinum = _smoothstep((medi_w - ax_) / 0.06 + 0.5) * _smoothstep((y + 0.95) / 0.2)
    aer = q["aeration"] * (0.85 + 0.3 * np.clip(0.3 - y, 0, 1) * np.clip(ax_ / 0.6, 0, 1))
    air = lungs * aer * (1.0 - 0.8 * np.maximum(heart, mediastinum))
    dens -= air
    dens += 0.05 * np.maximum(heart, mediastinum)
    if q["gas_bubble"]:  # stomach gas under the left dome (image right)
        gcy = q["dome_l"] + 0.14
        gb = ((x - q["lung_x"] + 0.02) / 0.1) ** 2 + ((y - gcy) / 0.055) ** 2
        dens -= 0.12 * _smoothstep((1.0 - gb) / 0.6)

    # spine: vertebral bodies faintly through the mediastinum
    spine = _smoothstep((0.07 - ax_) / 0.03) * (0.5 + 0.5 * np.cos(y * np.pi / 0.09) ** 2)
    dens += 0.04 * spine * body

    # ribs: posterior ones arc from the spine out and down, anterior ones fainter; their
    # contrast is highest over the lungs
    u = np.clip(ax_ - 0.05, 0.0, None)
    cage = _smoothstep((q["body_w"] - 0.05 - ax_) / 0.06) * _smoothstep((ax_ - 0.05) / 0.05)
    cage *= 0.35 + 0.65 * lungs
    ribs = np.zeros_like(x)
    for i in range(11):
        y0 = q["lung_top"] - 0.12 + i * q["rib_gap"] + q["rib_phase"]
        centre = y0 - 0.2 * u + q["rib_curve"] * u * u
        d = np.abs(y - centre) / (0.02 + 0.008 * i / 10)
        ribs += np.exp(-d * d) + 0.5 * np.exp(-((d - 1.0) ** 2) * 6)  # brighter cortex
    for i in range(6):
        y0 = q["lung_top"] + 0.05 + i * q["rib_gap"] * 1.1
        centre = y0 + 0.45 * np.clip(0.9 - ax_, 0, None) - 0.15
        d = (y - centre) / 0.03
        ribs += 0.4 * np.exp(-d * d) * _smoothstep((ax_ - 0.15) / 0.1)
    dens += 0.045 * ribs * cage

    # clavicles: S-shaped bands from the sternum to the shoulders
    for sgn in (-1.0, 1.0):
        t = np.clip((sgn * x - 0.06) / 0.62, 0.0, 1.0)
        centre = q["lung_top"] + 0.02 - 0.1 * t + 0.06 * np.sin(np.pi * t)
        d = (y - centre) / 0.032
        inside = _smoothstep((sgn * x - 0.04) / 0.04) * _smoothstep((0.7 - sgn * x) / 0.06)
        dens += 0.1 * np.exp(-d * d) * inside

    # lung markings: vessels thickest at the hila, fading to the periphery
    nrng = np.random.default_rng(q["seed"])
    markings = 0.6 * _smooth_noise(nrng, size, 20) + 0.4 * _smooth_noise(nrng, size, 44)
    hilum = np.exp(-(((ax_ - 0.2) / 0.22) ** 2) - ((y - 0.0) / 0.35) ** 2)
    dens += st.texture * lungs * (np.abs(markings) * 0.8 + 0.6 * hilum)

    # lesions
    for nod in q["nodules"]:
        rr = np.sqrt((x - nod["x"]) ** 2 + (y - nod["y"]) ** 2)
        blob = 1.0 / (1.0 + np.exp(np.minimum((rr - nod["r"]) / (0.2 * nod["r"]), 30.0)))
        dens += lesion_contrast * blob * rng.uniform(0.85, 1.0)
    eff = q["effusion"]
    if eff is not None:
        side = eff["side"]
        sx = -1.0 if side == 0 else 1.0
        cx = sx * q["lung_x"]
        lateral = np.clip(sx * (x - cx) / q["lung_ax"], -1.0, 1.0) * 0.5 + 0.5  # 0 med, 1 lat
        angle_y = _dome(np.array(cx + sx * q["lung_ax"]), q, side)  # costophrenic angle
        level = angle_y - eff["height"] * (1.0 + eff["meniscus"] * lateral**2)
        fluid = _smoothstep((y - level) / 0.04) * (sx * x > 0.05)
        fluid *= 0.75 + 0.25 * _smoothstep((y - level) / 0.15)
        side_lung = _smoothstep(_lung_value(x, y, q, side) / 0.1 + 0.15)
        # fluid replaces air: never brighter than the soft tissue around it
        dens += np.minimum(1.2 * lesion_contrast * side_lung, air) * fluid

    # acquisition: exposure curve, heel effect, noise, collimation
    if full != size:
        dens = _resize(dens, full)
        lin = (np.arange(full, dtype=np.float32) + 0.5) / (full / 2.0) - 1.0
        gx, gy = np.meshgrid(lin, lin)
    v = np.clip(dens, 0.0, 1.0) ** rng.uniform(*st.gamma)
    v = (v - 0.45) * rng.uniform(*st.contrast) + 0.45 + rng.uniform(*st.brightness)
    heel_dir = rng.normal(size=2)
    heel_dir /= np.linalg.norm(heel_dir) + 1e-9
    v += st.heel * 0.5 * (gx * float(heel_dir[0]) + gy * float(heel_dir[1]))
    v += st.noise * np.sqrt(np.clip(v, 0.02, 1.0)) * rng.standard_normal(v.shape, np.float32)
    v += st.grain * rng.standard_normal(v.shape, np.float32)
    if st.collimation and rng.random() < st.collimation:
        edge = rng.uniform(0.86, 0.96, size=4)
        outside = (gx < -edge[0]) | (gx > edge[1]) | (gy < -edge[2]) | (gy > edge[3])
        v = np.where(outside, 0.85 + 0.05 * v, v)
    return np.clip(v, 0.0, 1.0).astype(np.float32)
