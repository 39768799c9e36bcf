"""The tl metadata of an exported fraud model: what `tl predict` needs besides the graph."""

from __future__ import annotations

from typing import Any


def export_metadata(data: Any, threshold: float) -> dict[str, Any]:
    """Labels, the fitted alert ``threshold`` and its rule, the target, the schema (column
    kinds, vocabularies) and the input spec of ``data``'s model."""
    schema = data.prepared.schema
    return {
        "labels": ["legit", "fraud"],
        "threshold": float(threshold),
        "threshold_rule": data.rule.describe(),
        "target": data.info.get("target"),
        "positive_label": data.info.get("positive_label"),
        "time_column": data.info.get("time_column"),
        "schema": schema.to_dict(),
        "inputs": {
            "numeric": {"dtype": "float32", "columns": schema.numeric_names, "missing": "NaN"},
            "categorical": {
                "dtype": "int64",
                "columns": schema.categorical_names,
                "codes": "1-based index into the column's vocab; 0 = unknown or missing",
            },
        },
        "preprocessing": "in graph: log1p for skewed columns, median/IQR scaling, clipping, "
        "missing → learned token; outside: category → code via schema vocab, datetime → hour/weekday",
        "output": "probability of fraud",
    }
