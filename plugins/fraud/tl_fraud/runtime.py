"""`tl predict` / `tl evaluate` for fraud models: onnxruntime only, no torch.

The table is encoded with the schema stored in the model's metadata (vocabularies, column
kinds, datetime parts); scaling and imputation then happen inside the ONNX graph.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import DataError, OnnxModel

from .metrics import fraud_metrics
from .readers import parse_target, read_table, require_column
from .schema import TableSchema

BATCH_ROWS = 65536


def schema_of(model: OnnxModel) -> TableSchema:
    if model.meta.get("plugin") != "fraud" or "schema" not in model.meta:
        raise DataError(
            f"this is not a fraud model (plugin '{model.meta.get('plugin')}')",
            model.path,
            "pass a run directory made by `tl run fraud`",
        )
    return TableSchema.from_dict(model.meta["schema"])


def score_frame(
    model: OnnxModel, frame: pd.DataFrame, where: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Fraud probability per row, and the unseen-category counts per column."""
    numeric, categorical, unseen = schema_of(model).encode(frame, where)
    scores = []
    for start in range(0, len(frame), BATCH_ROWS):
        feeds = {
            "numeric": numeric[start : start + BATCH_ROWS],
            "categorical": categorical[start : start + BATCH_ROWS],
        }
        scores.append(model.run(feeds)["probability"].reshape(-1))
    return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32), unseen


def warn_unseen(unseen: dict[str, int], stream: Any = None) -> None:
    stream = stream or sys.stderr
    for column, count in unseen.items():
        print(
            f"warning: {count} value(s) of '{column}' were not seen in training; scored as unknown",
            file=stream,
        )


def predict_table(model: OnnxModel, path: Path) -> pd.DataFrame:
    frame = read_table(Path(path))
    scores, unseen = score_frame(model, frame, str(path))
    warn_unseen(unseen)
    meta = model.meta
    keep = [
        c
        for c in (*meta["schema"].get("id_columns", []), meta.get("time_column"))
        if c and c in frame.columns
    ]
    out = frame[keep].copy() if keep else pd.DataFrame({"row": np.arange(len(frame))})
    threshold = float(meta.get("threshold", 0.5))
    out["fraud_probability"] = scores
    out["alert"] = scores >= threshold
    return out


def evaluate_table(model: OnnxModel, path: Path, options: dict[str, Any]) -> dict[str, Any]:
    frame = read_table(Path(path))
    meta = model.meta
    target = options.get("target") or meta.get("target")
    require_column(frame, target, "--target")
    labels, _ = parse_target(frame[target], options.get("positive") or meta.get("positive_label"))
    known = labels >= 0
    scores, unseen = score_frame(model, frame.loc[known], str(path))
    warn_unseen(unseen)
    metrics = fraud_metrics(scores, labels[known], float(meta.get("threshold", 0.5)))
    metrics["rows_without_label"] = int((~known).sum())
    metrics["unseen_categories"] = unseen
    return metrics
