"""Read interaction logs (CSV, Parquet, RecBole ``.inter``) into a clean, time-ordered frame.

No torch here: ``tl predict`` uses these readers. Every row that is dropped is counted in
``LogReadout.notes`` so the report can say what happened to the data.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import ConfigError, DataError

USER, ITEM, TIME, RATING = "user_id", "item_id", "timestamp", "rating"
TABLE_SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".pq", ".inter"}


@dataclass
class LogColumns:
    """Column names in the user's file. ``time``/``rating`` are optional unless set explicitly."""

    user: str = USER
    item: str = ITEM
    time: str | None = None
    rating: str | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> LogColumns:
        return cls(
            user=options.get("user_column") or USER,
            item=options.get("item_column") or ITEM,
            time=options.get("time_column") or None,
            rating=options.get("rating_column") or None,
        )


@dataclass
class LogReadout:
    """A clean log: columns ``user_id``, ``item_id`` (strings), ``timestamp`` (float seconds,
    or the row order when the file has no time column), sorted by user then time."""

    frame: pd.DataFrame
    has_time: bool
    notes: dict[str, int] = field(default_factory=dict)
    n_rows_read: int = 0


def read_table(path: Path) -> pd.DataFrame:
    """The raw table, ids kept as written (strings for text formats)."""
    if not path.exists():
        raise DataError("data file not found", path, "check the path passed to --data")
    if path.is_dir():
        raise DataError(
            "--data is a folder, not an interaction log",
            path,
            "pass one CSV, Parquet or RecBole .inter file",
        )
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(
            f"unsupported file type '{suffix or path.name}'",
            path,
            "use .csv, .tsv, .parquet or a RecBole .inter file",
        )
    sep: str | None = None
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix == ".inter":
            frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
            frame.columns = [str(c).split(":", 1)[0] for c in frame.columns]
        else:
            sep = {".csv": ",", ".tsv": "\t"}.get(suffix)  # .txt: let pandas sniff
            frame = pd.read_csv(
                path, sep=sep, engine="python" if sep is None else "c", dtype=str,
                keep_default_na=False, na_values=[""],
            )  # fmt: skip
    except pd.errors.EmptyDataError as exc:
        raise DataError("the file is empty", path, "pass a log with a header and rows") from exc
    except (pd.errors.ParserError, csv.Error, UnicodeDecodeError, ValueError, OSError) as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DataError(f"cannot parse the file: {first}", path, "check its format") from exc
    if frame.empty:
        raise DataError("the file has no rows", path, "pass a log with at least one interaction")
    header = list(frame.columns)
    if suffix not in (".parquet", ".pq"):  # pandas renames a repeated name `a` to `a.1`
        first = pd.read_csv(path, sep=sep if suffix != ".inter" else "\t", header=None, nrows=1,
                            engine="python", dtype=str, keep_default_na=False)  # fmt: skip
        header = [str(c).split(":", 1)[0] if suffix == ".inter" else c for c in first.iloc[0]]
    header = [str(c).strip() for c in header]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(
            f"the log has duplicated column names ({', '.join(repeated)})",
            path,
            "rename the columns so that each name appears once",
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _require_column(frame: pd.DataFrame, name: str, flag: str, path: Path) -> str:
    if name in frame.columns:
        return name
    close = difflib.get_close_matches(name, list(frame.columns), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise DataError(
        f"column '{name}' not found (columns: {', '.join(map(str, frame.columns[:12]))})",
        path,
        f"{hint}pass {flag} NAME",
    )


def _ids(column: pd.Series) -> pd.Series:
    """Ids as strings; integral floats (Parquet with NaN) lose their ``.0``."""
    if pd.api.types.is_float_dtype(column):
        values = column.dropna()
        if len(values) and np.all(np.mod(values.to_numpy(), 1) == 0):
            column = column.astype("Int64")
    out = column.astype("string").str.strip()
    return out.mask(out == "")


def _seconds(column: pd.Series) -> pd.Series:
    """Epoch seconds from numbers or date strings; NaN where unparsable."""
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().sum() >= 0.5 * column.notna().sum() and numeric.notna().any():
        return numeric.astype("float64")
    parsed = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return seconds.astype("float64")


def read_log(
    path: Path, columns: LogColumns | None = None, min_rating: float | None = None
) -> LogReadout:
    """Read, validate and clean an interaction log (drops are counted, never silent)."""
    columns = columns or LogColumns()
    raw = read_table(path)
    user = _require_column(raw, columns.user, "--user-column", path)
    item = _require_column(raw, columns.item, "--item-column", path)
    time = columns.time or (TIME if TIME in raw.columns else None)
    if time is not None:
        time = _require_column(raw, time, "--time-column", path)
    rating = columns.rating or (RATING if RATING in raw.columns else None)
    if rating is not None:
        rating = _require_column(raw, rating, "--rating-column", path)
    if min_rating is not None and rating is None:
        raise ConfigError(
            "--min-rating needs a rating column", path, "pass --rating-column NAME or drop it"
        )

    notes: dict[str, int] = {}
    frame = pd.DataFrame({USER: _ids(raw[user]), ITEM: _ids(raw[item])})
    if time is not None:
        frame[TIME] = _seconds(raw[time])
        bad = frame[TIME].isna()
        if bad.all():
            raise DataError(
                f"no timestamp in column '{time}' could be parsed",
                path,
                "use epoch seconds or ISO dates, or pass --time-column for the right column",
            )
        notes["rows_with_unparsable_timestamp"] = int(bad.sum())
    else:
        frame[TIME] = np.arange(len(frame), dtype="float64")
    missing_id = frame[USER].isna() | frame[ITEM].isna()
    notes["rows_with_missing_id"] = int(missing_id.sum())
    keep = ~missing_id & frame[TIME].notna()
    if rating is not None:
        values = pd.to_numeric(raw[rating], errors="coerce")
        if min_rating is not None:
            low = keep & ~(values >= min_rating)
            notes["rows_below_min_rating"] = int(low.sum())
            keep &= ~low
    frame = frame[keep]
    duplicated = frame.duplicated(keep="first")
    notes["duplicate_rows"] = int(duplicated.sum())
    frame = frame[~duplicated]
    if frame.empty:
        raise DataError(
            "no usable interaction left after cleaning", path, "check ids, timestamps and ratings"
        )
    frame = frame.sort_values([USER, TIME], kind="stable").reset_index(drop=True)
    notes = {k: v for k, v in notes.items() if v}
    return LogReadout(frame=frame, has_time=time is not None, notes=notes, n_rows_read=len(raw))
