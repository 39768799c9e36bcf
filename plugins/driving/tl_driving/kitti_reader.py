"""KITTI object labels (``image_2/``, ``label_2/``) → `ImageRecord` lists.

Classes keep KITTI's own order (others found are appended sorted); ``DontCare`` boxes are
ignore regions. A bad label is a `DataError` naming file and line, or, with ``skip_bad``, a
skipped image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tl.core import DataError

from .records import (
    DetectionSet,
    ImageRecord,
    image_size_of,
    item_name,
    list_images,
    read_text,
    skipped_image,
)

# KITTI's object classes in its own order; others found in the labels are appended sorted.
KITTI_CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc")
KITTI_IGNORE = "DontCare"


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
            skipped.append(skipped_image(item_name(image, root), image, exc))
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
                item=item_name(image, root),
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
