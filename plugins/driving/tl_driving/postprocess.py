"""Decoding and NMS as a module, so ONNX holds the whole detector.

Output: ``(batch, max_det, 6)`` rows ``(x1, y1, x2, y2, score, class)`` in letterboxed
pixels, best first; unused rows are zeros with class -1. The shapes never depend on the
number of detections, and NMS runs once for the whole batch, grouped by
``image * num_classes + class`` so boxes of different images or classes never suppress
each other: the coordinate-offset trick of ``torchvision.ops.batched_nms``, exported as one
NonMaxSuppression node with a dynamic batch.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import nms

from .loss import decode
from .model import Detector, level_points

PRE_NMS_TOP_K = 300


class DetectorWithNms(nn.Module):
    """uint8 images → padded detections; the exported graph."""

    def __init__(
        self,
        detector: Detector,
        image_size: tuple[int, int],
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        max_det: int | None = None,
    ) -> None:
        """Settings not given are the detector's own (`Detector.nms`)."""
        super().__init__()
        own = detector.nms
        self.detector = detector
        self.height, self.width = image_size
        self.score_threshold = own.score_threshold if score_threshold is None else score_threshold
        self.iou_threshold = own.iou_threshold if iou_threshold is None else iou_threshold
        self.max_det = own.max_det if max_det is None else max_det
        points, _ = level_points(self.height, self.width)
        self.register_buffer("points", points, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits, distances, centers = self.detector(images)
        return self.postprocess(logits.float(), distances.float(), centers.float())

    def postprocess(
        self, logits: torch.Tensor, distances: torch.Tensor, centers: torch.Tensor
    ) -> torch.Tensor:
        batch, locations, num_classes = logits.shape
        scores = (logits.sigmoid() * centers.sigmoid().unsqueeze(-1)).sqrt().flatten(1)
        top_k = min(PRE_NMS_TOP_K, locations * num_classes)
        max_det = min(self.max_det, top_k)
        top_scores, index = scores.topk(top_k, dim=1)
        location = torch.div(index, num_classes, rounding_mode="floor")
        classes = index % num_classes
        points = self.points.to(logits.device)
        boxes = decode(
            points[location], torch.gather(distances, 1, location.unsqueeze(-1).expand(-1, -1, 4))
        )
        limits = boxes.new_tensor([self.width, self.height, self.width, self.height])
        boxes = torch.minimum(boxes.clamp(min=0), limits)
        image = torch.arange(batch, device=boxes.device).unsqueeze(1).expand(-1, top_k)
        groups = (image * num_classes + classes).flatten()
        flat = boxes.reshape(-1, 4)
        # batched_nms's own coordinate trick, spelled out: torch.export cannot capture its
        # size-dependent switch to a per-class loop, and this form exports with both exporters
        offsets = groups.to(flat.dtype).unsqueeze(-1) * (flat.max() + 1)
        keep = nms(flat + offsets, top_scores.flatten(), self.iou_threshold)
        kept = torch.zeros(batch * top_k, dtype=top_scores.dtype, device=boxes.device)
        kept = kept.index_fill(0, keep, 1.0).view(batch, top_k)
        kept = kept * (top_scores > self.score_threshold).to(kept.dtype)
        final_scores, order = (top_scores * kept).topk(max_det, dim=1)
        final_boxes = torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 4))
        final_classes = torch.gather(classes, 1, order).to(final_scores.dtype)
        valid = final_scores > 0
        final_classes = torch.where(valid, final_classes, torch.full_like(final_classes, -1.0))
        final_boxes = final_boxes * valid.unsqueeze(-1).to(final_boxes.dtype)
        return torch.cat([final_boxes, final_scores.unsqueeze(-1), final_classes.unsqueeze(-1)], -1)

    def settings(self) -> dict[str, float | int]:
        """The post-processing baked into this graph, as the ONNX metadata records it."""
        return {
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "max_det": self.max_det,
        }
