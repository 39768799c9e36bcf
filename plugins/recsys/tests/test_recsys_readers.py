"""Readers and cleaning: formats, configurable columns, bad input as one-line errors or counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tl.core import ConfigError, DataError
from tl_recsys.dataset import load_data
from tl_recsys.readers import LogColumns, read_log


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


LOG = """user_id,item_id,timestamp,rating
u1,a,3,5
u1,b,1,4
u1,c,2,1
u1,d,4,5
u2,a,10,5
u2,b,11,5
u2,c,12,5
u3,a,1,5
u3,b,2,5
"""


def test_csv_sorted_by_time_and_short_users_counted(tmp_path: Path, config) -> None:
    data = load_data(write(tmp_path / "log.csv", LOG), config())
    assert data.vocab == ["a", "b", "c", "d"]
    assert data.info["users"] == 2
    assert data.info["dropped"]["users_with_fewer_than_3_interactions"] == 1
    u1 = [data.vocab[i - 1] for i in data.seqs.of(0)]
    assert u1 == ["b", "c", "a", "d"]  # by timestamp, not file order
    test = data.test[0]
    assert data.vocab[test["target"] - 1] == "d"
    assert [data.vocab[i - 1] for i in test["seen"]] == ["b", "c", "a"]
    assert data.vocab[data.val[0]["target"] - 1] == "a"
    assert set(data.splits["split"]) == {"train", "val", "test"}
    assert len(data.splits) == data.info["interactions"] == 7


def test_min_rating_first_k_and_duplicates(tmp_path: Path, config) -> None:
    path = write(tmp_path / "log.csv", LOG + "u2,c,12,5\n")
    data = load_data(path, config(min_rating=4))
    assert data.info["dropped"]["rows_below_min_rating"] == 1
    assert data.info["dropped"]["duplicate_rows"] == 1
    data = load_data(path, config(first_k=3))
    assert data.info["dropped"]["interactions_after_first_k_dropped"] == 1
    assert data.seqs.lengths.max() == 3
    with pytest.raises(ConfigError, match="first-k"):
        load_data(path, config(first_k=2))


def test_recbole_inter_and_parquet_with_integer_ids(tmp_path: Path) -> None:
    inter = write(
        tmp_path / "ml.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t5\t100\n1\t20\t4\t101\n1\t30\t3\t102\n",
    )
    frame = read_log(inter).frame
    assert frame["item_id"].tolist() == ["10", "20", "30"]
    parquet = tmp_path / "log.parquet"
    pd.DataFrame({"uid": [7, 7, 7], "sku": [1.0, 2.0, np.nan], "when": [1, 2, 3]}).to_parquet(
        parquet
    )
    readout = read_log(parquet, LogColumns(user="uid", item="sku", time="when"))
    assert readout.frame["item_id"].tolist() == ["1", "2"]
    assert readout.notes["rows_with_missing_id"] == 1


def test_date_strings_and_partly_unparsable_timestamps(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.csv",
        "user_id,item_id,timestamp\nu,a,2024-01-03\nu,b,2024-01-01\nu,c,not a date\nu,d,2024-01-02\n",
    )
    readout = read_log(path)
    assert readout.frame["item_id"].tolist() == ["b", "d", "a"]
    assert readout.notes["rows_with_unparsable_timestamp"] == 1


def test_no_timestamp_keeps_file_order(tmp_path: Path, config) -> None:
    data = load_data(write(tmp_path / "log.csv", "user_id,item_id\nu,z\nu,y\nu,x\n"), config())
    assert data.info["ordered_by"].startswith("row order")
    assert [data.vocab[i - 1] for i in data.seqs.of(0)] == ["z", "y", "x"]


@pytest.mark.parametrize(
    ("text", "options", "match"),
    [
        ("", {}, "empty"),
        ("user_id,item_id\n", {}, "no rows"),
        ("user,item_id\nu,a\n", {}, "column 'user_id' is not in the data.*did you mean 'user'"),
        ("user_id,item_id\nu,a\n", {"item_column": "sku"}, "column 'sku' is not in the data"),
        ("user_id,item_id,timestamp\nu,a,x\nu,b,y\n", {}, "no timestamp"),
        ("user_id,item_id\nu,a\nu,b\nv,a\n", {}, "3 or more interactions"),
    ],
)
def test_bad_input_is_one_line_error(
    tmp_path: Path, config, text: str, options: dict, match: str
) -> None:
    with pytest.raises(DataError, match=match) as info:
        load_data(write(tmp_path / "log.csv", text), config(**options))
    assert "\n" not in info.value.line()


def test_bad_paths_and_options(tmp_path: Path, config) -> None:
    with pytest.raises(DataError, match="not found"):
        load_data(tmp_path / "missing.csv", config())
    with pytest.raises(DataError, match="unsupported"):
        load_data(write(tmp_path / "log.json", "{}"), config())
    with pytest.raises(ConfigError, match="min-rating"):
        load_data(write(tmp_path / "log.csv", "user_id,item_id\nu,a\n"), config(min_rating=3))
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage\x00\x81")
    with pytest.raises(DataError):
        load_data(tmp_path / "bin.csv", config())


def test_demo_has_two_markets_with_partly_shared_catalogue(demo_dir: Path) -> None:
    a = pd.read_csv(demo_dir / "market_a.csv")
    b = pd.read_csv(demo_dir / "market_b.csv")
    shared = set(a["item_id"]) & set(b["item_id"])
    assert 0.3 < len(shared) / b["item_id"].nunique() < 0.9
    counts = a["item_id"].value_counts()
    assert counts.iloc[0] > 5 * counts.median() > 25 * counts.iloc[-1]  # long tail
    assert a["user_id"].nunique() > 4 * b["user_id"].nunique()
    assert (demo_dir / "recent.csv").exists()
