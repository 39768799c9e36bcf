"""Reading tables (CSV, TSV, text, RecBole ``.inter``, Parquet) for plugins — no torch.

One reader with one error policy for every tabular plugin, used by training and by the
runtime alike: a missing, empty, unparsable or non-UTF-8 file, and a header that names a
column twice, are each a one-line `DataError`. ``as_text=True`` keeps every cell as the
string written (ids stay ids: ``007`` is not 7); otherwise pandas infers the types.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path

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
) -> pd.DataFrame:
    """The whole table, with at least one row."""
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
    return _clean_columns(frame, suffix)


def iter_table(
    path: Path,
    chunk_rows: int,
    *,
    noun: str = "table",
    as_text: bool = False,
    suffixes: tuple[str, ...] = tuple(SEPARATORS),
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
            yield chunk
    except DataError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise DataError("the file is empty", path, f"pass a {noun} with a header and rows") from exc
    except Exception as exc:  # parser and pyarrow errors come in many types
        raise DataError(f"cannot read the {noun} at row {rows} ({_why(exc)})", path,
                        "check that the file is a valid CSV or Parquet table") from exc  # fmt: skip
    if rows == 0:
        raise DataError(f"the {noun} has no rows", path, f"pass a {noun} with rows")


def require_column(frame: pd.DataFrame, column: str, where: object, fix: str = "") -> None:
    """``column`` must be in ``frame``: else an error with a did-you-mean hint and the
    columns there are (all of them, or the count past 20)."""
    if column in frame.columns:
        return
    names = [str(c) for c in frame.columns]
    close = difflib.get_close_matches(column, names, n=1, cutoff=0.6)
    shown = ", ".join(names[:20]) + (f" … ({len(names)} in all)" if len(names) > 20 else "")
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise DataError(f"column '{column}' is not in the data (columns: {shown})", where,
                    (hint + fix).strip() or "check the column name")  # fmt: skip
