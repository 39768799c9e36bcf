"""Fraud metrics with scikit-learn: ranking quality first, then the operating point.

No torch here: `tl evaluate` computes the same numbers from onnxruntime scores. scikit-learn
is imported inside the functions so that importing the plugin (and `tl predict`) stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

LOW_FPR = 0.01
ALERT_RECALL = 0.9


@dataclass(frozen=True)
class ThresholdRule:
    """How the alert threshold is picked on validation: a target recall, or the lowest
    expected cost ``cost_fp · FP + cost_fn · FN``."""

    cost_fp: float = 1.0
    cost_fn: float = 10.0
    target_recall: float | None = None

    def describe(self) -> str:
        if self.target_recall is not None:
            return f"highest threshold with recall ≥ {self.target_recall:g} on validation"
        return f"lowest validation cost with cost_fp={self.cost_fp:g}, cost_fn={self.cost_fn:g}"


def choose_threshold(scores: np.ndarray, targets: np.ndarray, rule: ThresholdRule) -> float:
    from sklearn import metrics as skm

    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    positives = int(targets.sum())
    if positives == 0 or positives == len(targets):
        return 0.5
    fpr, tpr, thresholds = skm.roc_curve(targets, scores, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if rule.target_recall is not None:
        reached = np.nonzero(tpr >= rule.target_recall)[0]
        return float(thresholds[reached[0]] if len(reached) else thresholds[-1])
    negatives = len(targets) - positives
    cost = rule.cost_fp * fpr * negatives + rule.cost_fn * (1 - tpr) * positives
    return float(thresholds[int(np.argmin(cost))])


def fraud_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict[str, Any]:
    """Average precision, ROC-AUC, recall at 1 % FPR, alerts for 90 % recall, and precision /
    recall / alert rate at ``threshold``. NaN where a split lacks one of the classes."""
    from sklearn import metrics as skm

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    targets = np.asarray(targets).astype(np.int64).reshape(-1)
    positives = int(targets.sum())
    both = 0 < positives < len(targets)
    flagged = scores >= threshold
    out: dict[str, Any] = {
        "average_precision": float(skm.average_precision_score(targets, scores))
        if both
        else float("nan"),
        "roc_auc": float(skm.roc_auc_score(targets, scores)) if both else float("nan"),
        "recall_at_1pct_fpr": recall_at_fpr(scores, targets, LOW_FPR) if both else float("nan"),
        "threshold": float(threshold),
        "precision": float(skm.precision_score(targets, flagged, zero_division=0)),
        "recall": float(skm.recall_score(targets, flagged, zero_division=0))
        if positives
        else float("nan"),
        "alert_rate": float(flagged.mean()) if len(flagged) else 0.0,
        "alerts_for_90pct_recall": alerts_for_recall(scores, targets, ALERT_RECALL),
        "n_rows": len(targets),
        "n_fraud": positives,
        "fraud_rate": positives / max(1, len(targets)),
    }
    return out


def recall_at_fpr(scores: np.ndarray, targets: np.ndarray, max_fpr: float) -> float:
    from sklearn import metrics as skm

    fpr, tpr, _ = skm.roc_curve(targets, scores)
    return float(tpr[fpr <= max_fpr].max())


def alerts_for_recall(scores: np.ndarray, targets: np.ndarray, recall: float) -> int | None:
    """How many top-scored rows an analyst must review to catch ``recall`` of the fraud
    (ties broken pessimistically: all rows with the deciding score count)."""
    positives = int(targets.sum())
    if positives == 0:
        return None
    needed = int(np.ceil(recall * positives))
    order = np.argsort(-scores, kind="stable")
    caught = np.cumsum(targets[order])
    position = int(np.searchsorted(caught, needed))
    deciding = scores[order][position]
    return int(np.sum(scores >= deciding))


def curves(scores: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    from sklearn import metrics as skm

    precision, recall, _ = skm.precision_recall_curve(targets, scores)
    fpr, tpr, _ = skm.roc_curve(targets, scores)
    return {"precision": precision, "recall": recall, "fpr": fpr, "tpr": tpr}
