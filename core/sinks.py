"""Streaming writers of `tl predict`'s rows: a chunk at a time, so memory does not grow with
the input, into a temporary file renamed over ``--out`` only when every row is written.

The first chunk fixes the columns (and, for Parquet, the types); later chunks are put into
that shape. CSV has one header; JSON is one array of records; Parquet is one file written
by `pyarrow.parquet.ParquetWriter`, a row group per chunk.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ConfigError
from .fileio import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

FORMATS = (".csv", ".json", ".parquet")


def check_out(out: Path | None) -> None:
    """Refuse an ``--out`` whose format is unknown before any work is done."""
    if out is not None and Path(out).suffix.lower() not in FORMATS:
        raise ConfigError(
            f"unknown output format '{Path(out).suffix or Path(out).name}'",
            out,
            "name the --out file .csv, .json or .parquet (or leave --out out for CSV on stdout)",
        )


class Sink:
    """Rows in, a file out; ``columns`` are the first chunk's."""

    def __init__(self) -> None:
        self.columns: list[str] | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.columns is None:
            self.columns = [str(c) for c in frame.columns]
        elif list(frame.columns) != self.columns:
            frame = frame.reindex(columns=self.columns)
        self._write(frame)
        self.rows += len(frame)

    def _write(self, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None


class CsvSink(Sink):
    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._header = True

    def _write(self, frame: pd.DataFrame) -> None:
        self.stream.write(frame.to_csv(index=False, header=self._header))
        self._header = False


class JsonSink(Sink):
    """One JSON array of records, streamed: ``[`` first, ``]`` at close."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self.stream.write("[")

    def _write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        lines = frame.to_json(orient="records", lines=True, date_format="iso").splitlines()
        self.stream.write(("," if self.rows else "") + "\n" + ",\n".join(lines))

    def close(self) -> None:
        self.stream.write("\n]\n" if self.rows else "]\n")


class ParquetSink(Sink):
    """Parquet with the schema of the first chunk that has rows (an empty chunk — a batch
    in which a detector found nothing — says nothing about the types); a column that is
    all null there (e.g. ``error`` when no item was skipped yet) is typed as a string."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._writer: Any = None
        self._empty: pd.DataFrame | None = None

    def _write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if frame.empty and self._writer is None:
            self._empty = frame
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            schema = pa.schema(
                [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema],
                metadata=table.schema.metadata,
            )
            self._writer = pq.ParquetWriter(self.path, schema)
        self._writer.write_table(table.cast(self._writer.schema))

    def close(self) -> None:
        if self._writer is None and self._empty is not None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pandas(self._empty, preserve_index=False), self.path)
        if self._writer is not None:
            self._writer.close()


@contextlib.contextmanager
def open_sink(out: Path | None) -> Iterator[Sink]:
    """A sink for ``out`` by its suffix (CSV on stdout when None). On an error inside the
    block the temporary file is removed and an existing ``out`` keeps its content."""
    if out is None:
        yield CsvSink(sys.stdout)
        sys.stdout.flush()
        return
    out = Path(out)
    check_out(out)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".parquet":
            sink: Sink = ParquetSink(tmp)
            try:
                yield sink
            finally:
                sink.close()
            return
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            sink = JsonSink(fh) if out.suffix.lower() == ".json" else CsvSink(fh)
            yield sink
            sink.close()
