"""report.md sections: per-class PR curves (IoU 0.5) and a grid of test images."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tl.core import ReportSection, TLData

from .postprocess import DetectorWithNms
from .runtime import draw_detections

GRID_IMAGES = 8


def plot_class_pr(curves: Mapping[str, Any], per_class: dict[str, Any], path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name, precision in curves.get("precision", {}).items():
        valid = precision > -1
        ap = per_class.get(name)
        label = f"{name} (AP50 {ap:.3f})" if ap is not None else name
        ax.plot(curves["recall"][valid], precision[valid], label=label)
    ax.set(xlabel="recall", ylabel="precision", title="precision–recall at IoU 0.5 (test)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def detection_grid(model: Any, data: TLData, path: Path) -> str:
    """Test images with true boxes (white) and predictions (class colours, score ≥ 0.3)."""
    from PIL import Image

    dataset = data.test
    count = min(GRID_IMAGES, len(dataset))
    images, targets = zip(*(dataset[i] for i in range(count)), strict=True)
    wrapped = DetectorWithNms(model, data.info["canvas"]).eval()
    with torch.inference_mode():
        detections = wrapped(torch.stack(images).to(next(model.parameters()).device)).cpu()
    tiles = []
    for image, target, rows in zip(images, targets, detections.numpy(), strict=True):
        tile = Image.fromarray(image.permute(1, 2, 0).numpy())
        tiles.append(np.asarray(draw_detections(tile, rows, data.labels, target["boxes"].numpy())))
    cols = min(4, count)
    rows_n = int(np.ceil(count / cols))
    height, width = tiles[0].shape[:2]
    canvas = np.zeros((rows_n * height, cols * width, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[r * height : (r + 1) * height, c * width : (c + 1) * width] = tile
    scale = max(1, 640 // (cols * width))
    Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale)).save(path)
    return path.name


def report_sections(
    run_dir: Path,
    metrics: dict[str, Any],
    data: TLData,
    model: Any,
    curves: Mapping[str, Any] | None,
) -> list[ReportSection]:
    """Per-class AP50 with the test PR ``curves`` (from `DrivingPlugin.finalize`), and a grid
    of test images drawn with ``model``'s own post-processing."""
    per_class = metrics.get("per_class_ap50", {})
    table = ["| class | AP50 |", "|---|---:|"]
    table += [f"| {k} | {'n/a' if v is None else f'{v:.4f}'} |" for k, v in per_class.items()]
    images = []
    if curves:
        images.append(plot_class_pr(curves, per_class, run_dir / "pr_curves.png"))
    sections = [
        ReportSection(
            "Detection quality",
            f"COCO mAP50 **{metrics.get('map50', 0):.4f}**, mAP50-95 "
            f"**{metrics.get('map50_95', 0):.4f}** (faster_coco_eval via torchmetrics).\n\n"
            + "\n".join(table),
            images,
        )
    ]
    if len(data.test):
        grid = detection_grid(model, data, run_dir / "test_detections.png")
        sections.append(
            ReportSection(
                "Test images",
                "True boxes in white, predictions (score ≥ 0.3) in class colours.",
                [grid],
            )
        )
    return sections
