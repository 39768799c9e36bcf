"""Decoded image → model input, shared by training and the torch-free runtime so both
see identical pixels: resize with Pillow (bilinear) and set the channel count."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from tl.core import ConfigError


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``--window CENTER,WIDTH`` → (center, width); None when not given."""
    if not text:
        return None
    try:
        center, width = (float(v) for v in str(text).split(","))
    except ValueError as exc:
        raise ConfigError(
            f"bad window '{text}'", "--window", "use CENTER,WIDTH, e.g. --window 40,400"
        ) from exc
    if not (math.isfinite(center) and math.isfinite(width)):
        raise ConfigError(f"bad window '{text}'", "--window", "use finite numbers CENTER,WIDTH")
    if width <= 0:
        raise ConfigError(
            "window width must be positive", "--window", "use CENTER,WIDTH with WIDTH > 0"
        )
    return center, width


def to_model_input(pixels: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) → uint8 (channels, size, size)."""
    image = Image.fromarray(pixels)
    if channels == 1 and image.mode != "L":
        image = image.convert("L")
    elif channels == 3 and image.mode != "RGB":
        image = image.convert("RGB")
    image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array)
