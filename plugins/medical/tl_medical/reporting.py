"""Medical sections of report.md: classification report, confusion matrix, ROC, calibration, Grad-CAM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tl.core import Fitted, ReportSection

GRADCAM_IMAGES = 8


def report_sections(
    run_dir: Path, metrics: dict[str, Any], data: Any, model: Any, fitted: Fitted
) -> list[ReportSection]:
    """``metrics``: the run's metrics.json; ``fitted``: what `fit_calibration` returned."""
    from tl.core import classification_report_markdown, plot_confusion_matrix, plot_roc_curves

    sections = []
    table = classification_report_markdown(metrics["per_class"])
    lines = [table, ""]
    if "sensitivity" in metrics:
        lines.append(
            f"Binary decision at threshold {metrics['threshold']:.3f} ({metrics.get('threshold_rule')}): "
            f"sensitivity {metrics['sensitivity']:.3f}, specificity {metrics['specificity']:.3f}."
        )
    sections.append(ReportSection("Classification report (test)", "\n".join(lines)))

    images = []
    probs = np.asarray(fitted.artifacts["test_probs"])
    targets = data.test.targets.numpy()
    if "confusion_matrix" in metrics:
        images.append(
            plot_confusion_matrix(
                metrics["confusion_matrix"], data.labels, run_dir / "confusion_matrix.png"
            )
        )
    images.append(plot_roc_curves(probs, targets, data.labels, run_dir / "roc.png"))
    sections.append(ReportSection("Confusion matrix and ROC", "", images))

    sections.append(
        ReportSection(
            "Calibration",
            f"Temperature {metrics['temperature']:.3f} fitted on validation (stored in the ONNX model). "
            f"Expected calibration error on test: {metrics['ece_uncalibrated']:.4f} before, "
            f"{metrics['ece_calibrated']:.4f} after temperature scaling.",
        )
    )
    gradcam = _gradcam_section(run_dir, data, model)
    if gradcam is not None:
        sections.append(gradcam)
    return sections


def _gradcam_section(run_dir: Path, data: Any, model: Any) -> ReportSection | None:
    from tl.core import grad_cam, plot_image_grid

    count = min(GRADCAM_IMAGES, len(data.test))
    images = data.test.images[:count]
    try:
        heatmaps = grad_cam(model.cpu(), images)
    except (
        AttributeError,
        RuntimeError,
        TypeError,
    ) as exc:  # exotic backbones without forward_head
        return ReportSection(
            "Grad-CAM", f"Grad-CAM is not available for this backbone ({type(exc).__name__})."
        )
    import torch

    with torch.inference_mode():
        predicted = model(images).argmax(dim=1).tolist()
    targets = data.test.targets[:count]
    panels, titles = [], []
    for index in range(count):
        gray = images[index].float().mean(dim=0).numpy() / 255.0
        overlay = np.stack([gray] * 3, axis=-1) * 0.6
        overlay[..., 0] += 0.4 * heatmaps[index]
        panels.append(np.clip(overlay, 0, 1))
        truth = (
            "|".join(n for n, t in zip(data.labels, targets[index].tolist(), strict=True) if t)
            if data.multilabel
            else data.labels[int(targets[index])]
        )
        titles.append(f"true {truth} / pred {data.labels[predicted[index]]}")
    name = plot_image_grid(panels, titles, run_dir / "gradcam.png")
    return ReportSection(
        "Grad-CAM (test images)", "Red: regions that raised the predicted class's score.", [name]
    )
