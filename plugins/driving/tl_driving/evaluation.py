"""COCO mAP through torchmetrics (training) — AP50 per class and PR curves from its
extended summary. The runtime (no torch) uses `tl_driving.coco_eval` with the same
faster_coco_eval backend, so both report the same numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics.detection import MeanAveragePrecision

BACKEND = "faster_coco_eval"


def split_detections(detections: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Padded ``(B, max_det, 6)`` → torchmetrics prediction dicts (padding dropped)."""
    preds = []
    for rows in detections:
        rows = rows[rows[:, 5] >= 0]
        preds.append({"boxes": rows[:, :4], "scores": rows[:, 4], "labels": rows[:, 5].long()})
    return preds


def metric_targets(targets: list[dict[str, torch.Tensor]], num_classes: int) -> list[dict]:
    """Ignore regions become crowd boxes of every class, COCO's way to ignore detections."""
    out = []
    for target in targets:
        ignore = target["ignore"]
        crowd_boxes = ignore.repeat(num_classes, 1)
        crowd_labels = torch.arange(num_classes).repeat_interleave(len(ignore))
        out.append(
            {
                "boxes": torch.cat([target["boxes"], crowd_boxes]),
                "labels": torch.cat([target["labels"], crowd_labels]),
                "iscrowd": torch.cat(
                    [
                        torch.zeros(len(target["boxes"]), dtype=torch.long),
                        torch.ones(len(crowd_labels), dtype=torch.long),
                    ]
                ),
            }
        )
    return out


def detection_metrics(
    outputs: list[dict[str, Any]], labels: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, curves): map50, map50_95, per_class_ap50; curves hold PR arrays per class."""
    metric = MeanAveragePrecision(
        box_format="xyxy", iou_type="bbox", backend=BACKEND, extended_summary=True
    )
    for out in outputs:
        metric.update(
            split_detections(out["detections"]), metric_targets(out["targets"], len(labels))
        )
    result = metric.compute()
    precision = result["precision"].numpy()  # (iou, recall, class, area, max_det)
    classes = [int(c) for c in torch.atleast_1d(result["classes"]).tolist()]
    per_class, curves = {}, {"recall": np.linspace(0, 1, precision.shape[1]), "precision": {}}
    for name_index, name in enumerate(labels):
        if name_index not in classes:
            per_class[name] = None
            continue
        curve = precision[0, :, classes.index(name_index), 0, -1]
        per_class[name] = float(curve[curve > -1].mean()) if (curve > -1).any() else None
        curves["precision"][name] = curve
    metrics = {
        "map50": _clean(result["map_50"]),
        "map50_95": _clean(result["map"]),
        "per_class_ap50": per_class,
    }
    return metrics, curves


def _clean(value: torch.Tensor) -> float:
    """COCO writes -1 when there is nothing to score; report 0 for an empty split."""
    return max(float(value), 0.0)
