"""report.md sections: per-class PR curves (IoU 0.5) and a grid of test images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tl.core import ReportSection, TLData, atomic_path

from .postprocess import DetectorWithNms
from .runtime import COLOURS, DRAW_THRESHOLD

GRID_IMAGES = 8
GRID_COLUMNS = 4
BOXES_PER_IMAGE = 12  # the highest-scoring; more only hide the image


def pr_figure(curves: Mapping[str, Any], per_class: dict[str, Any]) -> Any:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for name, precision in curves.get("precision", {}).items():
        valid = precision > -1
        ap = per_class.get(name)
        label = f"{name} (AP50 {ap:.3f})" if ap is not None else f"{name} (no test objects)"
        ax.plot(curves["recall"][valid], precision[valid], label=label)
    ax.set(xlabel="recall", ylabel="precision", title="Precision–recall per class, IoU 0.5 (test)",
           xlim=(0, 1), ylim=(0, 1.02))  # fmt: skip
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, title="class", title_fontsize=8)
    fig.tight_layout()
    return fig


def plot_class_pr(curves: Mapping[str, Any], per_class: dict[str, Any], path: Path) -> str:
    return _save(pr_figure(curves, per_class), path)


def class_colours(count: int) -> list[tuple[float, float, float]]:
    """`tl predict --draw`'s colours while they are distinct, else matplotlib's tab20."""
    if count <= len(COLOURS):
        return [tuple(v / 255 for v in c) for c in COLOURS[:count]]
    import matplotlib

    return [matplotlib.colormaps["tab20"](i % 20)[:3] for i in range(count)]


def detections_figure(
    images: Sequence[np.ndarray],
    detections: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    labels: Sequence[str],
    threshold: float = DRAW_THRESHOLD,
) -> Any:
    """Images (H, W, 3) uint8 with true boxes (white, dashed) and predicted rows
    ``(x1, y1, x2, y2, score, class)`` at or above ``threshold`` in class colours (at most
    `BOXES_PER_IMAGE` per image, the highest-scoring). Each tile is drawn at least 350 px wide
    whatever the image size; the legend names every class."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    colours = class_colours(len(labels))
    cols = max(1, min(GRID_COLUMNS, len(images)))
    rows_n = int(np.ceil(len(images) / cols))
    height, width = np.asarray(images[0]).shape[:2]
    tile = max(3.2, 8.0 / cols)  # inches; at 110 dpi the figure is ≥ 880 px wide
    fig, axes = plt.subplots(rows_n, cols, figsize=(tile * cols, tile * height / width * rows_n + 1.0),
                             squeeze=False, layout="constrained")  # fmt: skip
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, rows, truth in zip(axes.ravel(), images, detections, truths, strict=False):
        ax.imshow(image)
        ax.set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5))
        for x1, y1, x2, y2 in np.asarray(truth).reshape(-1, 4):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white",
                                   linestyle="--", linewidth=1.2))  # fmt: skip
        rows = np.asarray(rows).reshape(-1, 6)
        rows = rows[rows[:, 4] >= threshold]
        for x1, y1, x2, y2, score, cls in rows[np.argsort(-rows[:, 4])][:BOXES_PER_IMAGE]:
            colour = colours[int(cls) % len(colours)]
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                                   linewidth=1.6))  # fmt: skip
            ax.text(x1, y1, f"{score:.2f}", color=colour, fontsize=8, va="bottom", clip_on=True,
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.8, "linewidth": 0})  # fmt: skip
    handles = [Line2D([], [], color=c, linewidth=3, label=name)
               for name, c in zip(labels, colours, strict=True)]  # fmt: skip
    handles.append(Line2D([], [], color="white", linestyle="--", linewidth=1.5, label="true box"))
    fig.legend(handles=handles, loc="outside lower center", fontsize=9,
               ncol=min(len(handles), 6), facecolor="0.3", labelcolor="white", framealpha=1,
               title=f"predicted class (score ≥ {threshold}, top {BOXES_PER_IMAGE} per image)", title_fontsize=9)  # fmt: skip
    legend = fig.legends[-1]
    legend.get_title().set_color("white")
    fig.suptitle("Test images: true boxes and predictions")
    return fig


def detection_grid(model: Any, data: TLData, path: Path) -> str:
    """The first test images with true boxes and ``model``'s own post-processed detections."""
    dataset = data.test
    count = min(GRID_IMAGES, len(dataset))
    images, targets = zip(*(dataset[i] for i in range(count)), strict=True)
    wrapped = DetectorWithNms(model, data.info["canvas"]).eval()
    with torch.inference_mode():
        detections = wrapped(torch.stack(images).to(next(model.parameters()).device)).cpu()
    fig = detections_figure(
        [image.permute(1, 2, 0).numpy() for image in images],
        list(detections.numpy()),
        [target["boxes"].numpy() for target in targets],
        data.labels,
    )
    return _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
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
            f"**{metrics.get('map50_95', 0):.4f}** (faster_coco_eval via torchmetrics)."
            + _threshold_line(metrics.get("val_f1_at_threshold"))
            + "\n\n"
            + "\n".join(table),
            images,
        )
    ]
    if metrics.get("baseline"):
        sections.append(baseline_section(metrics))
    if len(data.test):
        grid = detection_grid(model, data, run_dir / "test_detections.png")
        sections.append(
            ReportSection(
                "Test images",
                f"True boxes dashed white, predictions (score ≥ {DRAW_THRESHOLD}, at most "
                f"{BOXES_PER_IMAGE} per image) in class colours with their score.",
                [grid],
            )
        )
    return sections


def _cell(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def baseline_section(metrics: Mapping[str, Any]) -> ReportSection:
    """tl's detector next to torchvision's FCOS on the same backbone, split and epochs."""
    base = metrics["baseline"]
    rows = [
        ("test mAP50", metrics.get("map50"), base.get("map50"), 4),
        ("test mAP50-95", metrics.get("map50_95"), base.get("map50_95"), 4),
        ("training seconds", metrics.get("train_seconds"), base.get("train_seconds"), 1),
        ("best epoch", metrics.get("best_epoch"), base.get("best_epoch"), 0),
    ]
    per_class, base_class = metrics.get("per_class_ap50", {}), base.get("per_class_ap50", {})
    rows += [(f"AP50 {name}", v, base_class.get(name), 4) for name, v in per_class.items()]
    table = ["| | tl (this run) | torchvision FCOS |", "|---|---:|---:|"]
    table += [f"| {label} | {_cell(a, d)} | {_cell(b, d)} |" for label, a, b, d in rows]
    ours, theirs = metrics.get("map50") or 0.0, base.get("map50") or 0.0
    verdict = (
        f"tl's detector is ahead by {ours - theirs:+.4f} mAP50"
        if ours >= theirs
        else f"the torchvision baseline is ahead by {theirs - ours:+.4f} mAP50"
    )
    text = (
        f"{base.get('detector', 'torchvision FCOS')}: the same split, canvas, augmentation, "
        "epochs, optimizer and schedule, initial backbone weights and NMS settings, scored by "
        f"the same COCO evaluator. {verdict}. (`--no-baseline` skips it.)\n\n" + "\n".join(table)
    )
    return ReportSection("tl vs torchvision's detector", text)


def _threshold_line(chosen: Mapping[str, Any] | None) -> str:
    if not chosen:
        return ""
    if chosen.get("f1") is None:
        return (f" `tl predict` lists detections scoring ≥ {chosen['threshold']} (validation "
                "had nothing to choose a threshold on).")  # fmt: skip
    return (
        f" `tl predict` lists detections scoring ≥ {chosen['threshold']}: the best F1 at IoU "
        f"0.5 on validation (F1 {chosen['f1']:.3f}, precision {chosen['precision']:.3f}, "
        f"recall {chosen['recall']:.3f}); `--score-threshold` changes it."
    )
