"""The exported graph's inputs: one per raw column, as the table holds it. No torch here.

A fraud model's ONNX graph takes the raw columns and encodes them itself (vocabulary
lookups, datetime parts, scaling), so a deployer feeds what the file holds:

- ``number``: float64 ``[N]``, NaN = missing (a numeric column, or a categorical one whose
  values are numbers: 3 and 3.0 are the same category);
- ``string``: a categorical column's text ``[N]``, "" = missing, an unseen value = unknown;
- ``boolean``: text ``[N]``, any of the spellings the reader accepts (true/false, yes/no, t/f
  in any case, 1/0), "" = missing;
- ``datetime``: int64 epoch seconds ``[N]`` (UTC; a naive timestamp is read as UTC),
  ``MISSING_TIME`` (the int64 minimum, numpy's NaT) = missing.

Surrounding whitespace of text is not trimmed in the graph (ONNX has no operator for it):
`feeds` trims it, as the reader does. `feeds` is what `tl predict` hands the graph; the
parity check at export compares the graph's encoding of those feeds with tl's own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from tl.core import DataError

from .readers import parse_datetime
from .schema import (
    BOOLEAN,
    CATEGORICAL,
    DATETIME,
    TableSchema,
    category_text,
    to_boolean,
    to_numeric,
)

MISSING_TIME = np.iinfo(np.int64).min
#: graph names a column may not take (outputs, and the prefix of internal tensors)
RESERVED = ("probability", "alert")
INTERNAL_PREFIX = "tl/"
DTYPES = {"double": np.float64, "string": object, "int64": np.int64}


@dataclass(frozen=True)
class RawInput:
    """One graph input: its ``name``, the ``column`` it comes from, its metadata ``type``
    (number|string|boolean|datetime), its ONNX ``dtype`` and the schema ``kind`` of the
    column (numeric|boolean|datetime|categorical)."""

    name: str
    column: str
    type: str
    dtype: str
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_inputs(schema: TableSchema, sample: pd.DataFrame) -> list[RawInput]:
    """The graph inputs for ``schema``'s source columns, in its order. A categorical column
    is a ``number`` input when ``sample`` (rows of the training file) holds it as numbers
    and every vocabulary entry is a number's text, else a ``string`` one."""
    kinds = schema.column_types()
    vocab = {f.name: f.vocab for f in schema.categorical}
    taken: set[str] = set()
    planned = []
    for column in schema.source_columns:
        kind = kinds[column]
        if kind == CATEGORICAL:
            numeric = _numeric_column(sample, column) and all(map(_is_number_text, vocab[column]))
            kind_type, dtype = ("number", "double") if numeric else ("string", "string")
        elif kind == DATETIME:
            kind_type, dtype = "datetime", "int64"
        elif kind == BOOLEAN:
            kind_type, dtype = "boolean", "string"
        else:
            kind_type, dtype = "number", "double"
        planned.append(RawInput(_graph_name(column, taken), column, kind_type, dtype, kind))
    return planned


def inputs_of(meta: dict[str, Any]) -> list[RawInput] | None:
    """The planned inputs recorded in a model's metadata (None: a model that takes the
    encoded ``numeric``/``categorical`` matrices, exported before raw inputs)."""
    entries = meta.get("inputs")
    if not isinstance(entries, list):
        return None
    fields = RawInput.__dataclass_fields__
    return [RawInput(**{k: v for k, v in e.items() if k in fields}) for e in entries]


def _graph_name(column: str, taken: set[str]) -> str:
    """``column`` itself unless ONNX or the graph forbid it (empty, an output's name, the
    internal prefix, a duplicate); then ``input:<column>`` (the metadata maps it back)."""
    name = str(column)
    if not name or name in RESERVED or name.startswith(INTERNAL_PREFIX) or name in taken:
        name = f"input:{name}"
        while name in taken:
            name += "_"
    taken.add(name)
    return name


def _numeric_column(frame: pd.DataFrame, column: str) -> bool:
    if column not in frame.columns:
        return False
    values = frame[column]
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _is_number_text(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    if not np.isfinite(value):
        return False
    return text == (str(int(value)) if value.is_integer() else repr(value))


# ------------------------------------------------------------------ feeds
def feeds(
    frame: pd.DataFrame, inputs: list[RawInput], schema: TableSchema, where: str = "data"
) -> dict[str, np.ndarray]:
    """The graph's inputs for ``frame``'s rows, converted the way tl reads the table (bad
    numbers and boolean words raise the reader's `DataError`)."""
    vocab = {f.name: f.vocab for f in schema.categorical}
    out: dict[str, np.ndarray] = {}
    for spec in inputs:
        column = frame[spec.column]
        if spec.kind == DATETIME:
            out[spec.name] = epoch_seconds(parse_datetime(column))
        elif spec.kind == BOOLEAN:
            out[spec.name] = boolean_text(column, spec.column, where)
        elif spec.kind == CATEGORICAL:
            out[spec.name] = _category_feed(column, vocab[spec.column], spec.dtype)
        else:
            out[spec.name] = to_numeric(column, spec.column, where).astype(np.float64)
    return out


def epoch_seconds(parsed: pd.Series) -> np.ndarray:
    """Naive (UTC) datetimes → int64 epoch seconds, floored; NaT → `MISSING_TIME`."""
    nanos = parsed.to_numpy(dtype="datetime64[ns]").view(np.int64)
    missing = nanos == np.iinfo(np.int64).min
    return np.where(missing, MISSING_TIME, np.floor_divide(nanos, 10**9)).astype(np.int64)


def boolean_text(column: pd.Series, name: str, where: str) -> np.ndarray:
    """A boolean column as the graph's text input: text stripped (its spelling is the
    graph's to map), booleans and 0/1 numbers as ``true``/``false``, missing as ""."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        values = to_boolean(column, name, where)
        odd = ~np.isnan(values) & (values != 0) & (values != 1)
        if odd.any():
            raise DataError(
                f"column '{name}' is boolean but holds '{column[odd].iloc[0]}'",
                where,
                "use true/false, yes/no or 1/0",
            )
        text = np.where(values == 1, "true", "false").astype(object)
        text[np.isnan(values)] = ""
        return text
    to_boolean(column, name, where)  # the reader's error for a word that is no boolean
    text = column.astype("string").str.strip().fillna("")
    return text.to_numpy(dtype=object)


def _category_feed(column: pd.Series, vocab: list[str], dtype: str) -> np.ndarray:
    """Text (or, for a number input, the vocabulary value as a number) of each category;
    missing → "" / NaN. A value tl does not know stays unknown in the graph too."""
    text = category_text(column)
    if dtype == "string":
        return text.fillna("").to_numpy(dtype=object)
    known = text.where(text.isin(vocab))
    return pd.to_numeric(known, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def unseen_counts(frame: pd.DataFrame, schema: TableSchema) -> dict[str, int]:
    """Values of each categorical column that the vocabulary does not hold (not missing)."""
    unseen: dict[str, int] = {}
    for feature in schema.categorical:
        text = category_text(frame[feature.name])
        count = int((text.notna() & ~text.isin(feature.vocab)).sum())
        if count:
            unseen[feature.name] = count
    return unseen


def check_columns(frame: pd.DataFrame, schema: TableSchema, where: str) -> None:
    """The reader's error for a table that lacks columns the model needs."""
    missing = [c for c in schema.source_columns if c not in frame.columns]
    if missing:
        shown = ", ".join(missing[:20]) + (
            f" … ({len(missing)} in all)" if len(missing) > 20 else ""
        )
        raise DataError(
            f"the table lacks {len(missing)} column(s) the model needs: {shown}",
            where,
            "score a table with the same columns as the training data",
        )
