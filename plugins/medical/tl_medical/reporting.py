"""Medical sections of report.md: classification report, confusion matrix, ROC, calibration, Grad-CAM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tl.core import Fitted, ReportSection

GRADCAM_IMAGES = 8
MAX_GRADCAM_IMAGES = 32  # more classes than this: the first 32 are shown
GRADCAM_CMAP = "jet"
CORRECT, WRONG = "tab:green", "tab:red"


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
    gradcam = _gradcam_section(run_dir, data, model, fitted)
    if gradcam is not None:
        sections.append(gradcam)
    return sections


def predicted_classes(probs: np.ndarray, multilabel: bool, threshold: float | None) -> np.ndarray:
    """The decision `test_predictions.csv` shows: multi-label (N, L) 0/1 at 0.5; binary at the
    fitted threshold; else the argmax (N,)."""
    probs = np.asarray(probs)
    if multilabel:
        return (probs >= 0.5).astype(int)
    if probs.shape[1] == 2 and threshold is not None:
        return (probs[:, 1] >= threshold).astype(int)
    return probs.argmax(axis=1)


def gradcam_samples(
    truth: np.ndarray, predicted: np.ndarray, multilabel: bool, budget: int = GRADCAM_IMAGES
) -> list[int]:
    """Test indices for the Grad-CAM grid, deterministic (the first in test order): for every
    class a correct and a wrong prediction where the test set has one, then other images up
    to ``budget``. Coverage comes first: each class gets one image before any gets two.
    Multi-label: a class's images are those that have it; correct means the whole label set;
    images with no label form one more group. Returned grouped by class, correct first."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    if multilabel:
        correct = (truth == predicted).all(axis=1)
        groups = [np.flatnonzero(truth[:, c]) for c in range(truth.shape[1])]
        groups.append(np.flatnonzero(truth.sum(axis=1) == 0))
    else:
        correct = truth == predicted
        groups = [np.flatnonzero(truth == c) for c in range(int(truth.max(initial=-1)) + 1)]
    chosen: dict[int, tuple[int, bool]] = {}

    def first(members: np.ndarray, want: bool) -> int | None:
        return next((int(i) for i in members if correct[i] == want and i not in chosen), None)

    for group, members in enumerate(groups):  # one per class: a correct one if any
        index = first(members, True)
        index = first(members, False) if index is None else index
        if index is not None and len(chosen) < budget:
            chosen[index] = (group, bool(correct[index]))
    for group, members in enumerate(groups):  # the other kind
        kinds = {ok for g, ok in chosen.values() if g == group}
        for want in (True, False):
            index = first(members, want) if want not in kinds else None
            if index is not None and len(chosen) < budget:
                chosen[index] = (group, want)
    for index in range(len(truth)):
        if len(chosen) >= budget:
            break
        chosen.setdefault(index, (len(groups), bool(correct[index])))
    return sorted(chosen, key=lambda i: (chosen[i][0], not chosen[i][1], i))


def _names(labels: list[str], row: Any, multilabel: bool) -> str:
    if multilabel:
        return (
            "|".join(n for n, t in zip(labels, np.asarray(row).tolist(), strict=True) if t)
            or "none"
        )
    return labels[int(row)]


def _gradcam_section(run_dir: Path, data: Any, model: Any, fitted: Fitted) -> ReportSection | None:
    import matplotlib
    import torch
    from tl.core import grad_cam, plot_image_grid

    if not len(data.test):
        return None
    probs = np.asarray(fitted.artifacts["test_probs"])
    truth = data.test.targets.numpy()
    predicted = predicted_classes(probs, data.multilabel, fitted.export.get("threshold"))
    budget = min(MAX_GRADCAM_IMAGES, max(GRADCAM_IMAGES, len(data.labels)))
    chosen = gradcam_samples(truth, predicted, data.multilabel, budget)
    images = data.test.images[chosen]
    explained = probs[chosen].argmax(axis=1) if data.multilabel else predicted[chosen]
    try:
        heatmaps = grad_cam(model.cpu(), images, torch.as_tensor(explained, dtype=torch.long))
    except (AttributeError, RuntimeError, TypeError) as exc:  # backbones without forward_head
        return ReportSection(
            "Grad-CAM", f"Grad-CAM is not available for this backbone ({type(exc).__name__})."
        )
    colormap = matplotlib.colormaps[GRADCAM_CMAP]
    panels, titles, colours = [], [], []
    for k, index in enumerate(chosen):
        gray = images[k].float().mean(dim=0).numpy() / 255.0
        heat = colormap(heatmaps[k])[..., :3]
        panels.append(np.clip(0.55 * gray[..., None] + 0.45 * heat, 0, 1))
        ok = bool(np.all(truth[index] == predicted[index]))
        titles.append(
            f"true {_names(data.labels, truth[index], data.multilabel)}\n"
            f"pred {_names(data.labels, predicted[index], data.multilabel)} "
            f"({'correct' if ok else 'wrong'})"
        )
        colours.append(CORRECT if ok else WRONG)
    name = plot_image_grid(
        panels,
        titles,
        run_dir / "gradcam.png",
        title="Grad-CAM on test images (every class; correct and wrong predictions)",
        title_colors=colours,
        legend={"correct prediction": CORRECT, "wrong prediction": WRONG},
        colorbar=(GRADCAM_CMAP, "influence on the explained class's score"),
    )
    explained_what = "the highest-scoring label" if data.multilabel else "the predicted class"
    return ReportSection(
        "Grad-CAM (test images)",
        f"Warm colours: regions that raised the score of {explained_what}. For every class, "
        "the first correctly and the first wrongly predicted test image (where there is one).",
        [name],
    )
