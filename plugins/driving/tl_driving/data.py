"""`DrivingPlugin.load`: read, split, choose the letterbox canvas, wrap in datasets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import DataError, TLData

from .readers import DetectionSet, read_dataset
from .records import ImageRecord, canvas_size

SPLIT_FRACTIONS = (0.7, 0.15)
MAX_DEFAULT_WIDTH = 640


def assign_splits(found: DetectionSet, seed: int) -> dict[str, list[ImageRecord]]:
    """The data's own split folders when it has them, else a seeded 70/15/15 shuffle."""
    if found.has_splits:
        splits = {s: [r for r in found.records if r.split == s] for s in ("train", "val", "test")}
        if not splits["val"] and splits["test"]:
            splits["val"] = splits["test"]
        return splits
    records = found.records
    if len(records) < 3:
        raise DataError(
            f"only {len(records)} image(s); need at least 3 for train/val/test",
            records[0].path.parent,
            "add images",
        )
    order = np.random.default_rng(seed).permutation(len(records))
    n_val = max(1, round(len(records) * SPLIT_FRACTIONS[1]))
    n_test = max(1, round(len(records) * (1 - sum(SPLIT_FRACTIONS))))
    n_train = len(records) - n_val - n_test
    parts = np.split(order, [n_train, n_train + n_val])
    return {
        s: [records[i] for i in idx] for s, idx in zip(("train", "val", "test"), parts, strict=True)
    }


def choose_canvas(records: list[ImageRecord], image_size: int | None) -> tuple[int, int]:
    """(height, width): width from ``--image-size`` (default: the median image width, ≤ 640)."""
    widths = np.array([r.width for r in records], dtype=np.float64)
    aspect = float(np.median([r.height / r.width for r in records]))
    width = image_size or int(min(MAX_DEFAULT_WIDTH, np.median(widths)))
    return canvas_size(int(width), aspect)


def load_detection_data(path: Path, options: Mapping[str, Any]) -> TLData:
    """`tl run` / `tl pretrain` data (``skip_bad``, ``seed`` and ``image_size`` of ``options``)."""
    from .dataset import DetectionDataset, collate

    found = read_dataset(path, bool(options["skip_bad"]))
    if not found.labels:
        raise DataError("no classes found in the labels", path, "add data.yaml with names")
    splits = assign_splits(found, int(options["seed"]))
    if not splits["train"]:
        raise DataError("the training split is empty", path, "add images to the train split")
    canvas = choose_canvas(found.records, options["image_size"])
    counts = Counter(found.labels[int(c)] for r in found.records for c in r.labels)
    frame = pd.DataFrame(
        [(r.item, s, len(r.boxes)) for s, rs in splits.items() for r in rs],
        columns=["item", "split", "n_objects"],
    )
    info = {
        "layout": found.layout,
        "classes": found.labels,
        "objects_per_class": {name: counts.get(name, 0) for name in found.labels},
        "images_without_objects": int(sum(len(r.boxes) == 0 for r in found.records)),
        "ignore_regions": int(sum(len(r.ignore) for r in found.records)),
        "canvas": canvas,
        "skipped": len(found.skipped),
        "skipped_items": [f"{s.item}: {s.reason}" for s in found.skipped[:20]],
    }
    return TLData(
        train=DetectionDataset(splits["train"], canvas, augment=True),
        val=DetectionDataset(splits["val"], canvas),
        test=DetectionDataset(splits["test"], canvas),
        splits=frame,
        labels=found.labels,
        task="detection",
        info=info,
        collate=collate,
    )
