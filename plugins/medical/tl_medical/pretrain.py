"""`tl pretrain medical`: SimCLR on a folder of unlabelled scans, or supervised pretraining
on a labelled source folder/manifest; both through `tl.core.image_pretrain`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tl.core import ConfigError, DataError, image_pretrain_task

from .dataset_index import scan
from .loading import load_dataset
from .options import MedicalOptions
from .preprocess import parse_window, to_model_input
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


def read_unlabelled(path: Path, options: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    window = parse_window(options["window"])
    size = int(options["image_size"])
    skipped: list[str] = []
    decoded = []
    for file in unlabelled_files(path):
        try:
            decoded.append(read_image(file, window=window)[0])
        except DataError as exc:
            if not options["skip_bad"]:
                raise
            skipped.append(f"{file.name}: {exc.what}")
    if not decoded:
        raise DataError("no readable image", path, "check the files")
    channels = options["channels"] or ("3" if any(p.ndim == 3 for p in decoded) else "1")
    images = np.stack([to_model_input(p, size, int(channels)) for p in decoded])
    info = {
        "images": len(decoded),
        "channels": int(channels),
        "image_size": size,
        "skipped": len(skipped),
        "skipped_items": skipped[:50],
    }
    return torch.from_numpy(images), info


def pretrain_task(spec: Any, path: Path, options: Mapping[str, Any]) -> Any:
    """``options``: the resolved `tl pretrain medical` config (`MedicalPretrainOptions`)."""
    method = options["method"]
    if method not in ("simclr", "supervised"):  # a caller's dict, not the checked CLI choice
        raise ConfigError(f"unknown --method '{method}'", "--method", "use simclr or supervised")
    metadata = {"plugin": "medical", "window": options["window"]}
    seed = int(options["seed"])
    if method == "simclr":
        images, info = read_unlabelled(Path(path), options)
        return image_pretrain_task(
            spec,
            images,
            method="simclr",
            val_fraction=float(options["val_fraction"]),
            seed=seed,
            temperature=float(options["ssl_temperature"]),
            metadata=metadata,
            info=info,
        )
    data = load_dataset(
        Path(path),
        image_size=options["image_size"],
        window=options["window"],
        channels=options["channels"],
        val_fraction=options["val_fraction"],
        test_fraction=MedicalOptions().test_fraction,  # merged into training below
        seed=seed,
        skip_bad=options["skip_bad"],
        augment=False,
    )
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
