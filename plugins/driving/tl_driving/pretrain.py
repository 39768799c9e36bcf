"""`tl pretrain driving`: SimCLR on a folder of unlabelled road images, or supervised detection
pretraining on a labelled source (e.g. the day scenes).

SimCLR runs through `tl.core.image_pretrain_task` on the plain timm backbone; `tl run driving`
maps those tensors onto the detector's features-only backbone (`backbone_weights`). The
views differ in what a camera on a car changes and a detector must ignore: framing (crop,
scale, mirror image — roads are left/right symmetric, up/down is not, so no vertical flip)
and light (exposure from day to night, contrast, saturation, white balance of street lamps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tl.core import BatchAugment, ConfigError, DataError, image_pretrain_task

from .coco_reader import coco_json
from .data import choose_canvas
from .records import IMAGE_SUFFIXES, ImageRecord, Letterbox, open_image

METHODS = ("auto", "simclr", "supervised")
LUMA = (0.299, 0.587, 0.114)


class SceneAugment(BatchAugment):
    """`BatchAugment`'s crop / mirror / brightness / contrast / noise, then exposure,
    saturation and white-balance jitter per image of a ``[0, 255]`` RGB batch."""

    def __init__(
        self,
        exposure: tuple[float, float] = (0.35, 1.4),
        saturation: float = 0.5,
        white_balance: float = 0.1,
        **base: Any,
    ) -> None:
        settings = {
            "scale": (0.35, 1.0),
            "ratio": (3 / 4, 4 / 3),
            "degrees": 3.0,
            "brightness": 0.1,
            "contrast": 0.3,
            "noise": 3.0,
            "flip": True,
        }
        super().__init__(**{**settings, **base})
        self.exposure, self.saturation, self.white_balance = exposure, saturation, white_balance

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = super().forward(images)
        n, device = x.shape[0], x.device

        def uniform(low: float, high: float, channels: int = 1) -> torch.Tensor:
            return torch.rand(n, channels, 1, 1, device=device) * (high - low) + low

        low, high = (math.log(v) for v in self.exposure)
        gain = uniform(low, high).exp()
        gain = gain * uniform(1 - self.white_balance, 1 + self.white_balance, 3)
        x = x * gain
        gray = (x * torch.tensor(LUMA, device=device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        x = gray + (x - gray) * uniform(1 - self.saturation, 1 + self.saturation)
        return x.clamp(0.0, 255.0)

    def describe(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "ratio": self.ratio,
            "degrees": self.degrees,
            "horizontal_flip": self.flip,
            "exposure": self.exposure,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "saturation": self.saturation,
            "white_balance": self.white_balance,
            "noise": self.noise,
        }


def has_labels(path: Path) -> bool:
    """Whether ``path`` is a labelled detection dataset (what `read_dataset` reads boxes from)."""
    if path.is_file():
        return path.suffix.lower() == ".json"
    return (
        (path / "labels").is_dir()
        or (path / "data.yaml").exists()
        or (path / "label_2").is_dir()
        or (path / "training" / "label_2").is_dir()
        or coco_json(path) is not None
    )


def resolve_method(path: Path, method: str | None) -> str:
    """``auto`` (default): supervised on a labelled dataset, SimCLR on a plain image folder."""
    method = method or "auto"
    if method not in METHODS:
        raise ConfigError(
            f"unknown --method '{method}'", "--method", "use auto, simclr or supervised"
        )
    if method != "auto":
        return method
    return "supervised" if has_labels(path) else "simclr"


def image_files(path: Path) -> list[Path]:
    """Every image under ``path`` at any depth (label files and hidden folders ignored)."""
    if not path.exists():
        raise DataError("the data path does not exist", path, "check --data")
    if not path.is_dir():
        raise DataError(
            "--data is not a folder", path, "pass a folder of images for --method simclr"
        )
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(
            "no images found",
            path,
            "pass a folder with PNG/JPEG/BMP/WebP/TIFF images (any depth)",
        )
    return files


def read_unlabelled(path: Path, options: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """uint8 (N, 3, H, W) letterboxed like `tl run driving` letterboxes (same canvas rule)."""
    decoded, skipped = [], []
    for file in image_files(path):
        try:
            decoded.append((file, open_image(file)))
        except DataError as exc:
            if not options["skip_bad"]:
                raise
            skipped.append(f"{file.name}: {exc.what}")
    if not decoded:
        raise DataError("no readable image", path, "check the files")
    records = [ImageRecord(file, image.width, image.height) for file, image in decoded]
    height, width = choose_canvas(records, options["image_size"])
    images = np.stack(
        [
            Letterbox.fit(image.width, image.height, width, height).apply_image(image)
            for _, image in decoded
        ]
    ).transpose(0, 3, 1, 2)
    info = {
        "images": len(decoded),
        "canvas": [height, width],
        "skipped": len(skipped),
        "skipped_items": skipped[:20],
    }
    return torch.from_numpy(np.ascontiguousarray(images)), info


def simclr_task(spec: Any, path: Path, options: Mapping[str, Any]) -> Any:
    images, info = read_unlabelled(path, options)
    augment = SceneAugment()
    return image_pretrain_task(
        spec,
        images,
        method="simclr",
        seed=int(options["seed"]),
        augment=augment,
        temperature=float(options["ssl_temperature"]),
        metadata={"plugin": "driving", "canvas": info["canvas"]},
        info={**info, "scene_augmentation": augment.describe()},
    )
