"""`tl predict` / `tl evaluate` for fraud models: onnxruntime only, no torch.

The graph takes the raw columns (`raw_inputs`: one input per column, named after it) and
encodes them itself; this module converts each chunk of the table the way the reader
does (numbers, boolean words, timestamps to epoch seconds), checks it with the schema in the
model's metadata and counts unseen categories. Models exported before raw inputs take the
schema's ``numeric``/``categorical`` encoding, which is still fed to them. The core
(`tl.core.inference`) runs the model, shows progress, counts skipped rows and writes the
output; this module reads the table a chunk at a time (`read_batches`), turns
probabilities into rows (`decode`) and rows into metrics (`score`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import Batches, DataError, InputBatch, OnnxModel, Skipped

from .metrics import fraud_metrics
from .raw_inputs import check_columns, feeds, inputs_of, unseen_counts
from .readers import (
    PARQUET_SUFFIXES,
    SCORING_FIX,
    iter_table,
    parse_target,
    read_table,
    require_label,
)
from .schema import TableSchema

CHUNK_ROWS = 50_000  # rows read and encoded at a time: memory is bounded by this, not the file
BATCH_ROWS = 8192  # rows per onnxruntime call: its arena grows with the largest batch
ROW = "row"  # the 0-based row of the input file: an item's id in the output


def schema_of(model: OnnxModel) -> TableSchema:
    if model.meta.get("plugin") != "fraud" or "schema" not in model.meta:
        raise DataError(
            f"this is not a fraud model (plugin '{model.meta.get('plugin')}')",
            model.path,
            "pass a run directory made by `tl run fraud`",
        )
    return TableSchema.from_dict(model.meta["schema"])


def warn_unseen(unseen: dict[str, int], stream: Any = None) -> None:
    stream = stream or sys.stderr
    for column, count in unseen.items():
        print(
            f"warning: {count} value(s) of '{column}' were not seen in training; scored as unknown",
            file=stream,
        )


def read_batches(
    model: OnnxModel, path: Path, options: Mapping[str, Any], labelled: bool = False
) -> Batches:
    """Model inputs of the table, `BATCH_ROWS` rows a batch, read `CHUNK_ROWS` at a time.

    ``items`` keep the table's id columns and time column (``row``, the file's row, when it
    has neither; always with ``--skip-bad``, where a skipped row is named by it, and with
    ``labelled``, where splits.csv names rows by it); with ``labelled`` also ``target``. A row that cannot be encoded is a `Skipped` under
    ``--skip-bad`` (else the chunk's `DataError`). Each batch's ``extra`` holds the
    unseen-category counts not yet reported by an earlier batch (the first one's: also the
    rows without a label, which are not scored)."""
    schema = schema_of(model)
    path = Path(path)
    unlabelled = 0
    if labelled:
        frame, labels = _labelled_table(model, path, options)
        known = labels >= 0
        unlabelled = int((~known).sum())
        frame, labels = frame[known], labels[known]
        chunks = (
            (frame.iloc[i : i + CHUNK_ROWS], labels[i : i + CHUNK_ROWS])
            for i in range(0, len(frame), CHUNK_ROWS)
        )
        total = len(frame)
    else:
        chunks = ((c, None) for c in iter_table(path, CHUNK_ROWS, plain=schema.source_columns))
        total = _row_count(path)
    skip_bad = bool(options.get("skip_bad"))
    return Batches(_batches(model, schema, path, chunks, skip_bad, unlabelled), total)


def _batches(
    model: OnnxModel,
    schema: TableSchema,
    path: Path,
    chunks: Iterator[tuple[pd.DataFrame, np.ndarray | None]],
    skip_bad: bool,
    unlabelled: int,
) -> Iterator[InputBatch | Skipped]:
    meta = model.meta
    raw_inputs = inputs_of(meta)
    wanted = [c for c in (*meta["schema"].get("id_columns", []), meta.get("time_column")) if c]
    unseen_total: dict[str, int] = {}
    extra: dict[str, Any] = {"unseen": {}, "unlabelled": unlabelled}
    for frame, labels in chunks:
        if skip_bad:
            problems = schema.row_problems(frame)
            for index, reason in problems.items():
                yield Skipped(str(index), reason)
            if len(problems):
                keep = ~frame.index.isin(problems.index)
                frame = frame[keep]
                labels = None if labels is None else labels[keep]
        if not len(frame):
            continue
        if raw_inputs is None:
            numeric, categorical, unseen = schema.encode(frame, str(path))
            inputs = {"numeric": numeric, "categorical": categorical}
        else:
            check_columns(frame, schema, str(path))
            inputs = feeds(frame, raw_inputs, schema, str(path))
            unseen = unseen_counts(frame, schema)
        for column, count in unseen.items():
            unseen_total[column] = unseen_total.get(column, 0) + count
            extra["unseen"][column] = extra["unseen"].get(column, 0) + count
        items = _items(frame, wanted, skip_bad or labels is not None)
        if labels is not None:
            items["target"] = labels
        for start in range(0, len(frame), BATCH_ROWS):
            end = start + BATCH_ROWS
            batch = {name: values[start:end] for name, values in inputs.items()}
            yield InputBatch(batch, items.iloc[start:end].reset_index(drop=True), extra)
            extra = {"unseen": {}, "unlabelled": 0}
    warn_unseen(unseen_total)


def _items(frame: pd.DataFrame, wanted: list[str], with_row: bool) -> pd.DataFrame:
    keep = [c for c in wanted if c in frame.columns]
    items = frame[keep].copy() if keep else pd.DataFrame(index=frame.index)
    if with_row or not keep:
        items.insert(0, ROW, frame.index.to_numpy())
    return items


def _labelled_table(
    model: OnnxModel, path: Path, options: Mapping[str, Any]
) -> tuple[pd.DataFrame, np.ndarray]:
    """`tl evaluate`'s table and its 0/1 labels (-1: no label), parsed over the whole file
    so that the classes are known before any chunk is scored."""
    meta = model.meta
    target = options.get("target") or meta.get("target")
    columns = [*schema_of(model).source_columns, *([target] if target else [])]
    frame = read_table(path, plain=columns, fix=SCORING_FIX)
    require_label(frame, target, path)
    labels, _ = parse_target(frame[target], options.get("positive") or meta.get("positive_label"))
    return frame, labels


def _row_count(path: Path) -> int | None:
    """Rows of a Parquet file from its footer (progress shows done/total); None for CSV."""
    if path.suffix.lower() not in PARQUET_SUFFIXES or not path.is_file():
        return None
    try:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # a damaged file: reading it raises the right DataError
        return None


def decode(model: OnnxModel, batch: InputBatch, outputs: dict[str, Any]) -> pd.DataFrame:
    """The batch's rows with ``fraud_probability`` and ``alert`` (probability ≥ the model's
    threshold, the one chosen on validation at training time: the graph's own decision)."""
    probability = np.asarray(outputs["probability"]).reshape(-1)
    rows = batch.items.copy()
    rows["fraud_probability"] = probability
    if "alert" in outputs:
        rows["alert"] = np.asarray(outputs["alert"]).reshape(-1).astype(bool)
    else:
        rows["alert"] = probability >= float(model.meta.get("threshold", 0.5))
    return rows


def score(model: OnnxModel, rows: pd.DataFrame, extras: list[Any]) -> dict[str, Any]:
    """`tl evaluate`: the training metrics at the model's threshold, plus the rows without a
    label and the unseen category values per column."""
    unseen: dict[str, int] = {}
    unlabelled = 0
    for extra in extras:
        for column, count in (extra or {}).get("unseen", {}).items():
            unseen[column] = unseen.get(column, 0) + count
        unlabelled += int((extra or {}).get("unlabelled", 0))
    metrics = fraud_metrics(
        rows["fraud_probability"].to_numpy(dtype=np.float64),
        rows["target"].to_numpy(dtype=np.int64),
        float(model.meta.get("threshold", 0.5)),
    )
    metrics["rows_without_label"] = unlabelled
    metrics["unseen_categories"] = unseen
    return metrics
