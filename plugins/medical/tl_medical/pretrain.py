"""`tl pretrain medical`: SimCLR on a folder of unlabelled scans, or supervised pretraining
on a labelled source folder/manifest; both through `tl.core.image_pretrain`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tl.core import ConfigError, DataError, image_pretrain_task

from .dataset_index import scan
from .loading import DEFAULT_IMAGE_SIZE, load_dataset, parse_window
from .preprocess import to_model_input
from .readers import is_image_path, read_image


def unlabelled_files(path: Path) -> list[Path]:
    """Every readable image under ``path`` (any folder structure; a CSV manifest's paths)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError("data path not found", path, "check --data: a folder of images")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(
                "--data is a single file", path, "pass a folder of images or a CSV manifest"
            )
        return [Path(p) for p in scan(path).frame["path"]]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and is_image_path(p)
    )
    if not files:
        raise DataError(
            "no images found", path, "pass a folder with PNG/JPEG/TIFF/BMP/DICOM files (any depth)"
        )
    return files


def read_unlabelled(path: Path, options: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    window = parse_window(options.get("window"))
    size = int(options.get("image_size") or DEFAULT_IMAGE_SIZE)
    skipped: list[str] = []
    decoded = []
    for file in unlabelled_files(path):
        try:
            decoded.append(read_image(file, window=window)[0])
        except DataError as exc:
            if not options.get("skip_bad"):
                raise
            skipped.append(f"{file.name}: {exc.what}")
    if not decoded:
        raise DataError("no readable image", path, "check the files")
    channels = options.get("channels") or ("3" if any(p.ndim == 3 for p in decoded) else "1")
    images = np.stack([to_model_input(p, size, int(channels)) for p in decoded])
    info = {
        "images": len(decoded),
        "channels": int(channels),
        "image_size": size,
        "skipped": len(skipped),
        "skipped_items": skipped[:50],
    }
    return torch.from_numpy(images), info


def pretrain_task(spec: Any, path: Path, options: dict[str, Any]) -> Any:
    method = options.get("method") or "simclr"
    if method not in ("simclr", "supervised"):
        raise ConfigError(f"unknown --method '{method}'", "--method", "use simclr or supervised")
    metadata = {"plugin": "medical", "window": options.get("window")}
    seed = int(options.get("seed") or 0)
    if method == "simclr":
        images, info = read_unlabelled(Path(path), options)
        return image_pretrain_task(
            spec,
            images,
            method="simclr",
            val_fraction=float(options.get("val_fraction") or 0.1),
            seed=seed,
            temperature=float(options.get("ssl_temperature") or 0.2),
            metadata=metadata,
            info=info,
        )
    data = load_dataset(Path(path), {**options, "augment": False})
    train_images = torch.cat([data.train.images, data.test.images])
    train_targets = torch.cat([data.train.targets, data.test.targets])
    return image_pretrain_task(
        spec,
        train_images,
        method="supervised",
        targets=train_targets,
        labels=data.labels,
        val_images=data.val.images,
        val_targets=data.val.targets,
        seed=seed,
        metadata=metadata,
        info=data.describe(),
    )
