"""From a file and the flags to encoded, split matrices plus the facts the report shows.

Nothing is dropped silently: rows without a label or with an unparseable timestamp and
columns that cannot be features are counted in ``info["warnings"]``. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import ConfigError

from .options import setting
from .readers import parse_target, parse_time_column, read_table, require_column
from .schema import TableSchema, fit_schema, infer_types
from .splits import assign_splits


@dataclass
class PreparedTable:
    schema: TableSchema
    numeric: np.ndarray
    categorical: np.ndarray
    split: np.ndarray
    labels: np.ndarray | None
    rows: np.ndarray
    positive: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        mask = self.split == name
        labels = None if self.labels is None else self.labels[mask]
        return self.numeric[mask], self.categorical[mask], labels


def column_list(value: Any) -> list[str]:
    """``--drop a,b --drop c`` → [a, b, c]."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def prepare(path: Path, options: Mapping[str, Any], labelled: bool = True) -> PreparedTable:
    """``path`` read, split and encoded. ``labelled`` (`tl run`, supervised `tl pretrain`)
    needs ``target``; unlabelled tables are split into train/val only."""
    target = setting(options, "target")
    if labelled and not target:
        raise ConfigError("no target column given", "--target", "name the 0/1 fraud label column")
    drop = column_list(setting(options, "drop"))
    frame = read_table(Path(path), plain=lambda name: name not in drop)
    warnings: dict[str, int] = {}
    for name in drop:
        require_column(frame, name, "--drop")
    labels, positive = None, None
    keep = np.ones(len(frame), dtype=bool)
    if target:
        require_column(frame, target, "--target")
        labels, positive = parse_target(frame[target], setting(options, "positive"))
        unlabelled = labels < 0
        if unlabelled.any():
            warnings["rows without a label (not used)"] = int(unlabelled.sum())
            keep &= ~unlabelled
    time_column = setting(options, "time_column")
    times = None
    if time_column:
        times, bad = parse_time_column(frame, time_column)
        if bad:
            warnings["rows with an unparseable timestamp (not used)"] = bad
            keep &= times.notna().to_numpy()
    group_column = setting(options, "group_column")
    if group_column:
        require_column(frame, group_column, "--group-column")
    rows = np.nonzero(keep)[0]
    frame = frame.iloc[rows].reset_index(drop=True)
    if times is not None:
        times = times.iloc[rows].reset_index(drop=True)
    if labels is not None:
        labels = labels[rows]
    exclude = {c for c in (target, group_column) if c} | set(drop)
    types, excluded = infer_types(
        frame,
        exclude,
        time_column,
        column_list(setting(options, "categorical")),
        column_list(setting(options, "numeric")),
    )
    for name, reason in excluded.items():
        warnings[f"column '{name}' not used: {reason}"] = 1
    split_labels = labels if labels is not None else np.zeros(len(frame), dtype=np.int64)
    val_fraction = float(setting(options, "val_fraction"))
    test_fraction = float(setting(options, "test_fraction")) if labelled else 0.0
    groups = frame[group_column] if group_column else None
    seed = int(setting(options, "seed"))
    split = _split(split_labels, val_fraction, test_fraction, seed, times, groups, labelled)
    id_columns = [c for c in (*drop, group_column) if c]
    id_columns += [c for c, why in excluded.items() if why.startswith("looks like an identifier")]
    schema = fit_schema(frame[split == "train"], types, excluded, list(dict.fromkeys(id_columns)))
    numeric, categorical, unseen = schema.encode(frame)
    for name, count in unseen.items():
        warnings[f"values of '{name}' outside the training vocabulary (mapped to unknown)"] = count
    all_missing = [
        f.name
        for f in schema.numeric
        if np.isnan(numeric[split == "train", schema.numeric.index(f)]).all()
    ]
    for name in all_missing:
        warnings[f"column '{name}' is empty in the training split"] = 1
    info = {
        "file": str(path),
        "rows_read": int(len(keep)),
        "rows_used": int(len(frame)),
        "target": target,
        "positive_label": positive,
        "time_column": time_column,
        "group_column": group_column,
        "split_rule": _split_rule(time_column, group_column),
        "columns": schema.column_types(),
        "warnings": warnings,
        "splits": _split_counts(split, labels),
    }
    return PreparedTable(schema, numeric, categorical, split, labels, rows, positive, info)


def _split(labels, val_fraction, test_fraction, seed, times, groups, labelled) -> np.ndarray:
    if labelled:
        return assign_splits(labels, val_fraction, test_fraction, seed, times, groups)
    rng = np.random.default_rng(seed)
    if times is not None:
        position = times.rank(method="first").to_numpy() / len(labels)
    else:
        position = rng.random(len(labels))
    return np.where(position <= 1 - val_fraction, "train", "val")


def _split_rule(time_column: str | None, group_column: str | None) -> str:
    if time_column and group_column:
        return f"out-of-time by '{time_column}', each '{group_column}' in one split"
    if time_column:
        return f"out-of-time by '{time_column}' (train earliest, test latest)"
    if group_column:
        return f"random by '{group_column}' (each entity in one split)"
    return "random, stratified by label"


def _split_counts(split: np.ndarray, labels: np.ndarray | None) -> dict[str, dict[str, int]]:
    counts = {}
    for name in ("train", "val", "test"):
        mask = split == name
        if mask.any():
            fraud = int(labels[mask].sum()) if labels is not None else None
            counts[name] = {"rows": int(mask.sum()), "fraud": fraud}
    return counts


def frame_split_table(prepared: PreparedTable) -> pd.DataFrame:
    """``splits.csv``: the row of the input file (0-based) and its split."""
    return pd.DataFrame({"item": prepared.rows, "split": prepared.split})
