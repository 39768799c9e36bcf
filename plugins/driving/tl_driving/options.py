"""Options of `tl run driving`, `tl pretrain driving` and `tl predict/evaluate` on its models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click
from tl.core import POSITIVE, FiniteRange, option


@dataclass(frozen=True)
class DrivingOptions:
    image_size: int | None = option(
        None, "Letterbox width in pixels, a multiple of 32 (default: median image width).",
        type=click.IntRange(min=32),
    )  # fmt: skip
    max_det: int = option(100, "Detections kept per image.", type=click.IntRange(min=1))
    score_threshold: float = option(0.05, "Lowest score kept.", type=FiniteRange(0, 1))
    nms_iou: float = option(
        0.6, "IoU above which NMS suppresses.", type=FiniteRange(0, 1, min_open=True)
    )
    head_channels: int = option(64, "FPN/head width.", type=click.IntRange(min=1))
    head_depth: int = option(
        2, "Conv blocks per head tower (torchvision's FCOS has 4).", type=click.IntRange(1, 8)
    )
    baseline: bool = option(
        True, "Also train torchvision's FCOS on the same backbone, split, canvas and epochs, "
        "scored by the same COCO evaluator (`baseline` in metrics.json, a column in the report).",
        flag=True,
    )  # fmt: skip


@dataclass(frozen=True)
class DrivingPretrainOptions:
    method: str = option(
        "auto", "simclr: self-supervised on every image under --data (labels ignored); "
        "supervised: detection on a labelled dataset; auto: supervised when --data has labels "
        "(YOLO labels/ or data.yaml, COCO JSON, KITTI), else simclr.",
        type=click.Choice(["auto", "simclr", "supervised"]),
    )  # fmt: skip
    image_size: int | None = option(
        None, "Letterbox width, a multiple of 32; use the same for `tl run`.",
        type=click.IntRange(min=32),
    )  # fmt: skip
    ssl_temperature: float = option(0.2, "simclr: NT-Xent temperature.", type=POSITIVE)
    head_channels: int = option(64, "supervised: FPN/head width.", type=click.IntRange(min=1))
    head_depth: int = option(
        2, "supervised: conv blocks per head tower; use the same for `tl run`.",
        type=click.IntRange(1, 8),
    )  # fmt: skip


@dataclass(frozen=True)
class DrivingPredictOptions:
    score_threshold: float | None = option(
        None, "Lowest score listed (default: tl predict — the threshold chosen on the run's "
        "validation split, the best F1 at IoU 0.5, stored in the ONNX metadata; tl evaluate — "
        "every detection the model returns, as mAP needs).",
        type=FiniteRange(0, 1),
    )  # fmt: skip
    max_detections: int | None = option(
        None, "At most this many detections per image, the highest-scoring (default: all the "
        "model returns, its max_det).",
        type=click.IntRange(min=1),
    )  # fmt: skip
    draw: str | None = option(
        None, "Also write each image with its boxes into this folder.", type=click.Path()
    )


@dataclass(frozen=True)
class NmsSettings:
    """What the detector's post-processing keeps: it is part of the model (validation mAP
    while training, the exported graph, the report's drawings all use the same values) and
    lands in the ONNX metadata."""

    score_threshold: float
    iou_threshold: float
    max_det: int

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> NmsSettings:
        """From `tl run`'s options; `tl pretrain` has none of them and gets their defaults."""
        run = DrivingOptions()
        return cls(
            score_threshold=float(options.get("score_threshold", run.score_threshold)),
            iou_threshold=float(options.get("nms_iou", run.nms_iou)),
            max_det=int(options.get("max_det", run.max_det)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "max_det": self.max_det,
        }
