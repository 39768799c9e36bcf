"""What a medical run fits on validation after training: temperature and binary threshold.

`fit_calibration` is a pure function of the model's outputs: its result is a new
`tl.core.Fitted`, so several models of one plugin object never share fitted values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tl.core import (
    Fitted,
    choose_threshold,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    sigmoid,
    softmax,
)


def gather(outputs: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(logits as float64, targets) of a split's ``predict_step`` results."""
    logits = np.concatenate([o["logits"].numpy() for o in outputs]).astype(np.float64)
    targets = np.concatenate([o["targets"].numpy() for o in outputs])
    return logits, targets


def probabilities(logits: np.ndarray, multilabel: bool, temperature: float = 1.0) -> np.ndarray:
    return sigmoid(logits, temperature) if multilabel else softmax(logits, temperature)


def split_metrics(
    outputs: list[Any], labels: list[str], multilabel: bool, per_class: bool = True
) -> dict[str, Any]:
    """Uncalibrated metrics of one split (validation monitoring, the raw test metrics)."""
    logits, targets = gather(outputs)
    probs = probabilities(logits, multilabel)
    return classification_metrics(probs, targets, labels, multilabel, per_class=per_class)


def fit_calibration(
    outputs: dict[str, list[Any]],
    labels: list[str],
    multilabel: bool,
    target_sensitivity: float | None,
) -> Fitted:
    """Temperature scaling and (binary) the decision threshold, both fitted on validation
    only; ``metrics``: the calibrated test metrics, ``export``: temperature and threshold
    (in the ONNX metadata), ``artifacts``: the calibrated test probabilities (read-only)."""
    val_logits, val_targets = gather(outputs["val"])
    test_logits, test_targets = gather(outputs["test"])
    temperature = fit_temperature(val_logits, val_targets, multilabel=multilabel)
    val_probs = probabilities(val_logits, multilabel, temperature)
    test_probs = probabilities(test_logits, multilabel, temperature)
    threshold = None
    if len(labels) == 2 and not multilabel:
        threshold = choose_threshold(val_probs[:, 1], val_targets, target_sensitivity)
    metrics = classification_metrics(
        test_probs, test_targets, labels, multilabel=multilabel, threshold=threshold
    )
    metrics["ece_uncalibrated"] = split_metrics(outputs["test"], labels, multilabel)["ece"]
    metrics["ece_calibrated"] = (
        float(
            np.mean(
                [
                    expected_calibration_error(test_probs[:, c], test_targets[:, c])
                    for c in range(len(labels))
                ]
            )
        )
        if multilabel
        else metrics["ece"]
    )
    metrics["temperature"] = temperature
    metrics["threshold_rule"] = _threshold_rule(threshold, target_sensitivity)
    test_probs.setflags(write=False)
    return Fitted(
        metrics=metrics,
        export={"temperature": temperature, "threshold": threshold},
        artifacts={"test_probs": test_probs},
    )


def _threshold_rule(threshold: float | None, target_sensitivity: float | None) -> str | None:
    if threshold is None:
        return None
    if target_sensitivity:
        return f"sensitivity ≥ {target_sensitivity}"
    return "Youden's J on validation"
