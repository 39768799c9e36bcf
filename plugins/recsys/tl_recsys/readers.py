"""Read interaction logs (CSV, Parquet, RecBole ``.inter``) into a clean, time-ordered frame.

No torch here: ``tl predict`` uses these readers. Every row that is dropped is counted in
``LogReadout.notes`` so the report can say what happened to the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import ConfigError, DataError
from tl.core import read_table as core_read_table
from tl.core import require_column as core_require_column

USER, ITEM, TIME, RATING = "user_id", "item_id", "timestamp", "rating"
TABLE_SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".pq", ".inter"}
#: what to do about a list, struct or non-UTF-8 binary id, time or rating column (Parquet)
PLAIN_FIX = "write '{column}' as UTF-8 text or numbers"


@dataclass
class LogColumns:
    """Column names in the user's file. ``time``/``rating`` are optional unless set explicitly."""

    user: str = USER
    item: str = ITEM
    time: str | None = None
    rating: str | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LogColumns:
        """From resolved options (`tl predict` has no ``rating_column``)."""
        return cls(
            user=options["user_column"],
            item=options["item_column"],
            time=options.get("time_column"),
            rating=options.get("rating_column"),
        )


@dataclass
class LogReadout:
    """A clean log: columns ``user_id``, ``item_id`` (strings), ``timestamp`` (float seconds,
    or the row order when the file has no time column), sorted by user then time.

    ``notes``: rows dropped, by reason. ``lost_users`` (only when asked for): ids of users
    every row of whom was dropped, sorted."""

    frame: pd.DataFrame
    has_time: bool
    notes: dict[str, int] = field(default_factory=dict)
    n_rows_read: int = 0
    lost_users: list[str] = field(default_factory=list)

    @property
    def rows_dropped(self) -> int:
        """Rows the cleaning removed (a row with two faults is counted once)."""
        return self.n_rows_read - len(self.frame)


def read_table(path: Path, plain: list[str] | None = None) -> pd.DataFrame:
    """The raw table, ids kept as written (strings for text formats): the core's reader and
    error policy. The ``plain`` columns must not hold lists or structs, and binary ones are
    read as UTF-8 text (else an error naming the column, as for a non-UTF-8 CSV)."""
    return core_read_table(Path(path), noun="interaction log", as_text=True,
                           suffixes=tuple(TABLE_SUFFIXES), plain=plain,
                           plain_fix=PLAIN_FIX)  # fmt: skip


def _require_column(frame: pd.DataFrame, name: str, flag: str, path: Path) -> str:
    core_require_column(frame, name, path, f"pass {flag} NAME")
    return name


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
    path: Path,
    columns: LogColumns | None = None,
    min_rating: float | None = None,
    *,
    lost_users: bool = False,
) -> LogReadout:
    """Read, validate and clean an interaction log (drops are counted, never silent).

    ``lost_users``: also list the users that have no row left (`tl predict` reports them)."""
    columns = columns or LogColumns()
    used = [columns.user, columns.item, columns.time or TIME, columns.rating or RATING]
    raw = read_table(path, plain=used)
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
    all_users = frame[USER]
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
    lost: list[str] = []
    if lost_users and notes:
        kept = pd.Index(frame[USER].unique())
        lost = pd.Index(all_users.dropna().unique()).difference(kept).sort_values().tolist()
    return LogReadout(
        frame=frame, has_time=time is not None, notes=notes, n_rows_read=len(raw), lost_users=lost
    )
