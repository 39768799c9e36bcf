"""Read transaction tables (CSV, Parquet) and parse targets and timestamps. No torch here.

These functions are shared by training (`tl run`, `tl pretrain`) and the torch-free runtime
(`tl predict`, `tl evaluate`), so a file is read the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tl.core import ConfigError, DataError
from tl.core import iter_table as core_iter_table
from tl.core import read_table as core_read_table
from tl.core import require_column as core_require_column

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
POSITIVE_WORDS = {"1", "true", "t", "yes", "y", "fraud", "fraudulent", "positive", "bad"}
MAX_BAD_TIME_FRACTION = 0.01
#: what to do about a list, struct or non-UTF-8 binary column the model would use
TRAINING_FIX = "convert it to numbers or text, or leave it out with --drop {column}"
SCORING_FIX = "convert '{column}' to numbers or text, as in the training data"

Columns = Collection[str] | Callable[[str], bool]


def read_table(path: Path, plain: Columns | None = None, fix: str = TRAINING_FIX) -> pd.DataFrame:
    """The raw table with at least one row (the core's reader and error policy). The
    ``plain`` columns (binary UTF-8 is decoded) must not hold lists, structs or bytes."""
    return core_read_table(Path(path), noun="transaction table", suffixes=SUFFIXES,
                           plain=plain, plain_fix=fix)  # fmt: skip


def iter_table(
    path: Path, chunk_rows: int, plain: Columns | None = None, fix: str = SCORING_FIX
) -> Iterator[pd.DataFrame]:
    """The table in chunks of ``chunk_rows`` (bounded memory for `tl predict` on big files);
    the same checks and errors as `read_table`."""
    return core_iter_table(Path(path), chunk_rows, noun="transaction table", suffixes=SUFFIXES,
                           plain=plain, plain_fix=fix)  # fmt: skip


def require_column(frame: pd.DataFrame, column: str, flag: str) -> None:
    core_require_column(frame, column, flag)


def require_label(frame: pd.DataFrame, target: str | None, path: Path) -> str:
    """`tl evaluate`'s label column (the model's ``target`` unless ``--target`` names another)."""
    if not target:
        raise ConfigError("the model does not name its label column", "--target",
                          "name the 0/1 fraud label column with --target NAME")  # fmt: skip
    core_require_column(frame, target, path, "pass --target NAME if the labels are in another column",
                        noun="label column", data="the evaluation data")  # fmt: skip
    return target


def parse_target(
    values: pd.Series, positive: str | None = None, where: str = "--target"
) -> tuple[np.ndarray, str]:
    """0/1 labels (``-1`` where the label is missing) and the name of the positive class.

    Accepts 0/1 numbers, booleans or exactly two strings; with strings that are not an
    obvious yes/no pair ``positive`` must name the fraud value.
    """
    present = values.dropna()
    if present.empty:
        raise DataError("the target column has no values", where, "pick the label column")
    text = present.map(_label_text)
    classes = sorted(text.unique())
    if len(classes) > 2:
        shown = ", ".join(classes[:5])
        raise DataError(
            f"the target has {len(classes)} values ({shown}…); fraud needs two",
            where,
            "pass a 0/1, boolean or two-valued column",
        )
    if len(classes) < 2:
        raise DataError(
            f"the target has one class only ('{classes[0]}')",
            where,
            "fraud detection needs labelled fraud and non-fraud rows",
        )
    if positive is not None:
        positive_text = _label_text(positive)
        if positive_text not in classes:
            raise ConfigError(
                f"--positive '{positive}' is not a value of the target",
                "--positive",
                f"values are: {', '.join(classes)}",
            )
    else:
        candidates = [c for c in classes if c.lower() in POSITIVE_WORDS]
        if len(candidates) != 1:
            raise ConfigError(
                f"cannot tell which target value is fraud ({', '.join(classes)})",
                "--positive",
                "name it with --positive VALUE",
            )
        positive_text = candidates[0]
    labels = np.full(len(values), -1, dtype=np.int64)
    mask = values.notna().to_numpy()
    labels[mask] = (text.to_numpy() == positive_text).astype(np.int64)
    return labels, positive_text


def _label_text(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def parse_datetime(values: pd.Series) -> pd.Series:
    """Timestamps as naive datetimes (NaT where a value does not parse)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif pd.api.types.is_numeric_dtype(values):
        parsed = pd.to_datetime(values, unit="s", errors="coerce")
    else:
        parsed = pd.to_datetime(values.astype("string"), errors="coerce", format="mixed")
        if not pd.api.types.is_datetime64_any_dtype(parsed):
            parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(None)
    return parsed


def parse_time_column(frame: pd.DataFrame, column: str) -> tuple[pd.Series, int]:
    """The parsed ``--time-column`` and how many values did not parse (≤ 1 % is tolerated)."""
    require_column(frame, column, "--time-column")
    parsed = parse_datetime(frame[column])
    bad = int(parsed.isna().sum())
    if bad > MAX_BAD_TIME_FRACTION * len(frame):
        example = frame.loc[parsed.isna(), column].head(1).tolist()
        raise DataError(
            f"the time column does not parse as dates ({bad} of {len(frame)} values, e.g. {example})",
            "--time-column " + column,
            "use ISO dates like 2024-03-01 12:00:00 or epoch seconds",
        )
    return parsed, bad
