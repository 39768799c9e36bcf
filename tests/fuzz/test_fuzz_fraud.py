"""Fuzzing the fraud readers: CSV/Parquet tables with mixed types, encodings, empty columns,
huge values and duplicated names, through `read_table`, `prepare` and the schema encoder.

Every case ends in encoded matrices or a `TLError`; numeric values that come through are
the ones written (no silent coercion of text to NaN, no column swapped for a duplicate).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from fuzzkit import FUZZ, result_or_tl_error
from hypothesis import event, given
from hypothesis import strategies as st
from tl_fraud.prepare import prepare
from tl_fraud.readers import parse_datetime, parse_target, read_table
from tl_fraud.schema import TableSchema


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="tlfuzz-"))


@FUZZ
@given(blob=st.binary(max_size=500), suffix=st.sampled_from([".csv", ".tsv", ".parquet", ".txt"]))
def test_random_bytes_are_a_table_or_a_data_error(blob, suffix):
    path = _tmp() / f"t{suffix}"
    path.write_bytes(blob)
    frame, _ = result_or_tl_error(lambda: read_table(path))
    if frame is not None:
        assert len(frame) > 0 and frame.columns.is_unique


N = 60
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([1e308, -1e308, 1e-320, 0.0]),
)
column_kinds = st.sampled_from(["float", "int", "huge", "text", "mixed", "bool", "date", "empty",
                                "category", "constant", "unicode"])  # fmt: skip


def _column(kind: str, rng: np.random.Generator, extra) -> list:
    if kind == "float":
        return list(rng.normal(0, 100, N))
    if kind == "int":
        return list(rng.integers(0, 10**6, N))
    if kind == "huge":
        return [extra[i % len(extra)] if extra else 1e308 for i in range(N)]
    if kind == "text":
        return [f"w{int(v)}" for v in rng.integers(0, 5, N)]
    if kind == "mixed":
        return [1, "a", 2.5, None, True, "3"] * (N // 6)
    if kind == "bool":
        return list(rng.random(N) < 0.5)
    if kind == "date":
        return [f"2024-0{1 + i % 9}-1{i % 10} 1{i % 10}:00:00" for i in range(N)]
    if kind == "empty":
        return [None] * N
    if kind == "category":
        return [["x", "y", "z"][i % 3] for i in range(N)]
    if kind == "constant":
        return [7] * N
    return [["é", "ß", "日本", "🙂", "a\nb"][i % 5] for i in range(N)]


tables = st.fixed_dictionaries(
    {
        "kinds": st.lists(column_kinds, min_size=1, max_size=5),
        "names": st.lists(
            st.sampled_from(["a", "b", "a", "amount", "y ", "ts", "é"]), min_size=5, max_size=5
        ),  # fmt: skip
        "target": st.sampled_from(["01", "bool", "words", "one_class", "three", "missing_some"]),
        "format": st.sampled_from(["csv", "csv-latin1", "csv-utf16", "parquet", "tsv"]),
        "extra": st.lists(numbers, max_size=4),
        "seed": st.integers(0, 2**16),
        "time": st.booleans(),
    }
)


def _target(kind: str, rng) -> list:
    base = (rng.random(N) < 0.3).astype(int)
    base[:6] = [0, 1, 0, 1, 0, 1]
    if kind == "bool":
        return [bool(v) for v in base]
    if kind == "words":
        return ["fraud" if v else "ok" for v in base]
    if kind == "one_class":
        return [0] * N
    if kind == "three":
        return [i % 3 for i in range(N)]
    if kind == "missing_some":
        return [None if i % 7 == 0 else int(v) for i, v in enumerate(base)]
    return list(base)


def _write(frame: pd.DataFrame, fmt: str, root: Path) -> Path | None:
    if fmt == "parquet":
        path = root / "t.parquet"
        try:
            frame.to_parquet(path)
        except (ValueError, TypeError, OverflowError, ImportError) as exc:  # pyarrow refuses
            del exc
            return None
        return path
    sep, enc = ("\t", "utf-8") if fmt == "tsv" else (",", {"csv": "utf-8", "csv-latin1": "latin-1",
                                                          "csv-utf16": "utf-16"}[fmt])  # fmt: skip
    path = root / ("t.tsv" if fmt == "tsv" else "t.csv")
    path.write_bytes(frame.to_csv(index=False, sep=sep).encode(enc, errors="replace"))
    return path


@FUZZ
@given(case=tables)
def test_tables_prepare_or_fail_cleanly(case):
    rng = np.random.default_rng(case["seed"])
    columns = [
        (case["names"][i], _column(k, rng, case["extra"])) for i, k in enumerate(case["kinds"])
    ]
    frame = pd.DataFrame({f"c{i}": v for i, (_, v) in enumerate(columns)})
    frame.columns = [name for name, _ in columns]
    frame["is_fraud"] = _target(case["target"], rng)
    if case["time"]:
        frame["when"] = pd.date_range("2024-01-01", periods=N, freq="h").astype(str)
    path = _write(frame, case["format"], _tmp())
    if path is None:
        return
    options = {"target": "is_fraud", "seed": 0, "time_column": "when" if case["time"] else None}
    prepared, error = result_or_tl_error(lambda: prepare(path, options))
    duplicated = len(set(frame.columns)) < len(frame.columns)
    if duplicated:
        assert error is not None, "duplicated column names must be refused, not renamed"
    event("refused" if prepared is None else "prepared")
    if prepared is None:
        return
    assert prepared.numeric.dtype == np.float32 and prepared.categorical.dtype == np.int64
    assert len(prepared.numeric) == len(prepared.split) == prepared.info["rows_used"]
    assert prepared.categorical.min(initial=0) >= 0
    # the encoder's plain numeric columns are the values that were written
    raw = read_table(path).iloc[prepared.rows]
    for j, feature in enumerate(prepared.schema.numeric):
        if feature.kind == "numeric" and pd.api.types.is_numeric_dtype(raw[feature.source]):
            expected = raw[feature.source].to_numpy(dtype=np.float64).astype(np.float32)
            np.testing.assert_array_equal(prepared.numeric[:, j], expected)
    # the schema survives its JSON round trip (it travels in the ONNX metadata)
    again = TableSchema.from_dict(prepared.schema.to_dict())
    numeric, categorical, _ = again.encode(raw.reset_index(drop=True))
    np.testing.assert_array_equal(numeric, prepared.numeric)
    np.testing.assert_array_equal(categorical, prepared.categorical)


@FUZZ
@given(
    values=st.lists(
        st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=6)), max_size=12
    ),  # fmt: skip
    positive=st.one_of(st.none(), st.text(max_size=3)),
)
def test_parse_target_is_labels_or_an_error(values, positive):
    series = pd.Series(values, dtype=object)
    out, _ = result_or_tl_error(lambda: parse_target(series, positive))
    if out is not None:
        labels, _ = out
        assert set(np.unique(labels)) <= {-1, 0, 1}
        assert (labels == -1).sum() == series.isna().sum()


@FUZZ
@given(values=st.lists(st.one_of(st.none(), numbers, st.text(max_size=20),
                                 st.sampled_from(["2024-01-01", "2024-13-45", "12:00", "1e20"])),
                       max_size=12))  # fmt: skip
def test_parse_datetime_never_raises(values):
    parsed = parse_datetime(pd.Series(values, dtype=object))
    assert len(parsed) == len(values)
