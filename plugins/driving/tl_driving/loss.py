"""FCOS target assignment and losses (focal, GIoU, centre-ness) from torchvision ops.

A location is positive for a box when it lies in the box's centre region (1.5 strides
around the centre) and the box's size fits the location's pyramid level; among several
boxes the smallest wins. Negatives inside an ignore region do not count in the focal loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from .model import STRIDES

CENTER_RADIUS = 1.5
LEVEL_REACH = 4  # a level takes boxes whose largest ltrb distance is up to 4 strides


def size_ranges(strides: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) of the largest regression distance each location is responsible for."""
    low = torch.zeros_like(strides)
    high = torch.full_like(strides, float("inf"))
    for i, stride in enumerate(STRIDES):
        level = strides == stride
        if i > 0:
            low[level] = LEVEL_REACH * STRIDES[i - 1]
        if i < len(STRIDES) - 1:
            high[level] = LEVEL_REACH * stride
    return low, high


def assign(
    points: torch.Tensor,
    strides: torch.Tensor,
    boxes: torch.Tensor,
    ignore: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For one image: matched box index per location (-1 none), its box (N, 4), and a
    mask of locations that count for classification (not ignored negatives)."""
    n = len(points)
    counted = torch.ones(n, dtype=torch.bool, device=points.device)
    if len(ignore):
        inside_ignore = _inside(points, ignore).any(1)
        counted &= ~inside_ignore
    if not len(boxes):
        return torch.full((n,), -1, device=points.device), points.new_zeros(n, 4), counted
    x, y = points[:, 0:1], points[:, 1:2]
    ltrb = torch.stack(
        [x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], -1
    )  # (N, G, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    radius = strides[:, None] * CENTER_RADIUS
    near_centre = ((x - centre[:, 0]).abs() < radius) & ((y - centre[:, 1]).abs() < radius)
    reach = ltrb.max(-1).values
    low, high = size_ranges(strides)
    fits = (reach >= low[:, None]) & (reach <= high[:, None])
    candidate = (ltrb.min(-1).values > 0) & near_centre & fits
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = torch.where(candidate, area[None, :], torch.full_like(reach, float("inf")))
    best_area, match = area.min(1)
    match = torch.where(torch.isfinite(best_area), match, torch.full_like(match, -1))
    matched_boxes = boxes[match.clamp(min=0)]
    counted |= match >= 0
    return match, matched_boxes, counted


def _inside(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    x, y = points[:, 0:1], points[:, 1:2]
    return (x > boxes[:, 0]) & (x < boxes[:, 2]) & (y > boxes[:, 1]) & (y < boxes[:, 3])


def centerness_target(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    left, top = points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1]
    right, bottom = boxes[:, 2] - points[:, 0], boxes[:, 3] - points[:, 1]
    lr = torch.minimum(left, right) / torch.maximum(left, right)
    tb = torch.minimum(top, bottom) / torch.maximum(top, bottom)
    return (lr * tb).clamp(min=0).sqrt()


def decode(points: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """ltrb distances (…, 4) around ``points`` → xyxy boxes."""
    return torch.cat([points - distances[..., :2], points + distances[..., 2:]], -1)


def detection_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    points: torch.Tensor,
    strides: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Focal (per positive), GIoU weighted by centre-ness, and centre-ness BCE; and total."""
    logits, distances, centers = (o.float() for o in outputs)
    cls_losses, box_terms, weights, ctr_terms = [], [], [], []
    num_pos = 0
    for i, target in enumerate(targets):
        match, matched, counted = assign(points, strides, target["boxes"], target["ignore"])
        positive = match >= 0
        labels = torch.zeros_like(logits[i])
        if positive.any():
            labels[positive, target["labels"][match[positive]]] = 1.0
        cls_losses.append(sigmoid_focal_loss(logits[i][counted], labels[counted], reduction="sum"))
        num_pos += int(positive.sum())
        if positive.any():
            pred_boxes = decode(points[positive], distances[i][positive])
            weight = centerness_target(points[positive], matched[positive])
            box_terms.append(
                generalized_box_iou_loss(pred_boxes, matched[positive], reduction="none") * weight
            )
            weights.append(weight)
            ctr_terms.append(
                F.binary_cross_entropy_with_logits(centers[i][positive], weight, reduction="sum")
            )
    normaliser = max(num_pos, 1)
    cls_loss = torch.stack(cls_losses).sum() / normaliser
    if box_terms:
        box_loss = torch.cat(box_terms).sum() / torch.cat(weights).sum().clamp(min=1e-6)
        ctr_loss = torch.stack(ctr_terms).sum() / normaliser
    else:
        box_loss = ctr_loss = distances.sum() * 0.0 + centers.sum() * 0.0
    return {
        "cls": cls_loss,
        "box": box_loss,
        "centerness": ctr_loss,
        "loss": cls_loss + box_loss + ctr_loss,
    }
