"""Fuzzing the recsys reader: interaction logs (CSV/TSV/.inter/Parquet) with odd ids,
timestamps, ratings, encodings and headers. Every case ends in a clean log or a `TLError`,
and what comes through is exactly the written rows minus the counted drops."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from fuzzkit import FUZZ, result_or_tl_error
from hypothesis import given
from hypothesis import strategies as st
from tl_recsys.readers import LogColumns, read_log
from tl_recsys.sequences import build_vocab, encode


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="tlfuzz-"))


@FUZZ
@given(blob=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".tsv", ".inter", ".parquet",
                                                             ".txt"]))  # fmt: skip
def test_random_bytes_are_a_log_or_a_data_error(blob, suffix):
    path = _tmp() / f"log{suffix}"
    path.write_bytes(blob)
    result_or_tl_error(lambda: read_log(path))


ids = st.one_of(st.integers(-5, 30), st.sampled_from(["", " ", "u1", "é", "1.0", "nan", "a,b",
                                                      "x\ny", "0", "01"]))  # fmt: skip
times = st.one_of(st.none(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True),
                  st.sampled_from(["2024-01-01", "yesterday", "2024-02-30", "", "1e300"]))  # fmt: skip
ratings = st.one_of(st.none(), st.floats(-10, 10), st.sampled_from(["5", "x", ""]))


@FUZZ
@given(
    rows=st.lists(st.tuples(ids, ids, times, ratings), min_size=0, max_size=30),
    header=st.sampled_from(["normal", "renamed", "duplicated", "no_time"]),
    fmt=st.sampled_from(["csv", "tsv", "inter", "parquet", "csv-utf16"]),
    min_rating=st.one_of(st.none(), st.floats(0, 5)),
)
def test_logs_read_or_fail_cleanly(rows, header, fmt, min_rating):
    names = {"normal": ["user_id", "item_id", "timestamp", "rating"],
             "renamed": ["user", "item", "timestamp", "rating"],
             "duplicated": ["user_id", "item_id", "item_id", "rating"],
             "no_time": ["user_id", "item_id", "t", "rating"]}[header]  # fmt: skip
    frame = pd.DataFrame([[str(v) if v is not None else None for v in r] for r in rows],
                         columns=names if rows else None, dtype=object)  # fmt: skip
    if not rows:
        frame = pd.DataFrame(columns=names)
    root = _tmp()
    if fmt == "parquet":
        path = root / "log.parquet"
        try:
            frame.to_parquet(path)
        except (ValueError, TypeError):
            return
    else:
        sep = "," if fmt.startswith("csv") else "\t"
        path = root / {"csv": "log.csv", "csv-utf16": "log.csv", "tsv": "log.tsv",
                       "inter": "log.inter"}[fmt]  # fmt: skip
        text = frame.to_csv(index=False, sep=sep)
        path.write_bytes(text.encode("utf-16" if fmt == "csv-utf16" else "utf-8"))
    readout, error = result_or_tl_error(lambda: read_log(path, LogColumns(), min_rating))
    if header == "duplicated" and fmt != "parquet":
        assert error is not None, "a duplicated column name must be refused"
    if readout is None:
        return
    clean = readout.frame
    assert list(clean.columns[:3]) == ["user_id", "item_id", "timestamp"]
    assert clean["user_id"].notna().all() and clean["item_id"].notna().all()
    assert np.isfinite(clean["timestamp"].to_numpy(dtype=float)).all() or not readout.has_time
    dropped = sum(readout.notes.values())
    assert len(clean) + dropped >= readout.n_rows_read - 0  # every missing row is counted
    assert len(clean) <= readout.n_rows_read
    seqs = encode(clean, build_vocab(clean["item_id"]))
    assert len(seqs) == clean["user_id"].nunique()
