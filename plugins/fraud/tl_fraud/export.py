"""What is exported for a fraud model: raw columns in, fraud probability and alert out.

The torch network (`model.ProbabilityModel`, scaling and imputation inside) is exported by
the core; `compose` puts the preprocessing graph (`onnx_preprocess`) in front of it and the
alert decision after it. Before that, `verify_preprocessing` runs the preprocessing graph
on real test rows (and on rows with every boolean spelling, missing and unseen values) and
fails the export unless it encodes them as tl does. The core's parity check then compares
the whole graph, fed the raw rows, with torch fed tl's encoding of the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tl.core import ExportError

from .raw_inputs import MISSING_TIME, RawInput, feeds, plan_inputs
from .readers import iter_table
from .schema import BOOLEAN, TableSchema

BATCH_ROWS = 2048
MAX_BATCHES = 16
if TYPE_CHECKING:  # pragma: no cover
    from tl.core import ComposedExportSpec

ENCODING_TOLERANCE = 1e-5
_PROBE_VALUES = ["__tl_unseen__", "", None]


def export_spec(model: Any, data: Any, fitted: Any) -> ComposedExportSpec:
    """The `ComposedExportSpec` of ``model`` trained on ``data`` (the threshold from ``fitted``)."""
    from tl.core import ComposedExportSpec  # torch: `tl.core.export`

    from .model import ProbabilityModel

    schema = data.prepared.schema
    threshold = float(fitted.export["threshold"])
    numeric, categorical, _ = data.prepared.part("test")
    limit = BATCH_ROWS * MAX_BATCHES
    frame = test_rows(data, limit)
    inputs = plan_inputs(schema, frame)
    raw = feeds(frame, inputs, schema, "the test split")
    batches, onnx_batches = [], []
    for start in range(0, min(len(numeric), limit), BATCH_ROWS):
        end = start + BATCH_ROWS
        batches.append({"numeric": numeric[start:end], "categorical": categorical[start:end]})
        onnx_batches.append({name: values[start:end] for name, values in raw.items()})
    encoding = verify_preprocessing(schema, inputs, frame, numeric[:limit], categorical[:limit])
    return ComposedExportSpec(
        module=ProbabilityModel(model).cpu().eval(),
        batches=batches,
        input_names=["numeric", "categorical"],
        output_names=["probability"],
        dynamic_axes={
            "numeric": {0: "batch"},
            "categorical": {0: "batch"},
            "probability": {0: "batch"},
        },
        metadata={**export_metadata(data, threshold, inputs), "encoding_parity": encoding},
        compare=["probability"],
        agreement_output="probability",
        tolerance=1e-4,
        compose=lambda network: _compose(schema, inputs, network, threshold),
        onnx_batches=onnx_batches,
    )


def test_rows(data: Any, limit: int) -> pd.DataFrame:
    """The first ``limit`` test rows of the training file, raw, in the split's order (the
    file is read again, a chunk at a time)."""
    prepared = data.prepared
    wanted = prepared.rows[prepared.split == "test"][:limit]
    columns = prepared.schema.source_columns
    parts, position = [], set(wanted.tolist())
    for chunk in iter_table(Path(data.info["file"]), 50_000, plain=columns):
        parts.append(chunk.loc[chunk.index.isin(position), columns])
        if chunk.index[-1] >= wanted.max(initial=0):
            break
    frame = pd.concat(parts) if parts else pd.DataFrame(columns=columns)
    if len(frame) != len(wanted):
        raise ExportError(
            "the training file changed while the run trained",
            data.info["file"],
            "rerun `tl run` on an unchanging file",
        )
    return frame.loc[wanted]


def _compose(schema: TableSchema, inputs: list[RawInput], network: Any, threshold: float) -> Any:
    from .onnx_preprocess import compose_model, preprocessing_graph

    opset = next(o.version for o in network.opset_import if o.domain in ("", "ai.onnx"))
    prep = preprocessing_graph(schema, inputs, opset, network.ir_version)
    return compose_model(prep, network, threshold)


# ------------------------------------------------------------------ encoding parity
def verify_preprocessing(
    schema: TableSchema,
    inputs: list[RawInput],
    frame: pd.DataFrame,
    numeric: np.ndarray,
    categorical: np.ndarray,
) -> dict[str, Any]:
    """Max difference between tl's encoding and the preprocessing graph's, on the test
    rows (``numeric``/``categorical``: tl's encoding of ``frame``) and on probe rows; an
    `ExportError` above `ENCODING_TOLERANCE` or on any code or missing value that differs."""
    probes = probe_rows(frame, schema, inputs)
    probe_numeric, probe_categorical, _ = schema.encode(probes, "probe rows")
    rows = pd.concat([frame, probes], ignore_index=True)
    expected_numeric = np.concatenate([numeric, probe_numeric])
    expected_codes = np.concatenate([categorical, probe_categorical])
    got_numeric, got_codes = run_preprocessing(schema, inputs, feeds(rows, inputs, schema))
    missing_same = np.array_equal(np.isnan(got_numeric), np.isnan(expected_numeric))
    present = ~np.isnan(expected_numeric)
    diff = np.abs(got_numeric[present] - expected_numeric[present])
    max_diff = float(diff.max()) if diff.size else 0.0
    codes_same = np.array_equal(got_codes, expected_codes)
    if not (missing_same and codes_same and max_diff <= ENCODING_TOLERANCE):
        what = (
            "category codes"
            if not codes_same
            else "missing values"
            if not missing_same
            else "values"
        )
        raise ExportError(
            f"the ONNX preprocessing encodes {what} differently from tl (max diff {max_diff:.2e})",
            "export",
            "the export is wrong; do not deploy it — report this with --verbose",
        )
    return {"rows": len(rows), "probe_rows": len(probes), "max_abs_diff": max_diff}


def run_preprocessing(
    schema: TableSchema, inputs: list[RawInput], raw: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    from .onnx_preprocess import preprocessing_graph

    prep = preprocessing_graph(schema, inputs, 18, 10)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        prep.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    numeric, codes = session.run(None, raw)
    return numeric, codes


def probe_rows(frame: pd.DataFrame, schema: TableSchema, inputs: list[RawInput]) -> pd.DataFrame:
    """Rows that hold what the test split may not: every boolean spelling, missing values,
    unseen categories, a time before 1970 and none. Built from the first test row, as text
    where the column is text (so each spelling reaches the graph as written)."""
    from .schema import BOOL_WORDS

    base = frame.iloc[[0]] if len(frame) else pd.DataFrame({c: [None] for c in frame.columns})
    words = [w for word in BOOL_WORDS for w in (word, word.upper(), word.title())]
    n = max(len(words) + 1, len(_PROBE_VALUES), 3)
    probes = pd.concat([base] * n, ignore_index=True).astype(object)
    for spec in inputs:
        column = spec.column
        if spec.kind == BOOLEAN:
            probes[column] = (words + [""] * n)[:n]
        elif spec.type == "datetime":
            times = ["1969-12-31 23:59:00", "1900-03-01 07:45:00", None]
            probes[column] = (times * n)[:n]
        elif spec.type == "string":
            probes[column] = (_PROBE_VALUES * n)[:n]
        else:
            probes[column] = ([np.nan, probes[column].iloc[0], -0.0] * n)[:n]
    return probes.infer_objects()


# ------------------------------------------------------------------ metadata
def export_metadata(
    data: Any, threshold: float, inputs: list[RawInput] | None = None
) -> dict[str, Any]:
    """Labels, the fitted alert ``threshold`` and its rule, the target, the schema (column
    kinds, vocabularies) and the graph's ``inputs`` (one per raw column). Without
    ``inputs``: the metadata of the bare network (encoded ``numeric``/``categorical``)."""
    schema = data.prepared.schema
    if inputs is None:
        return _encoded_metadata(data, threshold)
    return {
        "labels": ["legit", "fraud"],
        "threshold": float(threshold),
        "threshold_rule": data.rule.describe(),
        "target": data.info.get("target"),
        "positive_label": data.info.get("positive_label"),
        "time_column": data.info.get("time_column"),
        "schema": schema.to_dict(),
        "inputs": [input_metadata(spec) for spec in inputs],
        "outputs": {
            "probability": "float32 [batch]: probability of fraud",
            "alert": "bool [batch]: probability >= threshold (chosen on validation)",
        },
        "preprocessing": {
            "in_graph": [
                "category → code (ai.onnx.ml LabelEncoder over the schema's vocab; "
                "unseen or missing → 0)",
                "boolean spelling → 1/0 (LabelEncoder; anything else → missing)",
                "datetime → hour + minute/60, weekday (Monday = 0), day, from epoch seconds",
                "log1p for skewed columns, median/IQR scaling, clipping to ±8",
                "missing → learned token",
                "alert = probability >= threshold",
            ],
            "outside_graph": ["strip surrounding whitespace from text values"],
        },
    }


def input_metadata(spec: RawInput) -> dict[str, Any]:
    from tl.core import input_entry  # lazily: it lives with the exporter (torch)

    details: dict[str, Any] = {"dtype": spec.dtype, "shape": ["batch"], "kind": spec.kind}
    if spec.type == "datetime":
        details["unit"] = "seconds since 1970-01-01 UTC (naive timestamps are read as UTC)"
        details["missing"] = int(MISSING_TIME)
    elif spec.type == "boolean":
        details["accepts"] = "true/false, yes/no, t/f (any letter case), 1/0"
        details["missing"] = ""
    elif spec.type == "string":
        details["missing"] = ""
        details["unseen"] = "scored as the unknown category"
    else:
        details["missing"] = "NaN"
    return input_entry(spec.name, spec.type, spec.column, **details)


def _encoded_metadata(data: Any, threshold: float) -> dict[str, Any]:
    """For a graph exported without the preprocessing in front (``ExportSpec`` of the bare
    `ProbabilityModel`): tl's encoding is then the caller's, as `tl predict` still does it."""
    schema = data.prepared.schema
    return {
        "labels": ["legit", "fraud"],
        "threshold": float(threshold),
        "threshold_rule": data.rule.describe(),
        "target": data.info.get("target"),
        "positive_label": data.info.get("positive_label"),
        "time_column": data.info.get("time_column"),
        "schema": schema.to_dict(),
        "encoded_inputs": {
            "numeric": {"dtype": "float32", "columns": schema.numeric_names, "missing": "NaN"},
            "categorical": {
                "dtype": "int64",
                "columns": schema.categorical_names,
                "codes": "1-based index into the column's vocab; 0 = unknown",
            },
        },  # fmt: skip
        "output": "probability of fraud",
    }
