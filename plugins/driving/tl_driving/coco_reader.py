"""COCO detection JSON → `ImageRecord` lists (``iscrowd`` boxes become ignore regions).

Every value is validated: a `DataError` names the JSON (and the annotation), or, with
``skip_bad``, the image is left out and counted in `DetectionSet.skipped`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tl.core import DataError

from .records import DetectionSet, ImageRecord, image_size_of, read_text, skipped_image


def coco_json(root: Path) -> Path | None:
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
    json_path = path if path.is_file() else coco_json(path)
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
            skipped.append(skipped_image(image["file_name"], file, exc))
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
