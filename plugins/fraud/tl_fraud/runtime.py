"""`tl predict` / `tl evaluate` for fraud models: onnxruntime only, no torch.

The table is encoded with the schema stored in the model's metadata (vocabularies, column
kinds, datetime parts); scaling and imputation then happen inside the ONNX graph.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tl.core import DataError, OnnxModel

from .metrics import fraud_metrics
from .readers import iter_table, parse_target, read_table, require_column
from .schema import TableSchema

BATCH_ROWS = 8192  # rows per onnxruntime call: its arena grows with the largest batch
CHUNK_ROWS = 50_000  # rows read, encoded and written at a time by `tl predict`


def schema_of(model: OnnxModel) -> TableSchema:
    if model.meta.get("plugin") != "fraud" or "schema" not in model.meta:
        raise DataError(
            f"this is not a fraud model (plugin '{model.meta.get('plugin')}')",
            model.path,
            "pass a run directory made by `tl run fraud`",
        )
    return TableSchema.from_dict(model.meta["schema"])


def score_frame(
    model: OnnxModel, frame: pd.DataFrame, where: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Fraud probability per row, and the unseen-category counts per column."""
    numeric, categorical, unseen = schema_of(model).encode(frame, where)
    scores = []
    for start in range(0, len(frame), BATCH_ROWS):
        feeds = {
            "numeric": numeric[start : start + BATCH_ROWS],
            "categorical": categorical[start : start + BATCH_ROWS],
        }
        scores.append(model.run(feeds)["probability"].reshape(-1))
    return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32), unseen


def warn_unseen(unseen: dict[str, int], stream: Any = None) -> None:
    stream = stream or sys.stderr
    for column, count in unseen.items():
        print(
            f"warning: {count} value(s) of '{column}' were not seen in training; scored as unknown",
            file=stream,
        )


def predict_table(model: OnnxModel, path: Path) -> pd.DataFrame:
    """All predictions as one frame (small files; `stream_predictions` for big ones)."""
    frames = list(iter_predictions(model, Path(path), chunk_rows=10**12))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def iter_predictions(
    model: OnnxModel, path: Path, chunk_rows: int = CHUNK_ROWS, progress: Any = None
) -> Iterator[pd.DataFrame]:
    """Predictions chunk by chunk: memory is bounded by ``chunk_rows``, not by the file."""
    meta = model.meta
    schema_of(model)
    threshold = float(meta.get("threshold", 0.5))
    unseen_total: dict[str, int] = {}
    done, started = 0, time.time()
    for frame in iter_table(Path(path), chunk_rows):
        scores, unseen = score_frame(model, frame, str(path))
        for column, count in unseen.items():
            unseen_total[column] = unseen_total.get(column, 0) + count
        keep = [
            c
            for c in (*meta["schema"].get("id_columns", []), meta.get("time_column"))
            if c and c in frame.columns
        ]
        out = frame[keep].copy() if keep else pd.DataFrame({"row": frame.index.to_numpy()})
        out["fraud_probability"] = scores
        out["alert"] = scores >= threshold
        done += len(frame)
        if progress is not None:
            rate = done / max(time.time() - started, 1e-9)
            progress.log(f"scored {done:,} rows ({rate:,.0f} rows/s)")
        yield out.reset_index(drop=True)
    warn_unseen(unseen_total)


def stream_predictions(model: OnnxModel, path: Path, out: Path | None) -> int:
    """`tl predict` for fraud: chunked read → score → append to ``out`` (.csv, .parquet,
    .json; stdout when None), written to a temp name and renamed. Returns the row count."""
    from tl.core.fileio import atomic_path
    from tl.core.progress import ProgressReporter

    chunks = iter_predictions(model, Path(path), progress=ProgressReporter())
    rows = 0
    if out is None:
        for i, chunk in enumerate(chunks):
            sys.stdout.write(chunk.to_csv(index=False, header=i == 0))
            rows += len(chunk)
        sys.stdout.flush()
        return rows
    out = Path(out)
    with atomic_path(out) as tmp:
        if out.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            try:
                for chunk in chunks:
                    table = pa.Table.from_pandas(chunk, preserve_index=False)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table.cast(writer.schema))
                    rows += len(chunk)
            finally:
                if writer is not None:
                    writer.close()
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                json_out = out.suffix == ".json"
                fh.write("[" if json_out else "")
                for i, chunk in enumerate(chunks):
                    if json_out:
                        body = chunk.to_json(orient="records", lines=True).strip()
                        fh.write(("," if i and body else "") + body.replace("\n", ",\n"))
                    else:
                        fh.write(chunk.to_csv(index=False, header=i == 0))
                    rows += len(chunk)
                fh.write("]\n" if json_out else "")
    return rows


def evaluate_table(model: OnnxModel, path: Path, options: dict[str, Any]) -> dict[str, Any]:
    frame = read_table(Path(path))
    meta = model.meta
    target = options.get("target") or meta.get("target")
    require_column(frame, target, "--target")
    labels, _ = parse_target(frame[target], options.get("positive") or meta.get("positive_label"))
    known = labels >= 0
    scores, unseen = score_frame(model, frame.loc[known], str(path))
    warn_unseen(unseen)
    metrics = fraud_metrics(scores, labels[known], float(meta.get("threshold", 0.5)))
    metrics["rows_without_label"] = int((~known).sum())
    metrics["unseen_categories"] = unseen
    return metrics
