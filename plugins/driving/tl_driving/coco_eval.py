"""COCO evaluation without torch (for `tl evaluate`): faster_coco_eval on COCO dicts.

Category ids are class index + 1 (COCO reserves 0), as in `tl predict`'s JSON.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from .records import ImageRecord


def coco_ground_truth(records: list[ImageRecord], labels: list[str]) -> dict[str, Any]:
    images, annotations = [], []
    for record in records:
        images.append({"id": record.image_id, "width": record.width, "height": record.height})
        for box, label in zip(record.boxes, record.labels, strict=True):
            annotations.append(
                _annotation(len(annotations) + 1, record.image_id, box, int(label) + 1, 0)
            )
        for box in record.ignore:  # ignore regions: a crowd box of every class
            for label in range(len(labels)):
                annotations.append(
                    _annotation(len(annotations) + 1, record.image_id, box, label + 1, 1)
                )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(labels)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _annotation(ann_id: int, image_id: int, box: np.ndarray, label: int, crowd: int) -> dict:
    x1, y1, x2, y2 = (float(v) for v in box)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": label,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": (x2 - x1) * (y2 - y1),
        "iscrowd": crowd,
    }


def coco_map(
    ground_truth: dict[str, Any], detections: list[dict[str, Any]], labels: list[str]
) -> dict[str, Any]:
    """map50, map50_95 and per_class_ap50 of COCO-style ``detections``."""
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        if not detections:
            return {"map50": 0.0, "map50_95": 0.0, "per_class_ap50": dict.fromkeys(labels, 0.0)}
        dt = gt.loadRes(detections)
        evaluator = COCOeval_faster(gt, dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # (iou, recall, class, area, max_det)
    per_class: dict[str, float | None] = {}
    for index, name in enumerate(labels):
        curve = precision[0, :, index, 0, -1]
        per_class[name] = float(curve[curve > -1].mean()) if (curve > -1).any() else None
    stats = evaluator.stats
    return {
        "map50": max(float(stats[1]), 0.0),
        "map50_95": max(float(stats[0]), 0.0),
        "per_class_ap50": per_class,
    }
