"""Column types, vocabularies and numeric statistics: the table ↔ model-input contract.

A `TableSchema` is fitted on the training split only. It turns any table with the same
columns into the two matrices the model (and the ONNX graph) takes: ``numeric`` float32
(NaN for missing; scaling happens in the graph with the statistics stored here) and
``categorical`` int64 codes, where 0 is reserved for unknown or missing categories.
Its JSON form travels in the ONNX metadata and the weights metadata. No torch here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tl.core import DataError

from .readers import parse_datetime, require_column

NUMERIC, BOOLEAN, CATEGORICAL, DATETIME = "numeric", "boolean", "categorical", "datetime"
DATETIME_PARTS = ("hour", "weekday")
MAX_INT_CATEGORIES = 10
MAX_VOCAB = 1000
MIN_CATEGORY_COUNT = 3
ID_UNIQUE_RATIO = 0.9
SKEW_RATIO = 5.0
CLIP = 8.0
BOOL_WORDS = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "t": 1.0, "f": 0.0}


@dataclass
class NumericFeature:
    name: str
    source: str
    kind: str = NUMERIC
    part: str | None = None
    center: float = 0.0
    scale: float = 1.0
    log: bool = False


@dataclass
class CategoricalFeature:
    name: str
    vocab: list[str] = field(default_factory=list)


@dataclass
class TableSchema:
    numeric: list[NumericFeature] = field(default_factory=list)
    categorical: list[CategoricalFeature] = field(default_factory=list)
    id_columns: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def numeric_names(self) -> list[str]:
        return [f.name for f in self.numeric]

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.categorical]

    @property
    def cardinalities(self) -> list[int]:
        """Rows of each categorical embedding table: the vocabulary plus the unknown code 0."""
        return [len(f.vocab) + 1 for f in self.categorical]

    @property
    def source_columns(self) -> list[str]:
        names = [f.source for f in self.numeric] + self.categorical_names
        return list(dict.fromkeys(names))

    def column_types(self) -> dict[str, str]:
        types = {f.source: f.kind for f in self.numeric}
        types.update({f.name: CATEGORICAL for f in self.categorical})
        return types

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableSchema:
        return cls(
            numeric=[NumericFeature(**f) for f in data.get("numeric", [])],
            categorical=[CategoricalFeature(**f) for f in data.get("categorical", [])],
            id_columns=list(data.get("id_columns", [])),
            excluded=dict(data.get("excluded", {})),
        )

    # ----------------------------------------------------------------- encoding
    def encode(
        self, frame: pd.DataFrame, where: str = "data"
    ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """(numeric, categorical, counts of unseen categories per column) for ``frame``."""
        missing = [c for c in self.source_columns if c not in frame.columns]
        if missing:
            raise DataError(
                f"the table lacks {len(missing)} column(s) the model needs: {_names(missing)}",
                where,
                "score a table with the same columns as the training data",
            )
        numeric = np.empty((len(frame), len(self.numeric)), dtype=np.float32)
        parsed_dates: dict[str, pd.Series] = {}
        for j, feature in enumerate(self.numeric):
            column = frame[feature.source]
            if feature.kind == DATETIME:
                if feature.source not in parsed_dates:
                    parsed_dates[feature.source] = parse_datetime(column)
                numeric[:, j] = datetime_part(parsed_dates[feature.source], feature.part)
            elif feature.kind == BOOLEAN:
                numeric[:, j] = to_boolean(column, feature.source, where)
            else:
                numeric[:, j] = to_numeric(column, feature.source, where)
        categorical = np.zeros((len(frame), len(self.categorical)), dtype=np.int64)
        unseen: dict[str, int] = {}
        for j, feature in enumerate(self.categorical):
            text = category_text(frame[feature.name])
            lookup = {value: code for code, value in enumerate(feature.vocab, start=1)}
            codes = text.map(lookup)
            unknown = int((codes.isna() & text.notna()).sum())
            if unknown:
                unseen[feature.name] = unknown
            categorical[:, j] = codes.fillna(0).to_numpy(dtype=np.int64)
        return numeric, categorical, unseen

    def row_problems(self, frame: pd.DataFrame) -> pd.Series:
        """Why each row of ``frame`` cannot be encoded (text in a numeric column, a word that
        is no boolean), indexed like ``frame``; rows without a problem are left out. What
        `encode` raises for, row by row, so ``--skip-bad`` can skip and count such rows."""
        problems = pd.Series(pd.NA, index=frame.index, dtype=object)
        checked: set[str] = set()
        for feature in self.numeric:
            if feature.kind == DATETIME or feature.source in checked:
                continue
            checked.add(feature.source)
            if feature.source not in frame.columns:
                continue
            column = frame[feature.source]
            boolean = feature.kind == BOOLEAN
            _, bad = _boolean_values(column) if boolean else _numeric_values(column)
            if bad is None or not bad.any():
                continue
            what = f"column '{feature.source}' is {'boolean' if boolean else 'numeric'} but holds"
            reasons = column[bad].map(lambda value: f"{what} '{value}'")  # noqa: B023
            problems = problems.where(problems.notna() | ~bad, reasons)
        return problems.dropna()


def _names(names: list[str], limit: int = 20) -> str:
    """All of ``names``, or the first ``limit`` and how many there are in all."""
    shown = ", ".join(names[:limit])
    return shown + (f" … ({len(names)} in all)" if len(names) > limit else "")


# ------------------------------------------------------------------ conversions
def to_numeric(column: pd.Series, name: str, where: str) -> np.ndarray:
    values, bad = _numeric_values(column)
    if bad is not None and bad.any():
        example = column[bad].iloc[0]
        raise DataError(
            f"column '{name}' is numeric but holds text ({int(bad.sum())} values, e.g. '{example}')",
            where,
            "fix or blank those values (empty cells are treated as missing)",
        )
    return values


def to_boolean(column: pd.Series, name: str, where: str) -> np.ndarray:
    values, bad = _boolean_values(column)
    if bad is not None and bad.any():
        raise DataError(
            f"column '{name}' is boolean but holds '{column[bad].iloc[0]}'",
            where,
            "use true/false, yes/no or 1/0",
        )
    return values


def _numeric_values(column: pd.Series) -> tuple[np.ndarray, pd.Series | None]:
    """float32 values (NaN where missing or not a number) and the mask of text values."""
    if pd.api.types.is_bool_dtype(column):
        return column.astype("float64").to_numpy(dtype=np.float32), None
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64, na_value=np.nan).astype(np.float32), None
    converted = pd.to_numeric(column, errors="coerce")
    bad = converted.isna() & column.notna() & (column.astype("string").str.strip() != "")
    return converted.to_numpy(dtype=np.float64, na_value=np.nan).astype(np.float32), bad


def _boolean_values(column: pd.Series) -> tuple[np.ndarray, pd.Series | None]:
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return _numeric_values(column)
    text = column.astype("string").str.strip().str.lower()
    mapped = text.map(BOOL_WORDS)
    bad = mapped.isna() & text.notna() & (text != "")
    return mapped.to_numpy(dtype=np.float64, na_value=np.nan).astype(np.float32), bad.fillna(False)


def datetime_part(parsed: pd.Series, part: str | None) -> np.ndarray:
    values = {
        "hour": lambda d: d.dt.hour + d.dt.minute / 60.0,
        "weekday": lambda d: d.dt.day_of_week,
        "day": lambda d: d.dt.day,
    }[part or "hour"](parsed)
    return values.to_numpy(dtype=np.float64, na_value=np.nan).astype(np.float32)


def category_text(column: pd.Series) -> pd.Series:
    """Categories as strings, the same way at fit and at predict time (3.0 → "3")."""
    if pd.api.types.is_bool_dtype(column):
        return column.map(lambda v: None if pd.isna(v) else str(bool(v)))
    if pd.api.types.is_numeric_dtype(column):
        return column.map(_number_text)
    return column.map(lambda v: None if pd.isna(v) else str(v).strip() or None)


def _number_text(value: Any) -> str | None:
    if pd.isna(value):
        return None
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


# ------------------------------------------------------------------ inference
def infer_types(
    frame: pd.DataFrame,
    exclude: set[str],
    time_column: str | None = None,
    categorical: list[str] | None = None,
    numeric: list[str] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Type of every usable column, and the columns left out with the reason why."""
    forced_cat, forced_num = set(categorical or []), set(numeric or [])
    for name in sorted(forced_cat):
        require_column(frame, name, "--categorical")
    for name in sorted(forced_num):
        require_column(frame, name, "--numeric")
    types: dict[str, str] = {}
    excluded: dict[str, str] = {}
    for name in frame.columns:
        if name in exclude:
            continue
        column = frame[name]
        present = column.dropna()
        if present.empty:
            excluded[name] = "all values missing"
            continue
        if name in forced_cat:
            types[name] = CATEGORICAL
        elif name in forced_num:
            types[name] = NUMERIC
        elif name == time_column:
            types[name] = DATETIME
        else:
            types[name] = _guess_type(present)
        if types[name] == CATEGORICAL and name not in forced_cat:
            unique = present.nunique()
            if unique > ID_UNIQUE_RATIO * len(present) and unique > 50:
                del types[name]
                excluded[name] = f"looks like an identifier ({unique} distinct values)"
        if name in types and present.nunique() == 1 and types[name] != DATETIME:
            del types[name]
            excluded[name] = "constant"
    return types, excluded


def _guess_type(present: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(present):
        return BOOLEAN
    if pd.api.types.is_datetime64_any_dtype(present):
        return DATETIME
    if pd.api.types.is_numeric_dtype(present):
        values = present.to_numpy(dtype=np.float64)
        integral = np.all(np.mod(values, 1.0) == 0)
        if integral and present.nunique() <= 2 and set(np.unique(values)) <= {0.0, 1.0}:
            return BOOLEAN
        if integral and present.nunique() <= MAX_INT_CATEGORIES:
            return CATEGORICAL
        return NUMERIC
    text = present.astype("string").str.strip()
    lowered = set(text.str.lower().unique())
    if lowered <= set(BOOL_WORDS):
        return BOOLEAN
    sample = text.head(200)
    if pd.to_numeric(sample, errors="coerce").notna().all():
        return NUMERIC
    if sample.str.contains(r"\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}", regex=True).all():
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
        if parsed.notna().all():
            return DATETIME
    return CATEGORICAL


def fit_schema(
    frame: pd.DataFrame,
    types: dict[str, str],
    excluded: dict[str, str] | None = None,
    id_columns: list[str] | None = None,
) -> TableSchema:
    """Vocabularies and robust numeric statistics from ``frame`` (the training split)."""
    schema = TableSchema(id_columns=list(id_columns or []), excluded=dict(excluded or {}))
    for name, kind in types.items():
        column = frame[name]
        if kind == CATEGORICAL:
            counts = category_text(column).value_counts()
            kept = counts[counts >= MIN_CATEGORY_COUNT].head(MAX_VOCAB)
            schema.categorical.append(CategoricalFeature(name, sorted(kept.index.tolist())))
        elif kind == DATETIME:
            parsed = parse_datetime(column)
            for part in DATETIME_PARTS:
                values = datetime_part(parsed, part)
                schema.numeric.append(
                    _numeric_feature(f"{name}.{part}", name, DATETIME, values, part)
                )
        else:
            values = (to_boolean if kind == BOOLEAN else to_numeric)(column, name, "training data")
            schema.numeric.append(_numeric_feature(name, name, kind, values))
    if not schema.numeric and not schema.categorical:
        raise DataError(
            "no usable feature columns", "data", "the table needs columns besides target and ids"
        )
    return schema


def _numeric_feature(
    name: str, source: str, kind: str, values: np.ndarray, part: str | None = None
) -> NumericFeature:
    """Median/IQR scaling; heavy-tailed non-negative columns (amounts) go through log1p first."""
    finite = values[np.isfinite(values)].astype(np.float64)
    if kind == BOOLEAN:
        return NumericFeature(name, source, kind, part, 0.0, 1.0, False)
    log = False
    if kind == NUMERIC and finite.size and finite.min() >= 0:
        q50, q99 = np.quantile(finite, [0.5, 0.99])
        log = bool(q99 > SKEW_RATIO * max(q50, 1e-6) and q99 > 10)
    if log:
        finite = np.log1p(finite)
    if not finite.size:
        return NumericFeature(name, source, kind, part, 0.0, 1.0, log)
    q25, q50, q75 = np.quantile(finite, [0.25, 0.5, 0.75])
    scale = (q75 - q25) / 1.349
    if not scale > 1e-6:
        scale = float(np.std(finite)) or 1.0
    return NumericFeature(name, source, kind, part, float(q50), float(scale), log)
