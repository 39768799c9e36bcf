"""Readers for YOLO, COCO and KITTI layouts into `ImageRecord` lists. No torch.

Every reader validates what it reads and raises `DataError` naming the file (and line), or,
with ``skip_bad``, leaves the item out and counts it in ``DetectionSet.skipped``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tl.core import DataError

from .records import IMAGE_SUFFIXES, ImageRecord, image_size_of

SPLITS = ("train", "val", "test")
# KITTI's object classes in its own order; others found in the labels are appended sorted.
KITTI_CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc")
KITTI_IGNORE = "DontCare"
COORD_TOLERANCE = 1e-3


@dataclass
class DetectionSet:
    """What a reader found: labelled images, class names, and what it had to skip."""

    records: list[ImageRecord]
    labels: list[str]
    layout: str
    skipped: list[str] = field(default_factory=list)
    has_splits: bool = False


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def detect_layout(path: Path) -> str:
    if path.is_file() and path.suffix == ".json":
        return "coco"
    if not path.exists():
        raise DataError("the data path does not exist", path, "check --data")
    if (path / "label_2").is_dir() or (path / "training" / "label_2").is_dir():
        return "kitti"
    if (path / "data.yaml").exists() or (path / "labels").is_dir():
        return "yolo"
    if _coco_json(path) is not None:
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


def read_text(path: Path) -> str:
    """A label / config file as text: UTF-8 (a BOM is allowed), else a `DataError`."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})", path, "save it as UTF-8"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror})", path, "check it") from None


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
            skipped.append(exc.line())
            continue
        records.append(
            ImageRecord(image, width, height, boxes, labels, item=_item(image, root), split=split)
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


def _item(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root if root.is_dir() else root.parent).as_posix()
    except ValueError:
        return path.as_posix()


# ----------------------------------------------------------------------------- COCO
def _coco_json(root: Path) -> Path | None:
    candidates = sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
    for candidate in candidates:
        try:
            head = candidate.read_text()[:4096]
        except OSError:
            continue
        if '"images"' in head or '"annotations"' in head or '"categories"' in head:
            return candidate
    return None


def read_coco(path: Path, skip_bad: bool = False) -> DetectionSet:
    json_path = path if path.is_file() else _coco_json(path)
    if json_path is None:
        raise DataError("no COCO annotation JSON found", path, "pass the JSON file with --data")
    try:
        coco = json.loads(read_text(json_path))
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        images = coco["images"]
        annotations = coco.get("annotations", [])
        _check_coco(categories, images, annotations)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        detail = f": {exc}" if isinstance(exc, ValueError) and not isinstance(
            exc, json.JSONDecodeError) else ""  # fmt: skip
        raise DataError(
            f"not a COCO detection JSON (needs images, annotations, categories){detail}",
            json_path,
            "check the file",
        ) from exc
    index_of = {c["id"]: i for i, c in enumerate(categories)}
    image_root = _coco_image_root(json_path, images)
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for ann in annotations:
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    records, skipped = [], []
    for image in images:
        file = image_root / image["file_name"]
        try:
            width, height = image_size_of(file) if file.exists() else _missing(file)
            boxes, labels, ignore = _coco_boxes(
                by_image.get(image["id"], []), index_of, json_path, width, height
            )
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append(exc.line())
            continue
        record = ImageRecord(file, width, height, boxes, labels, ignore, item=image["file_name"])
        records.append(record)
    return DetectionSet(records, [str(c["name"]) for c in categories], "coco", skipped)


def _check_coco(categories: Any, images: Any, annotations: Any) -> None:
    """Structure only (ValueError/TypeError → 'not a COCO detection JSON'); values later."""
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise ValueError("images and annotations must be lists")
    for c in categories:
        if not isinstance(c, dict) or not isinstance(c.get("name"), (str, int)):
            raise ValueError("every category needs an id and a name")
    if len({c["id"] for c in categories}) != len(categories):
        raise ValueError("category ids repeat")
    for image in images:
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
            raise ValueError("every image needs an id and a file_name")
        if "id" not in image or not image["file_name"] or "\x00" in image["file_name"]:
            raise ValueError("every image needs an id and a file_name")
    for ann in annotations:
        if not isinstance(ann, dict):
            raise ValueError("every annotation must be an object")
        hash(ann.get("image_id"))  # TypeError for a list / dict id


def _missing(file: Path) -> tuple[int, int]:
    raise DataError(
        "image listed in the COCO JSON is missing", file, "restore it or use --skip-bad"
    )


def _coco_image_root(json_path: Path, images: list[dict[str, Any]]) -> Path:
    first = images[0]["file_name"] if images else ""
    for candidate in (
        json_path.parent,
        json_path.parent / "images",
        json_path.parent.parent / "images",
    ):
        if (candidate / first).exists():
            return candidate
    return json_path.parent


def _coco_boxes(
    annotations: list[dict[str, Any]],
    index_of: dict[Any, int],
    where: Path,
    width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes, labels, ignore = [], [], []
    for ann in annotations:
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"annotation {ann.get('id')} has no bbox [x, y, width, height] of 4 numbers",
                where,
                "fix its bbox",
            ) from None
        box = [x, y, x + w, y + h]
        if (
            not np.all(np.isfinite(box))
            or x < -1
            or y < -1
            or x + w > width + 1
            or y + h > height + 1
        ):
            raise DataError(
                f"annotation {ann.get('id')} has a box {ann['bbox']} that is not finite or "
                f"outside the {width}x{height} image",
                where,
                "fix its bbox",
            )
        box = [max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)]
        if ann.get("iscrowd"):
            ignore.append(box)
            continue
        category = ann.get("category_id")
        if not isinstance(category, (int, str)) or category not in index_of:
            raise DataError(
                f"annotation {ann.get('id')} has unknown category_id {category!r}",
                where,
                "add the category to 'categories' or fix the annotation",
            )
        if w <= 0 or h <= 0:
            raise DataError(f"annotation {ann.get('id')} has an empty box", where, "fix its bbox")
        boxes.append(box)
        labels.append(index_of[category])
    return (
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(ignore, np.float32).reshape(-1, 4),
    )


# ----------------------------------------------------------------------------- KITTI
def read_kitti(root: Path, skip_bad: bool = False) -> DetectionSet:
    base = root / "training" if (root / "training" / "label_2").is_dir() else root
    images = list_images(base / "image_2")
    parsed, skipped = [], []
    for image in images:
        label_path = base / "label_2" / f"{image.stem}.txt"
        try:
            width, height = image_size_of(image)
            objects = _parse_kitti(label_path, width, height) if label_path.exists() else []
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append(exc.line())
            continue
        parsed.append((image, width, height, objects))
    seen = {name for *_, objects in parsed for name, _ in objects if name != KITTI_IGNORE}
    names = [c for c in KITTI_CLASSES if c in seen] + sorted(seen - set(KITTI_CLASSES))
    index_of = {name: i for i, name in enumerate(names)}
    records = []
    for image, width, height, objects in parsed:
        boxes = [b for name, b in objects if name != KITTI_IGNORE]
        labels = [index_of[name] for name, _ in objects if name != KITTI_IGNORE]
        ignore = [b for name, b in objects if name == KITTI_IGNORE]
        records.append(
            ImageRecord(
                image,
                width,
                height,
                np.asarray(boxes, np.float32).reshape(-1, 4),
                np.asarray(labels, np.int64),
                np.asarray(ignore, np.float32).reshape(-1, 4),
                item=_item(image, root),
            )
        )
    return DetectionSet(records, names, "kitti", skipped)


def _parse_kitti(label_path: Path, width: int, height: int) -> list[tuple[str, list[float]]]:
    objects = []
    for line_no, line in enumerate(read_text(label_path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label_path}:{line_no}"
        if len(fields) not in (15, 16):
            raise DataError(f"expected 15 KITTI fields, got {len(fields)}", where, "fix the line")
        try:
            x1, y1, x2, y2 = (float(v) for v in fields[4:8])
        except ValueError as exc:
            raise DataError("a KITTI box field is not a number", where, "fix the line") from exc
        if not np.all(np.isfinite([x1, y1, x2, y2])):
            raise DataError("a KITTI box field is not finite", where, "fix the line")
        if fields[0] != KITTI_IGNORE and (
            x2 <= x1 or y2 <= y1 or x1 < -1 or y1 < -1 or x2 > width + 1 or y2 > height + 1
        ):
            raise DataError(
                f"box ({x1}, {y1}, {x2}, {y2}) is empty or outside the {width}x{height} image",
                where,
                "fix the line",
            )
        objects.append((fields[0], [max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)]))
    return objects
