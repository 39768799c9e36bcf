"""Readers for YOLO, COCO and KITTI layouts into `ImageRecord` lists. No torch.

Every reader validates what it reads and raises `DataError` naming the file (and line), or,
with ``skip_bad``, leaves the item out and records it in ``DetectionSet.skipped``. YOLO is
read here; COCO and KITTI in `coco_reader` and `kitti_reader`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tl.core import DataError

from .coco_reader import coco_json, read_coco
from .kitti_reader import read_kitti
from .records import (
    DetectionSet,
    ImageRecord,
    image_size_of,
    item_name,
    list_images,
    read_text,
    skipped_image,
)

SPLITS = ("train", "val", "test")
COORD_TOLERANCE = 1e-3

__all__ = ["DetectionSet", "detect_layout", "list_images", "read_dataset", "read_text"]


def detect_layout(path: Path) -> str:
    if path.is_file() and path.suffix == ".json":
        return "coco"
    if not path.exists():
        raise DataError("the data path does not exist", path, "check --data")
    if (path / "label_2").is_dir() or (path / "training" / "label_2").is_dir():
        return "kitti"
    if (path / "data.yaml").exists() or (path / "labels").is_dir():
        return "yolo"
    if coco_json(path) is not None:
        return "coco"
    if (path / "images").is_dir() or list_images(path):
        return "yolo"  # images without labels: no objects (predict / unlabelled)
    raise DataError(
        "no images found",
        path,
        "pass a folder with images/ and labels/ (YOLO), a COCO JSON, or KITTI image_2/ label_2/",
    )


def read_dataset(path: Path, skip_bad: bool = False) -> DetectionSet:
    """Read any supported layout; the result has at least one image."""
    layout = detect_layout(path)
    reader: Callable[[Path, bool], DetectionSet] = {
        "yolo": read_yolo,
        "coco": read_coco,
        "kitti": read_kitti,
    }[layout]
    found = reader(path, skip_bad)
    if not found.records:
        raise DataError("the dataset has no usable images", path, "add images (and labels)")
    for index, record in enumerate(found.records):
        record.image_id = index
    return found


# ----------------------------------------------------------------------------- YOLO
def _yolo_names(root: Path) -> tuple[list[str] | None, dict[str, Any]]:
    config_path = root / "data.yaml"
    if not config_path.exists():
        return None, {}
    try:
        config = yaml.safe_load(read_text(config_path)) or {}
    except yaml.YAMLError as exc:
        raise DataError("data.yaml is not valid YAML", config_path, "fix its syntax") from exc
    if not isinstance(config, dict):
        raise DataError("data.yaml is not a mapping", config_path, "write names: [car, ...]")
    names = config.get("names")
    if isinstance(names, dict):
        try:
            ids = sorted(names, key=int)
        except (TypeError, ValueError):
            ids = None
        if ids is None or [int(k) for k in ids] != list(range(len(ids))):
            raise DataError(
                "data.yaml names must be a list or a mapping of class ids 0, 1, … without gaps",
                config_path,
                "write names: [car, ...]",
            )
        names = [str(names[k]) for k in ids]
    elif isinstance(names, list):
        names = [str(n) for n in names]
    else:
        raise DataError("data.yaml has no 'names' list", config_path, "add names: [car, ...]")
    return names, config


def _yolo_split_folders(root: Path, config: dict[str, Any]) -> dict[str, Path]:
    base = root / str(config.get("path", "")) if config.get("path") else root
    folders = {}
    for split in SPLITS:
        entry = config.get(split)
        if isinstance(entry, str) and (base / entry).is_dir():
            folders[split] = base / entry
        elif (root / "images" / split).is_dir():
            folders[split] = root / "images" / split
    return folders


def yolo_label_path(image: Path) -> Path:
    """YOLO's rule: the last ``images`` folder in the path becomes ``labels``, suffix .txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def parse_yolo_label(
    label_path: Path, width: int, height: int, n_classes: int | None
) -> tuple[np.ndarray, np.ndarray]:
    boxes, labels = [], []
    for line_no, line in enumerate(read_text(label_path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label_path}:{line_no}"
        if len(fields) != 5:
            raise DataError(
                f"expected 5 fields 'class cx cy w h', got {len(fields)}", where, "fix the line"
            )
        try:
            cls = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError as exc:
            raise DataError("a label field is not a number", where, "fix the line") from exc
        if cls < 0 or (n_classes is not None and cls >= n_classes):
            raise DataError(
                f"unknown class id {cls} (the data has {n_classes} classes)",
                where,
                "fix the id or add the class to data.yaml names",
            )
        coords = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        if not np.all(np.isfinite(coords)) or w <= 0 or h <= 0:
            raise DataError("a box has no area or is not finite", where, "fix the line")
        if coords.min() < -COORD_TOLERANCE or coords.max() > 1 + COORD_TOLERANCE:
            raise DataError(
                "box coordinates are outside the image (YOLO labels are normalised to 0..1)",
                where,
                "fix the line or re-export the labels",
            )
        boxes.append(coords.clip(0, 1) * [width, height, width, height])
        labels.append(cls)
    return (
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
    )


def read_yolo(root: Path, skip_bad: bool = False) -> DetectionSet:
    names, config = _yolo_names(root)
    folders = _yolo_split_folders(root, config)
    if folders:
        images = [(split, p) for split, folder in folders.items() for p in list_images(folder)]
    else:
        folder = root / "images" if (root / "images").is_dir() else root
        images = [(None, p) for p in list_images(folder)]
    if names is None:
        names = _infer_yolo_names([yolo_label_path(p) for _, p in images])
    records, skipped = [], []
    for split, image in images:
        try:
            width, height = image_size_of(image)
            label_path = yolo_label_path(image)
            boxes, labels = (
                parse_yolo_label(label_path, width, height, len(names))
                if label_path.exists()
                else (np.zeros((0, 4), np.float32), np.zeros((0,), np.int64))
            )
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append(skipped_image(item_name(image, root), image, exc))
            continue
        records.append(
            ImageRecord(
                image, width, height, boxes, labels, item=item_name(image, root), split=split
            )
        )
    return DetectionSet(records, names, "yolo", skipped, has_splits=bool(folders))


def _infer_yolo_names(label_paths: list[Path]) -> list[str]:
    """Without data.yaml, classes are named by id (``class0`` …) up to the largest id seen."""
    largest = -1
    for path in label_paths:
        if path.exists():
            for line in read_text(path).splitlines():
                fields = line.split()
                if fields and fields[0].isdigit():
                    largest = max(largest, int(fields[0]))
    return [f"class{i}" for i in range(largest + 1)]
