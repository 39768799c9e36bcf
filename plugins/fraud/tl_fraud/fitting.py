"""What a trained fraud model's run fits and reports, as values (no state on the plugin/data).

`fit` turns the model's validation and test outputs into one `tl.core.Fitted`: the alert
threshold chosen on validation (``export``: it lands in the ONNX metadata and decides
test_predictions.csv's alerts), the test metrics at that threshold side by side with the
gradient-boosting baseline (``metrics``), and the scores the report plots (``artifacts``).
Every model of a run (main, ``--compare-scratch``, distillation student …) gets its own.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
from tl.core import Fitted

from .metrics import choose_threshold, fraud_metrics

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

RANKING_KEYS = ("average_precision", "roc_auc", "recall_at_1pct_fpr")
VAL_KEYS = (*RANKING_KEYS, "threshold")


def gather(outputs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(scores, 0/1 targets) of a split from its ``predict_step`` results."""
    scores = np.concatenate([np.asarray(o["score"], dtype=np.float64).reshape(-1) for o in outputs])
    targets = np.concatenate([np.asarray(o["target"]).reshape(-1) for o in outputs])
    return scores, targets.astype(np.int64)


def split_metrics(outputs: list[dict[str, Any]], rule: Any, split: str) -> dict[str, Any]:
    """Monitoring metrics of one split. Validation: ranking metrics and the threshold the
    rule picks on it. Other splits: ranking metrics only — their threshold-dependent
    figures exist only at the validation threshold, which `fit` chooses."""
    scores, targets = gather(outputs)
    if split != "val":
        result = fraud_metrics(scores, targets, 0.5)
        return {key: result[key] for key in RANKING_KEYS}
    result = fraud_metrics(scores, targets, choose_threshold(scores, targets, rule))
    return {key: result[key] for key in VAL_KEYS}


def fit(model: Any, data: Any, outputs: dict[str, list[Any]]) -> Fitted:
    """The fitted values of ``model`` (see the module docstring)."""
    from .baseline import baseline_for  # scikit-learn: not on the runtime's import path

    val_scores, val_targets = gather(outputs["val"])
    threshold = choose_threshold(val_scores, val_targets, data.rule)
    test_scores, test_targets = gather(outputs["test"])
    metrics = fraud_metrics(test_scores, test_targets, threshold)
    metrics["threshold_rule"] = data.rule.describe()
    baseline = baseline_for(data)
    metrics["baseline"] = dict(baseline.metrics)
    transfer = copy.deepcopy(getattr(model, "transfer", None))
    if transfer:
        metrics["transfer"] = transfer
    return Fitted(
        metrics=metrics,
        export={"threshold": threshold},
        artifacts={
            "test_scores": _read_only(test_scores),
            "test_targets": _read_only(test_targets),
            "baseline_test_scores": baseline.scores["test"],
            "transfer": copy.deepcopy(transfer),
        },
    )


def predictions(outputs: list[Any], rows: np.ndarray, threshold: float) -> pd.DataFrame:
    """test_predictions.csv: the input file's row, target, probability and the alert at the
    fitted ``threshold`` (the one in metrics.json and the ONNX metadata)."""
    import pandas as pd

    scores, targets = gather(outputs)
    return pd.DataFrame(
        {"row": rows, "target": targets, "fraud_probability": scores, "alert": scores >= threshold}
    )


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array
