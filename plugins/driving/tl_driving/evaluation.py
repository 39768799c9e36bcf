"""COCO mAP through torchmetrics (training) — AP50 per class and PR curves from its
extended summary. The runtime (no torch) uses `tl_driving.coco_eval` with the same
faster_coco_eval backend, so both report the same numbers."""

from __future__ import annotations

import math
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


#: the threshold when validation has no object to match (`tl predict`'s drawing default)
FALLBACK_THRESHOLD = 0.3


def _image_hits(rows: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[list, list]:
    """(scores, hit) of one image's detections, best first, each matched greedily to an
    unmatched true box of its class at IoU ≥ 0.5; a miss inside an ignore region (half of
    the detection in it) is left out, as COCO's crowd boxes are."""
    from torchvision.ops import box_area, box_iou

    rows = rows[rows[:, 5] >= 0]
    rows = rows[rows[:, 4].argsort(descending=True)]
    boxes, labels = target["boxes"].float(), target["labels"]
    ious = box_iou(rows[:, :4], boxes) if len(boxes) else torch.zeros(len(rows), 0)
    ignore = target["ignore"].float()
    covered = torch.zeros(len(rows), dtype=torch.bool)
    if len(ignore) and len(rows):
        lt = torch.maximum(rows[:, None, :2], ignore[None, :, :2])
        rb = torch.minimum(rows[:, None, 2:4], ignore[None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)
        covered = (inter / box_area(rows[:, :4]).clamp(min=1e-6)[:, None] >= 0.5).any(1)
    taken = torch.zeros(len(boxes), dtype=torch.bool)
    scores, hits = [], []
    for index, row in enumerate(rows):
        candidates = ious[index].clone()
        candidates[(labels != int(row[5])) | taken] = 0.0
        if len(candidates) and float(candidates.max()) >= 0.5:
            taken[int(candidates.argmax())] = True
            scores.append(float(row[4]))
            hits.append(True)
        elif not covered[index]:
            scores.append(float(row[4]))
            hits.append(False)
    return scores, hits


def f1_threshold(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The score threshold with the best F1 at IoU 0.5 over ``outputs`` (the validation
    split): `tl predict`'s default. Returns the threshold, its precision, recall and F1."""
    scores, hits, n_true = [], [], 0
    for out in outputs:
        for rows, target in zip(out["detections"], out["targets"], strict=True):
            image_scores, image_hits = _image_hits(rows.float(), target)
            scores += image_scores
            hits += image_hits
            n_true += len(target["boxes"])
    if not n_true or not any(hits):
        return {"threshold": FALLBACK_THRESHOLD, "f1": None, "precision": None, "recall": None}
    order = np.argsort(-np.asarray(scores), kind="stable")
    ranked, found = np.asarray(scores)[order], np.asarray(hits)[order]
    tp, fp = np.cumsum(found), np.cumsum(~found)
    last = np.r_[ranked[1:] != ranked[:-1], True]  # a threshold keeps every tie
    f1 = np.where(last, 2 * tp / (n_true + tp + fp), -1.0)
    best = int(np.argmax(f1))
    return {
        "threshold": math.floor(float(ranked[best]) * 1e4) / 1e4,  # ≤ the score it keeps
        "f1": round(float(f1[best]), 4),
        "precision": round(float(tp[best] / (tp[best] + fp[best])), 4),
        "recall": round(float(tp[best] / n_true), 4),
    }
