"""`tl predict` / `tl evaluate`: the one runtime loop every plugin shares. Never imports torch.

A plugin reads its input with ``read_batches`` (an `InputBatch` of model inputs with one row
per item, or a `Skipped` for an item it cannot read) and turns the model's outputs into rows
with ``decode``; ``score`` turns all rows of labelled data into metrics. The core owns the
rest: the model call, progress, skipped items (an error without ``--skip-bad``; with it a
stderr line, and a row with an ``error`` column in the output) and the streaming sinks.
Memory stays bounded in ``predict_to``: one batch at a time, rows written as they come.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import DataError
from .progress import ProgressReporter, Throughput
from .sinks import check_out, open_sink

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

    from .runtime import OnnxModel

ERROR_COLUMN = "error"


@dataclass
class InputBatch:
    """Model inputs by name and ``items``: one row per item (its identifying columns, e.g.
    path / row / user, and its label when labelled). ``extra``: anything ``score`` needs
    (e.g. ground-truth boxes) that is not a column."""

    inputs: dict[str, np.ndarray]
    items: pd.DataFrame
    extra: Any = None


@dataclass(frozen=True)
class Skipped:
    """An item that could not be read, and why (one line)."""

    item: str
    reason: str


@dataclass
class Batches:
    """``read_batches``' result when the number of items is known up front (progress shows
    ``done/total``); a bare iterator works too."""

    batches: Iterable[InputBatch | Skipped]
    total: int | None = None

    def __iter__(self) -> Iterator[InputBatch | Skipped]:
        return iter(self.batches)


@dataclass(frozen=True)
class RuntimeConfig:
    """The core's options of `tl predict` / `tl evaluate` (``Config.core`` there)."""

    data: str
    out: str | None = None
    batch_size: int = 64
    device: str = "auto"
    skip_bad: bool = False


@dataclass(frozen=True)
class PredictSummary:
    rows: int  # predictions written (skipped items' rows not counted)
    skipped: int


@dataclass
class _Skips:
    """Skipped items: counted, the first one kept for the stderr line, and (``keep_rows``)
    the rows not yet written to the output."""

    skip_bad: bool
    noun: str
    count: int = 0
    first: Skipped | None = None
    pending: list[Skipped] = field(default_factory=list)

    def add(self, skipped: Skipped, keep_rows: bool) -> None:
        if not self.skip_bad:
            raise DataError(
                f"unreadable {_singular(self.noun)}: {skipped.reason}",
                skipped.item,
                "fix or remove it, or pass --skip-bad to skip (and count) such items",
            )
        self.count += 1
        self.first = self.first or skipped
        if keep_rows:
            self.pending.append(skipped)

    def rows(self, item_column: str, columns: list[str]) -> pd.DataFrame:
        """The pending skipped items as output rows (their other columns empty)."""
        import pandas as pd

        frame = pd.DataFrame({c: [None] * len(self.pending) for c in columns}, dtype=object)
        frame[item_column] = [s.item for s in self.pending]
        frame[ERROR_COLUMN] = [s.reason for s in self.pending]
        self.pending = []
        return frame

    def report(self, stream: TextIO) -> None:
        if self.count and self.first is not None:
            noun = _singular(self.noun) if self.count == 1 else self.noun
            print(
                f"skipped {self.count} unreadable {noun} "
                f"(first: {self.first.item} — {self.first.reason})",
                file=stream,
                flush=True,
            )

    def none_readable(self, path: Path) -> DataError:
        if self.count and self.first is not None:
            return DataError(
                f"none of the {self.count} {self.noun} could be read "
                f"(first: {self.first.item} — {self.first.reason})",
                path,
                "check the files",
            )
        return DataError(f"no {self.noun} to read in the input", path, "check the --data path")


def _singular(noun: str) -> str:
    return noun[:-1] if noun.endswith("s") else noun


def _stream(
    plugin: Any,
    model: OnnxModel,
    path: Path,
    options: Mapping[str, Any],
    batch_size: int,
    labelled: bool,
) -> tuple[Iterable[InputBatch | Skipped], int | None]:
    stream = plugin.read_batches(model, path, options, batch_size, labelled=labelled)
    return stream, getattr(stream, "total", None)


def _decode(
    plugin: Any, model: OnnxModel, batch: InputBatch, options: Mapping[str, Any]
) -> pd.DataFrame:
    outputs = model.run(batch.inputs)
    return plugin.decode(model, batch, outputs, options)


def predict_to(
    plugin: Any,
    model: OnnxModel,
    path: Path,
    options: Mapping[str, Any],
    out: Path | None,
    batch_size: int,
    reporter: ProgressReporter | None = None,
) -> PredictSummary:
    """Predict every item of ``path`` into ``out`` (.csv/.json/.parquet; CSV on stdout when
    None), a batch at a time. With ``options["skip_bad"]`` the output has an ``error``
    column: empty for predictions, the reason for each skipped item's row. A failure leaves
    no output file (an existing one keeps its content)."""
    check_out(out)
    reporter = reporter or ProgressReporter()
    skips = _Skips(bool(options.get("skip_bad")), plugin.item_noun)
    item_column = plugin.item_column
    stream, total = _stream(plugin, model, Path(path), options, batch_size, labelled=False)
    predicted = read = 0
    with open_sink(out) as sink:
        with Throughput(total, plugin.item_noun, reporter) as progress:
            for entry in stream:
                if isinstance(entry, Skipped):
                    skips.add(entry, keep_rows=True)
                    progress.add(1)
                    continue
                frame = _decode(plugin, model, entry, options)
                if skips.skip_bad:
                    frame = _with_error_column(frame, item_column)
                if len(frame) or sink.columns is None:
                    sink.write(frame)
                    predicted += len(frame)
                if skips.pending:  # a batch's skipped items follow its predictions
                    sink.write(skips.rows(item_column, sink.columns or []))
                read += len(entry.items)
                progress.add(len(entry.items))
        if not read:  # items read may give no rows (a detector that finds nothing)
            raise skips.none_readable(Path(path))
        if skips.pending:
            sink.write(skips.rows(item_column, sink.columns or []))
    skips.report(reporter.stream)
    return PredictSummary(rows=predicted, skipped=skips.count)


def _with_error_column(frame: pd.DataFrame, item_column: str) -> pd.DataFrame:
    frame = frame.copy()
    if item_column not in frame.columns:
        frame.insert(0, item_column, None)
    frame[ERROR_COLUMN] = None
    return frame


def evaluate(
    plugin: Any,
    model: OnnxModel,
    path: Path,
    options: Mapping[str, Any],
    batch_size: int,
    reporter: ProgressReporter | None = None,
) -> dict[str, Any]:
    """Metrics of the model on labelled ``path``: the plugin's ``score`` of every decoded row
    (and each batch's ``extra``), plus ``skipped``: the number of unreadable items, and
    ``overlap``: how many evaluated items the run trained or validated on (by content; a
    warning on stderr when any did)."""
    import pandas as pd

    from .overlap import OverlapCounter

    reporter = reporter or ProgressReporter()
    overlap = OverlapCounter(model)
    skips = _Skips(bool(options.get("skip_bad")), plugin.item_noun)
    frames: list[pd.DataFrame] = []
    extras: list[Any] = []
    read = 0
    stream, total = _stream(plugin, model, Path(path), options, batch_size, labelled=True)
    with Throughput(total, plugin.item_noun, reporter, action="evaluating") as progress:
        for entry in stream:
            if isinstance(entry, Skipped):
                skips.add(entry, keep_rows=False)
                progress.add(1)
                continue
            frames.append(_decode(plugin, model, entry, options))
            overlap.add(entry.inputs)
            extras.append(entry.extra)
            read += len(entry.items)
            progress.add(len(entry.items))
    if not read:
        raise skips.none_readable(Path(path))
    rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    metrics = dict(plugin.score(model, rows, extras, options))
    metrics["skipped"] = skips.count
    if overlap.summary() is not None:
        metrics["overlap"] = overlap.summary()
    skips.report(reporter.stream)
    if overlap.warning():
        print(overlap.warning(), file=reporter.stream, flush=True)
    return metrics
