"""Classification metrics with scikit-learn (numpy only: usable from the torch-free runtime)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence (equal-width bins, weighted by bin size)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1:
        probs = np.stack([1 - probs, probs], axis=1)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(targets)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def choose_threshold(
    scores: np.ndarray, targets: np.ndarray, target_sensitivity: float | None = None
) -> float:
    """Binary decision threshold: Youden's J on the ROC curve, or the highest threshold
    reaching ``target_sensitivity``."""
    from sklearn.metrics import roc_curve

    targets = np.asarray(targets)
    if len(np.unique(targets)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(targets, scores)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if target_sensitivity is not None:
        ok = np.nonzero(tpr >= target_sensitivity)[0]
        return float(thresholds[ok[0]]) if len(ok) else float(thresholds[-1])
    return float(thresholds[np.argmax(tpr - fpr)])


def classification_metrics(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    multilabel: bool = False,
    threshold: float | None = None,
    per_class: bool = True,
) -> dict[str, Any]:
    """accuracy, balanced accuracy, macro F1, macro AUROC, ECE, per-class report and the
    confusion matrix; binary tasks add sensitivity/specificity at ``threshold``.

    ``probs``: (N, C) probabilities; ``targets``: (N,) class indices, or (N, C) 0/1 when
    ``multilabel``. ``per_class=False`` leaves out the per-class report (per-epoch
    validation keeps only scalars).
    """
    import sklearn

    # tl's own arrays: sklearn's per-call parameter checks cost more than the metrics here
    with sklearn.config_context(skip_parameter_validation=True):
        out = _classification_metrics(probs, targets, labels, multilabel, threshold, per_class)
    if not per_class:
        del out["per_class"]
    return out


def _classification_metrics(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    multilabel: bool,
    threshold: float | None,
    per_class: bool,
) -> dict[str, Any]:
    from sklearn import metrics as skm

    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    n_classes = len(labels)
    if multilabel:
        predicted = (probs >= (0.5 if threshold is None else threshold)).astype(int)
        out: dict[str, Any] = {
            "accuracy": float(skm.accuracy_score(targets, predicted)),
            "macro_f1": float(skm.f1_score(targets, predicted, average="macro", zero_division=0)),
            "auroc": _safe_auroc(targets, probs, average="macro"),
            "per_class": _report(targets, predicted, labels) if per_class else None,
        }
        out["balanced_accuracy"] = float(
            np.mean(
                [
                    skm.balanced_accuracy_score(targets[:, c], predicted[:, c])
                    for c in range(n_classes)
                ]
            )
        )
        out["ece"] = float(
            np.mean(
                [expected_calibration_error(probs[:, c], targets[:, c]) for c in range(n_classes)]
            )
        )
        return out

    binary = n_classes == 2
    if binary:
        threshold = 0.5 if threshold is None else float(threshold)
        predicted = (probs[:, 1] >= threshold).astype(int)
    else:
        predicted = probs.argmax(axis=1)
    out = {
        "accuracy": float(skm.accuracy_score(targets, predicted)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(targets, predicted)),
        "macro_f1": float(
            skm.f1_score(
                targets, predicted, average="macro", labels=range(n_classes), zero_division=0
            )
        ),
        "auroc": _safe_auroc(
            targets, probs[:, 1] if binary else probs, multi_class=not binary, n_classes=n_classes
        ),
        "ece": expected_calibration_error(probs, targets),
        "per_class": _report(targets, predicted, labels) if per_class else None,
        "confusion_matrix": skm.confusion_matrix(
            targets, predicted, labels=range(n_classes)
        ).tolist(),
    }
    if binary:
        tn, fp, fn, tp = np.asarray(out["confusion_matrix"]).ravel()
        out["sensitivity"] = float(tp / (tp + fn)) if tp + fn else float("nan")
        out["specificity"] = float(tn / (tn + fp)) if tn + fp else float("nan")
        out["threshold"] = threshold
    return out


def _report(targets: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict[str, Any]:
    from sklearn.metrics import classification_report

    multilabel = np.asarray(targets).ndim == 2
    return (
        classification_report(
            targets,
            predicted,
            labels=list(range(len(labels))),
            target_names=labels,
            output_dict=True,
            zero_division=0,
        )
        if not multilabel
        else classification_report(
            targets, predicted, target_names=labels, output_dict=True, zero_division=0
        )
    )


def _safe_auroc(
    targets, scores, multi_class: bool = False, n_classes: int = 2, average: str = "macro"
) -> float:
    from sklearn.metrics import roc_auc_score

    try:
        if multi_class:
            present = np.unique(targets)
            if len(present) < n_classes:  # macro over the classes present, one-vs-rest
                return float(np.mean([roc_auc_score(targets == c, scores[:, c]) for c in present]))
            return float(roc_auc_score(targets, scores, multi_class="ovr", average=average))
        return float(roc_auc_score(targets, scores, average=average))
    except ValueError:
        return math.nan


def classification_report_markdown(per_class: dict[str, Any]) -> str:
    """The seed's classification report as a markdown table."""
    lines = ["| class | precision | recall | f1-score | support |", "|---|---:|---:|---:|---:|"]
    for name, row in per_class.items():
        if name == "accuracy":
            lines.append(f"| accuracy | | | {row:.3f} | |")
            continue
        lines.append(
            f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1-score']:.3f} | {int(row['support'])} |"
        )
    return "\n".join(lines)
