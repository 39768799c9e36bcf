"""Reading tables (CSV, TSV, text, RecBole ``.inter``, Parquet) for plugins — no torch.

One reader with one error policy for every tabular plugin, used by training and by the
runtime alike: a missing, empty, unparsable or non-UTF-8 file, and a header that names a
column twice, are each a one-line `DataError`. ``as_text=True`` keeps every cell as the
string written (ids stay ids: ``007`` is not 7); otherwise pandas infers the types.

Parquet can hold what a CSV cannot: lists, structs and binary values. ``plain=`` names the
columns a caller uses as plain values; there binary UTF-8 becomes text (as in a CSV) and a
list, struct or non-UTF-8 binary column is a `DataError` naming it (`check_column_types`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError

#: suffix → CSV separator (None: Parquet, or let pandas sniff ``.txt``)
SEPARATORS: dict[str, str | None] = {
    ".csv": ",",
    ".tsv": "\t",
    ".txt": None,
    ".inter": "\t",
    ".parquet": None,
    ".pq": None,
}
PARQUET = (".parquet", ".pq")
MAX_LISTED = 20  # column names an error lists before it says how many there are in all

#: columns that must hold plain values: their names, or a test on a column's name
PlainColumns = Collection[str] | Callable[[str], bool]


def _check_path(path: Path, noun: str, suffixes: tuple[str, ...]) -> str:
    if not path.exists():
        raise DataError("data file not found", path, "check the path passed to --data")
    if path.is_dir():
        raise DataError(f"--data is a folder, not a {noun}", path, "pass one table file")
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise DataError(
            f"unsupported file type '{suffix or path.name}'", path, f"use {', '.join(suffixes)}"
        )
    return suffix


def _csv_kwargs(suffix: str, as_text: bool) -> dict:
    sep = SEPARATORS[suffix]
    kwargs: dict = {"sep": sep, "engine": "python" if sep is None else "c"}
    if sep is not None:
        kwargs["low_memory"] = False
    if as_text:
        kwargs.update(dtype=str, keep_default_na=False, na_values=[""])
    return kwargs


def _why(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the file is not UTF-8 text"
    first = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def header(path: Path, suffix: str | None = None) -> list[str]:
    """The column names as written (pandas renames a repeated ``a`` to ``a.1``)."""
    suffix = suffix or path.suffix.lower()
    if suffix in PARQUET:
        import pyarrow.parquet as pq

        names = [str(n) for n in pq.ParquetFile(path).schema_arrow.names]
    else:
        sep = SEPARATORS[suffix]
        first = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str,
                            keep_default_na=False, engine="python" if sep is None else "c")  # fmt: skip
        names = [str(c) for c in first.iloc[0].tolist()] if len(first) else []
    if suffix == ".inter":  # RecBole: `user_id:token`
        names = [n.split(":", 1)[0] for n in names]
    return [n.strip() for n in names]


def check_unique_columns(names: list[str], path: Path) -> None:
    """A repeated column name makes a column option ambiguous: refuse it."""
    seen: set[str] = set()
    repeated = [c for c in names if c in seen or seen.add(c)]
    if repeated:
        raise DataError(
            f"the table has duplicated column names ({', '.join(dict.fromkeys(repeated))})",
            path,
            "rename the columns so that each name appears once",
        )


def _clean_columns(frame: pd.DataFrame, suffix: str) -> pd.DataFrame:
    names = [str(c) for c in frame.columns]
    if suffix == ".inter":
        names = [n.split(":", 1)[0] for n in names]
    frame.columns = [n.strip() for n in names]
    return frame


def read_table(
    path: Path,
    *,
    noun: str = "table",
    as_text: bool = False,
    suffixes: tuple[str, ...] = tuple(SEPARATORS),
    plain: PlainColumns | None = None,
    plain_fix: str = "",
) -> pd.DataFrame:
    """The whole table, with at least one row. ``plain`` (None: nothing checked) and
    ``plain_fix``: the ``columns`` and ``fix`` of `check_column_types`."""
    path = Path(path)
    suffix = _check_path(path, noun, suffixes)
    try:
        if suffix in PARQUET:
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, **_csv_kwargs(suffix, as_text))
        names = header(path, suffix)
    except pd.errors.EmptyDataError as exc:
        raise DataError("the file is empty", path, f"pass a {noun} with a header and rows") from exc
    except Exception as exc:  # parser and pyarrow errors come in many types
        raise DataError(f"cannot read the {noun} ({_why(exc)})", path,
                        "check that the file is a valid CSV or Parquet table") from exc  # fmt: skip
    if frame.empty:
        raise DataError(f"the {noun} has no rows", path, f"pass a {noun} with rows")
    check_unique_columns(names, path)
    frame = _clean_columns(frame, suffix)
    return frame if plain is None else check_column_types(frame, path, plain, plain_fix)


def iter_table(
    path: Path,
    chunk_rows: int,
    *,
    noun: str = "table",
    as_text: bool = False,
    suffixes: tuple[str, ...] = tuple(SEPARATORS),
    plain: PlainColumns | None = None,
    plain_fix: str = "",
) -> Iterator[pd.DataFrame]:
    """The table in chunks of ``chunk_rows`` rows (bounded memory), indexed by row number,
    with the same checks and errors as `read_table`."""
    path = Path(path)
    suffix = _check_path(path, noun, suffixes)
    rows = 0
    try:
        check_unique_columns(header(path, suffix), path)
        if suffix in PARQUET:
            import pyarrow.parquet as pq

            source = pq.ParquetFile(path)
            chunks = (b.to_pandas() for b in source.iter_batches(batch_size=chunk_rows))
        else:
            chunks = pd.read_csv(path, chunksize=chunk_rows, **_csv_kwargs(suffix, as_text))
        for chunk in chunks:
            chunk = _clean_columns(chunk, suffix)
            chunk.index = pd.RangeIndex(rows, rows + len(chunk))
            rows += len(chunk)
            yield chunk if plain is None else check_column_types(chunk, path, plain, plain_fix)
    except DataError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise DataError("the file is empty", path, f"pass a {noun} with a header and rows") from exc
    except Exception as exc:  # parser and pyarrow errors come in many types
        raise DataError(f"cannot read the {noun} at row {rows} ({_why(exc)})", path,
                        "check that the file is a valid CSV or Parquet table") from exc  # fmt: skip
    if rows == 0:
        raise DataError(f"the {noun} has no rows", path, f"pass a {noun} with rows")


def require_column(
    frame: pd.DataFrame,
    column: str,
    where: object,
    fix: str = "",
    *,
    noun: str = "column",
    data: str = "the data",
) -> None:
    """``column`` must be in ``frame``: else an error with a did-you-mean hint and the
    columns there are (all of them, or the first 20 and how many in all). ``noun`` and
    ``data`` word it, e.g. "label column 'y' is not in the evaluation data"."""
    if column in frame.columns:
        return
    names = [str(c) for c in frame.columns]
    close = difflib.get_close_matches(column, names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise DataError(f"{noun} '{column}' is not in {data} (columns: {name_list(names)})", where,
                    (hint + fix).strip() or "check the column name")  # fmt: skip


def name_list(names: Collection[str], limit: int = MAX_LISTED) -> str:
    """``a, b, c`` — or the first ``limit`` names and how many there are in all."""
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    return shown + (f" … ({len(names)} in all)" if len(names) > limit else "")


def check_column_types(
    frame: pd.DataFrame, where: object, columns: PlainColumns | None = None, fix: str = ""
) -> pd.DataFrame:
    """``frame`` with the binary ``columns`` (None: all) decoded as UTF-8 text; a list,
    struct (dict) or non-UTF-8 binary column among them is a `DataError` naming it. ``fix``
    (``{column}`` is replaced by the name) says what to do; the default: how to store it.
    Columns not in ``frame`` are left to `require_column`."""
    if columns is None:
        names = list(frame.columns)
    elif callable(columns):
        names = [c for c in frame.columns if columns(c)]
    else:
        names = [c for c in dict.fromkeys(columns) if c in frame.columns]
    decoded: dict[str, pd.Series] = {}
    for name in names:
        column = frame[name]
        kind = _value_kind(column)
        if kind is None:
            continue
        if kind != "binary":
            raise DataError(f"column '{name}' holds {kind}, not plain values", where,
                            _fix(fix, name, "flatten it into columns of numbers or text"))  # fmt: skip
        decoded[str(name)] = _decoded(column, name, where, fix)
    return frame.assign(**decoded) if decoded else frame


def _value_kind(column: pd.Series) -> str | None:
    """What odd values the column holds ("lists", "structs (dicts)", "binary"); None: plain."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = pd.Series(column.cat.categories)
    if column.dtype != object:
        return None
    inferred = pd.api.types.infer_dtype(column, skipna=True)
    if inferred == "bytes":
        return "binary"
    if not inferred.startswith("mixed"):  # strings, numbers, dates, booleans: plain
        return None
    for value in column:  # stops at the first odd value; Parquet columns have one type
        if isinstance(value, (bytes, bytearray)):
            return "binary"
        if isinstance(value, dict):
            return "structs (dicts)"
        if isinstance(value, (list, tuple, set, np.ndarray)):
            return "lists"
    return None


def _decoded(column: pd.Series, name: str, where: object, fix: str) -> pd.Series:
    values = column.astype(object) if isinstance(column.dtype, pd.CategoricalDtype) else column
    try:
        return values.map(_text, na_action="ignore")
    except UnicodeDecodeError as exc:
        bad = next(i for i, v in values.items() if isinstance(v, bytes) and not _utf8(v))
        raise DataError(f"column '{name}' holds binary values that are not UTF-8 text, "
                        f"first at row {bad}", where,
                        _fix(fix, name, "store it as UTF-8 text or numbers")) from exc  # fmt: skip


def _text(value: object) -> object:
    return bytes(value).decode("utf-8") if isinstance(value, (bytes, bytearray)) else value


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fix(fix: str, name: str, default: str) -> str:
    return fix.replace("{column}", str(name)) if fix else default
